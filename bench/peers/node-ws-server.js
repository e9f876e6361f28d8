// node-ws-server.js — the node `ws` peer of bench/run.sh.
//
//   node node-ws-server.js PORT    listens on 127.0.0.1:PORT, any path
//
// Every message goes back unchanged (text as text, binary as binary), except a
// message whose first byte is "!": that one is sent to every connection made
// with "sub" in its query (wsload --broadcast subscribers), one ws.send() each.
// Heartbeats as the ws README does them: a ping to every client every 5 s; a
// client from which nothing (pong or message) arrived for 3 rounds (15 s) is
// terminated.
"use strict";
const { WebSocketServer } = require("ws");

const port = Number(process.argv[2] || process.env.PORT);
if (!(port > 0 && port < 65536)) {
  console.error("usage: node node-ws-server.js PORT");
  process.exit(2);
}

const BANG = 33; // "!"
const subscribers = new Set();
const wss = new WebSocketServer({
  host: "127.0.0.1",
  port,
  perMessageDeflate: false,
  maxPayload: 1024 * 1024,
});

wss.on("connection", (ws, req) => {
  ws.missed = 0;
  if (new URL(req.url, "http://x").searchParams.has("sub")) {
    subscribers.add(ws);
    ws.on("close", () => subscribers.delete(ws));
  }
  ws.on("pong", () => {
    ws.missed = 0;
  });
  ws.on("message", (data, isBinary) => {
    ws.missed = 0;
    if (data.length > 0 && data[0] === BANG) {
      for (const s of subscribers) s.send(data, { binary: isBinary });
    } else {
      ws.send(data, { binary: isBinary });
    }
  });
});

setInterval(() => {
  for (const ws of wss.clients) {
    if (ws.missed >= 3) {
      ws.terminate();
      continue;
    }
    ws.missed++;
    ws.ping();
  }
}, 5000);

process.on("SIGTERM", () => process.exit(0));
