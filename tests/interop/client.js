// client.js — node's `ws` (an independent WebSocket implementation) as a
// client of moongate, with permessage-deflate on; run by
// tests/integration/test_interop_node.py, which starts the gateway and
// judges the JSON line this prints.
//
//   node client.js echo URL [CA]           echo of text and binary, 0 B..1 MiB,
//                                          then 200 similar messages
//   node client.js protocol URL P1,P2,...  the subprotocol the 101 chose and
//                                          the one the script sees
//   node client.js broadcast URL N SIZE    N connections, one broadcast of SIZE
//                                          bytes, every client checks it
//
// Prints one line of JSON: {"ok": true|false, ...what was seen}.  Every wait
// is bounded (DEADLINE_MS); the process exits on its own.
'use strict';

const fs = require('fs');
const WebSocket = require('ws');

const DEADLINE_MS = 60000;
const [mode, url, arg1, arg2] = process.argv.slice(2);

function report(result) {
    process.stdout.write(JSON.stringify(result) + '\n');
    process.exit(result.ok ? 0 : 1);
}

setTimeout(() => report({ ok: false, error: 'deadline passed' }), DEADLINE_MS).unref();

// Compressible content of `size` bytes that never starts with "!" (the
// test script's commands); text is ASCII words, binary the same bytes
// with some bits flipped.
function payload(kind, size, seed) {
    const words = [];
    let x = seed * 7919 + size + 1;
    let len = 0;
    while (len < size) {
        x = (x * 1103515245 + 12345) % 2147483648;
        const w = 'w' + (x % 500);
        words.push(w);
        len += w.length + 1;
    }
    const buf = Buffer.from(words.join(' ').slice(0, size));
    if (kind === 'binary')
        for (let i = 0; i < buf.length; i++) buf[i] ^= (i * 31) & 3;
    return kind === 'text' ? buf.toString() : buf;
}

// Resolves once open; ws.answer is the 101's Sec-WebSocket-Extensions
// (ws.extensions only names the extensions).
function open(address, protocols, options) {
    return new Promise((resolve, reject) => {
        const ws = new WebSocket(address, protocols, options);
        ws.once('upgrade', (res) => {
            ws.answer = res.headers['sec-websocket-extensions'] || null;
        });
        ws.once('open', () => resolve(ws));
        ws.once('error', reject);
    });
}

// The next message as {kind, data}; data a string for text, a Buffer for binary.
function next(ws) {
    return new Promise((resolve, reject) => {
        const onMessage = (data, isBinary) => {
            ws.off('close', onClose);
            resolve(isBinary ? { kind: 'binary', data } : { kind: 'text', data: data.toString() });
        };
        const onClose = (code) => {
            ws.off('message', onMessage);
            reject(new Error('closed ' + code));
        };
        ws.once('message', onMessage);
        ws.once('close', onClose);
    });
}

function same(a, b) {
    return Buffer.isBuffer(a) ? Buffer.isBuffer(b) && a.equals(b) : a === b;
}

function closed(ws) {
    return new Promise((resolve) => {
        if (ws.readyState === WebSocket.CLOSED) return resolve();
        ws.once('close', () => resolve());
        ws.close(1000);
    });
}

async function echo() {
    const options = { perMessageDeflate: true };
    if (arg1) options.ca = fs.readFileSync(arg1);
    const ws = await open(url, undefined, options);
    const negotiated = ws.answer;
    const checked = [];
    for (const size of [0, 1, 63, 64, 65536, 1 << 20]) {
        for (const kind of ['text', 'binary']) {
            const data = payload(kind, size, 1);
            ws.send(data, { binary: kind === 'binary' });
            const got = await next(ws);
            if (got.kind !== kind || !same(got.data, data))
                return report({ ok: false, error: `echo of ${kind} ${size} differs`, negotiated });
            checked.push(`${kind}:${size}`);
        }
    }
    // similar messages one after another: context takeover where negotiated
    const base = payload('text', 4000, 2);
    for (let i = 0; i < 200; i++) {
        const data = base.slice(i % 1000) + ' #' + i;
        ws.send(data);
        const got = await next(ws);
        if (!same(got.data, data))
            return report({ ok: false, error: `message ${i} of 200 differs`, negotiated });
    }
    checked.push('200 similar');
    await closed(ws);
    report({ ok: true, negotiated, checked });
}

async function protocol() {
    const offered = arg1.split(',');
    let ws;
    try {
        ws = await open(url, offered, { perMessageDeflate: true });
    } catch (err) {
        return report({ ok: true, error: err.message });
    }
    ws.send('?protocol');
    const got = await next(ws);
    await closed(ws);
    report({ ok: true, protocol: ws.protocol, seen: got.data, negotiated: ws.answer });
}

// Four parameter sets, so that the gateway compresses the broadcast once
// for each (no context takeover on the listener).
const PARAMETER_SETS = [
    true,
    { serverMaxWindowBits: 10 },
    { serverMaxWindowBits: 9, clientMaxWindowBits: 9 },
    { serverMaxWindowBits: 12, clientNoContextTakeover: true, threshold: 0 },
];

async function broadcast() {
    const n = Number(arg1);
    const size = Number(arg2);
    const t0 = Date.now();
    const clients = [];
    // opened in batches: no more handshakes at once than the gateway's
    // limits.max_handshakes allows by default
    for (let i = 0; i < n; i += 100) {
        const batch = [];
        for (let j = i; j < Math.min(n, i + 100); j++)
            batch.push(open(url, undefined,
                            { perMessageDeflate: PARAMETER_SETS[j % PARAMETER_SETS.length] }));
        clients.push(...(await Promise.all(batch)));
    }
    const opened = Date.now() - t0;
    const compressed = clients.filter((ws) => ws.extensions === 'permessage-deflate').length;
    // an echo on each: the gateway ran on_connect (subscribe) for every one
    await Promise.all(clients.map(async (ws, i) => {
        ws.send('hello ' + i);
        const got = await next(ws);
        if (got.data !== 'hello ' + i) throw new Error('hello ' + i + ' echoed as ' + got.data);
    }));
    const data = payload('text', size, 3);
    const t1 = Date.now();
    const arrivals = clients.map((ws) => next(ws).then((got) => same(got.data, data)));
    clients[0].send('!B' + data);
    const exact = (await Promise.all(arrivals)).filter(Boolean).length;
    const delivered = Date.now() - t1;
    await Promise.all(clients.map(closed));
    report({
        ok: exact === n && compressed === n,
        clients: n, compressed, exact, opened_ms: opened, delivered_ms: delivered,
        answers: clients.slice(0, PARAMETER_SETS.length).map((ws) => ws.answer),
    });
}

const modes = { echo, protocol, broadcast };
if (!modes[mode] || !url) {
    process.stderr.write('usage: node client.js echo|protocol|broadcast URL ...\n');
    process.exit(2);
}
modes[mode]().catch((err) => report({ ok: false, error: String(err && err.stack || err) }));
