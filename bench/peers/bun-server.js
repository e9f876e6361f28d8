// bun-server.js — the Bun peer of bench/run.sh (Bun.serve, uWebSockets inside).
//
//   bun bun-server.js PORT [MODE]   listens on 127.0.0.1:PORT, any path
//
// MODE (bench/compress.sh): "deflate" is the default behaviour below with
// perMessageDeflate: true; "chat" (compressed) and "chat-plain" make a chat room:
// every connection joins topic "chat" on open and every message is published to
// it with server.publish(), so each member, the sender included, gets it (what
// moongate's bench/scripts/chat.lua does with gw.broadcast).
//
// Every message goes back unchanged (text as text, binary as binary), except a
// message whose first byte is "!": that one is published with server.publish()
// to topic "b", which every connection made with "sub" in its query joined on
// open (wsload --broadcast subscribers).  Heartbeats on: Bun pings a connection
// that has been silent for most of idleTimeout and closes it if nothing answers.
const port = Number(process.argv[2] || process.env.PORT);
const mode = process.argv[3] || "";
if (!(port > 0 && port < 65536) || !["", "deflate", "chat", "chat-plain"].includes(mode)) {
  console.error("usage: bun bun-server.js PORT [deflate|chat|chat-plain]");
  process.exit(2);
}
const chat = mode === "chat" || mode === "chat-plain";

const BANG = 33; // "!"

const server = Bun.serve({
  hostname: "127.0.0.1",
  port,
  fetch(req, server) {
    const sub = new URL(req.url).searchParams.has("sub");
    if (server.upgrade(req, { data: { sub } })) return undefined;
    return new Response("WebSocket only\n", { status: 400 });
  },
  websocket: {
    idleTimeout: 8, // seconds; pings shortly before, as sendPings says
    sendPings: true,
    maxPayloadLength: 1024 * 1024,
    perMessageDeflate: mode === "deflate" || mode === "chat",
    open(ws) {
      if (chat) ws.subscribe("chat");
      else if (ws.data.sub) ws.subscribe("b");
    },
    message(ws, message) {
      if (chat) {
        server.publish("chat", message);
        return;
      }
      const first = typeof message === "string" ? message.charCodeAt(0) : message[0];
      if (first === BANG) server.publish("b", message);
      else ws.send(message);
    },
  },
});

process.on("SIGTERM", () => {
  server.stop(true);
  process.exit(0);
});
