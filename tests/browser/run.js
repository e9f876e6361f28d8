// tests/browser/run.js — examples/chat in a real browser (Debian's Chromium,
// driven by playwright-core).  Run through run.sh, which installs
// playwright-core; needs MOONGATE_BIN.
//
// The scenario: start the gateway with the real examples/chat/chat.lua and
// page on a free port; open two pages; both join room "lobby" and chat both
// ways (and /all); stop the gateway (SIGTERM, wait for exit 0) and start a
// new one on the same port; both pages must reconnect and rejoin by
// themselves, and chat works again both ways.  Every wait is bounded; the
// gateway and the browser are stopped in finally blocks.  MOONGATE_WORKERS=N
// runs it with `workers: N`.  Prints
// "browser: 1 passed, 0 failed" (or "0 passed, 1 failed") last.
"use strict";

const { chromium } = require("playwright-core");
const { spawn } = require("child_process");
const fs = require("fs");
const net = require("net");
const os = require("os");
const path = require("path");
const readline = require("readline");

const ROOT = path.resolve(__dirname, "..", "..");
const EXAMPLE = path.join(ROOT, "examples", "chat");
const BIN = process.env.MOONGATE_BIN || path.join(ROOT, "build", "moongate");
const SCREENSHOT = process.env.MOONGATE_SCREENSHOT === "1" ? path.join(EXAMPLE, "screenshot.png") : null;
const STEP = 10000;        // ms, the bound of each wait
const TOTAL = 55000;       // ms, the bound of the whole scenario
const SANITIZER = /ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|WARNING: AddressSanitizer/;

const t0 = Date.now();
const say = (msg) => console.log(`[${((Date.now() - t0) / 1000).toFixed(2)}s] ${msg}`);

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function withTimeout(promise, ms, what) {
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

// ---- the gateway ------------------------------------------------------------

class Gateway {
  constructor(conf) {
    this.conf = conf;
    this.proc = null;
    this.log = [];        // every stderr line of every run, for the failure report
  }

  start() {
    const proc = spawn(BIN, ["-c", this.conf], { stdio: ["ignore", "ignore", "pipe"] });
    this.proc = proc;
    const exited = new Promise((resolve) => proc.once("exit", (code, sig) => resolve(sig ? sig : code)));
    proc.exited = exited;
    proc.once("error", (e) => this.log.push(`spawn error: ${e.message}`));
    const ready = new Promise((resolve, reject) => {
      readline.createInterface({ input: proc.stderr }).on("line", (line) => {
        this.log.push(line);
        if (SANITIZER.test(line)) this.sanitizer = line;
        if (/moongate ready/.test(line)) resolve();
      });
      exited.then((how) => reject(new Error(`gateway exited (${how}) before it was ready`)));
    });
    return withTimeout(ready, STEP, "gateway start ('moongate ready')");
  }

  // SIGTERM by PID and wait for the exit; returns the exit code (or signal name).
  async stop() {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return proc && (proc.exitCode ?? proc.signalCode);
    process.kill(proc.pid, "SIGTERM");
    try {
      return await withTimeout(proc.exited, STEP, "gateway exit after SIGTERM");
    } catch (e) {
      process.kill(proc.pid, "SIGKILL");
      await withTimeout(proc.exited, 5000, "gateway exit after SIGKILL").catch(() => {});
      throw e;
    }
  }
}

// ---- page helpers -------------------------------------------------------------

async function status(page) {
  return page.$eval("#status", (el) => ({ ...el.dataset, text: el.textContent }));
}

// Wait until the status indicator matches every given data-* value.
async function waitStatus(page, want, what) {
  try {
    await page.waitForFunction((w) => {
      const d = document.getElementById("status").dataset;
      return Object.entries(w).every(([k, v]) => d[k] === v);
    }, want, { timeout: STEP, polling: 50 });
  } catch (e) {
    throw new Error(`${what}: status ${JSON.stringify(await status(page))}, wanted ${JSON.stringify(want)}`);
  }
}

// Wait until the page's log shows `line` (or a line starting with it, if prefix).
async function waitLine(page, line, what, prefix = false) {
  try {
    await page.waitForFunction(
      ([l, pre]) => [...document.querySelectorAll("#log li")]
        .some((li) => (pre ? li.textContent.startsWith(l) : li.textContent === l)),
      [line, prefix], { timeout: STEP, polling: 50 });
  } catch (e) {
    const lines = await page.$$eval("#log li", (lis) => lis.map((li) => li.textContent));
    throw new Error(`${what}: line ${JSON.stringify(line)} never shown; log:\n  ${lines.join("\n  ")}`);
  }
}

// Playwright's actions wait for animation frames, which Chromium holds back
// in background tabs: bring the page to the front first, as a person would.
async function joinRoom(page, nick, room) {
  await page.bringToFront();
  await page.fill("#nick", nick);
  await page.fill("#room", room);
  await page.click("#join-btn");
  await waitStatus(page, { room }, `${nick} joins #${room}`);
}

async function sendLine(page, text) {
  await page.bringToFront();
  await page.fill("#text", text);
  await page.press("#text", "Enter");
}

// A says something, B sees it (and A its own line).
async function chat(from, fromNick, to, text) {
  await sendLine(from, text);
  await waitLine(to, `${fromNick}: ${text}`, `"${text}" from ${fromNick}`);
  await waitLine(from, `${fromNick}: ${text}`, `"${text}" back to ${fromNick}`);
}

// ---- the scenario ---------------------------------------------------------------

async function scenario(gw, port, browser) {
  const url = `http://127.0.0.1:${port}/`;
  const a = browser.pages()[0] || (await browser.newPage());
  const b = await browser.newPage();
  for (const p of [a, b]) {
    p.setDefaultTimeout(STEP);
    p.errors = [];
    p.on("pageerror", (e) => p.errors.push(e.message));
  }

  // ?ping=1500: the page's app-level heartbeat ("Ping", answered "Pong" by
  // the core) every 1.5 s instead of 20 s, so that the test sees it work.
  await a.goto(url + "?ping=1500");
  await b.goto(url + "?ping=1500");
  await waitStatus(a, { state: "online", connects: "1" }, "page A connects");
  await waitStatus(b, { state: "online", connects: "1" }, "page B connects");
  say("both pages online");

  await joinRoom(a, "alice", "lobby");
  await joinRoom(b, "bob", "lobby");
  await waitLine(a, "* bob joined #lobby", "A is told that bob joined");
  await chat(a, "alice", b, "hello from A");
  await chat(b, "bob", a, "hi A, B here");
  await b.bringToFront();
  await b.fill("#text", "hello everyone");
  await b.click("#send-all");
  await waitLine(a, "[all] bob: hello everyone", "/all from B");
  say("chat works both ways");
  for (const [p, name] of [[a, "A"], [b, "B"]]) {
    try {
      await p.waitForFunction(() => /^online · \d+ ms$/.test(document.getElementById("status").textContent),
        null, { timeout: STEP, polling: 50 });
    } catch (e) {
      throw new Error(`page ${name}: no Pong for its Ping; status ${JSON.stringify(await status(p))}`);
    }
  }
  say(`text heartbeat: A "${(await status(a)).text}", B "${(await status(b)).text}"`);

  // Restart the gateway on the same port: the pages must come back by themselves.
  const code = await gw.stop();
  if (code !== 0) throw new Error(`gateway exited with ${code} after SIGTERM (want 0: drain)`);
  say("gateway stopped (exit 0)");
  await waitStatus(a, { room: "" }, "page A notices the restart");
  await waitStatus(b, { room: "" }, "page B notices the restart");
  if ((await status(a)).state === "online" || (await status(b)).state === "online") {
    throw new Error("a page still claims to be online with the gateway gone");
  }
  // Keep the gateway down until each page has also failed one reconnect
  // attempt, and check the delays it chose: attempt n waits 0.5 s * 2^n,
  // scaled by a random 0.5..1.5 (the page prints them rounded to 0.1 s).
  for (const [p, name] of [[a, "A"], [b, "B"]]) {
    await waitLine(p, "disconnected (1001 server shutting down), retrying in ", `${name} shows the drain close`, true);
    await waitLine(p, "disconnected (1006), retrying in ", `${name} fails a reconnect while the gateway is down`, true);
    const delays = await p.$$eval("#log li", (lis) => lis.map((li) => li.textContent)
      .map((l) => l.match(/^disconnected \(.*\), retrying in ([\d.]+) s$/)).filter(Boolean).map((m) => Number(m[1])));
    delays.slice(0, 2).forEach((d, n) => {
      const base = 0.5 * 2 ** n;
      if (!(d >= 0.5 * base - 0.05 && d <= 1.5 * base + 0.05)) {
        throw new Error(`${name}: reconnect attempt ${n} waits ${d} s, outside ${0.5 * base}..${1.5 * base} s`);
      }
    });
    say(`page ${name} backs off: ${delays.join(" s, ")} s`);
  }
  await gw.start();
  say("gateway started again on the same port");
  await waitStatus(a, { state: "online", connects: "2", room: "lobby" }, "page A reconnects and rejoins");
  await waitStatus(b, { state: "online", connects: "2", room: "lobby" }, "page B reconnects and rejoins");
  say("both pages reconnected and rejoined #lobby by themselves");

  await chat(a, "alice", b, "still there, B?");
  await chat(b, "bob", a, "yes, back again");
  say("chat works both ways after the restart");

  for (const p of [a, b]) {
    if (p.errors.length) throw new Error(`page script errors: ${p.errors.join("; ")}`);
  }
  if (SCREENSHOT) {
    await b.screenshot({ path: SCREENSHOT });
    say(`screenshot of page B: ${SCREENSHOT}`);
  }
}

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "moongate-browser-"));
  const port = await freePort();
  const conf = path.join(dir, "moongate.yaml");
  // JSON strings are valid YAML scalars: safe for any path.
  fs.writeFileSync(conf, [
    "listen:",
    "  - host: 127.0.0.1",
    `    port: ${port}`,
    "    path: /chat",
    `script: ${JSON.stringify(path.join(EXAMPLE, "chat.lua"))}`,
    "static:",
    `  root: ${JSON.stringify(path.join(EXAMPLE, "public"))}`,
    "heartbeat:",
    "  text_ping: Ping",
    "  text_pong: Pong",
    "limits:",
    "  close_timeout: 1s",
    "shutdown:",
    "  drain_timeout: 3s",
    // MOONGATE_WORKERS=4: the same scenario with a master and 4 workers
    // (ctest's browser.chat_workers); the pages may land on any of them.
    `workers: ${Number(process.env.MOONGATE_WORKERS || 1)}`,
    "",
  ].join("\n"));

  const gw = new Gateway(conf);
  let browser = null;
  let ok = false;
  try {
    await gw.start();
    say(`gateway ready on 127.0.0.1:${port} (pid ${gw.proc.pid})`);
    browser = await withTimeout(chromium.launchPersistentContext(path.join(dir, "profile"), {
      executablePath: "/usr/bin/chromium",
      headless: true,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync"],
      viewport: { width: 820, height: 520 },
      timeout: STEP,
    }), STEP + 2000, "chromium launch");
    say("chromium up");
    await withTimeout(scenario(gw, port, browser), TOTAL - (Date.now() - t0), "scenario");
    const code = await gw.stop();
    if (code !== 0) throw new Error(`second gateway exited with ${code} after SIGTERM`);
    if (gw.sanitizer) throw new Error(`sanitizer report from the gateway: ${gw.sanitizer}`);
    ok = true;
  } catch (e) {
    console.error(`FAIL: ${e.stack || e}`);
    console.error(`---- gateway log (last 60 lines) ----\n${gw.log.slice(-60).join("\n")}`);
  } finally {
    if (browser) await withTimeout(browser.close(), STEP, "browser close").catch((e) => console.error(String(e)));
    await gw.stop().catch((e) => console.error(String(e)));
    fs.rmSync(dir, { recursive: true, force: true });
  }
  say(ok ? "PASS examples/chat in chromium" : "FAIL examples/chat in chromium");
  console.log(`browser: ${ok ? 1 : 0} passed, ${ok ? 0 : 1} failed`);
  process.exitCode = ok ? 0 : 1;
}

main().catch((e) => {
  console.error(e);
  console.log("browser: 0 passed, 1 failed");
  process.exitCode = 1;
});
