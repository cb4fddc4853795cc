// A stand-in for three native nodes' `/events` WebSocket endpoints. It replays frames that the
// real core produced (postcard-encoded keyval_core::LiveFrame, from
// `cargo run -p web-viz --example live_fixture`), each node on its own port, then keeps
// repeating that node's last status every 100 ms like a live node. `kill(n)` closes node n's
// socket and port, as killing the process would.
'use strict';
const fs = require('node:fs');
const http = require('node:http');
const { WebSocketServer } = require('ws');

function loadFrames(file) {
  const byNode = new Map();
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const f = JSON.parse(line);
    if (!byNode.has(f.node)) byNode.set(f.node, []);
    byNode.get(f.node).push({ at: f.at_ms, bytes: Buffer.from(f.hex, 'hex'), status: f.hex.startsWith('00') });
  }
  return byNode;
}

async function startFakeCluster(framesFile, basePort, speed = 1) {
  const byNode = loadFrames(framesFile);
  const nodes = new Map();
  for (const [id, frames] of byNode) {
    const server = http.createServer();
    const wss = new WebSocketServer({ server, path: '/events' });
    const timers = new Set();
    wss.on('connection', (ws) => {
      let i = 0;
      let lastStatus = null;
      const t0 = Date.now();
      const tick = setInterval(() => {
        const elapsed = (Date.now() - t0) * speed;
        while (i < frames.length && frames[i].at <= elapsed) {
          if (frames[i].status) lastStatus = frames[i].bytes;
          ws.send(frames[i].bytes);
          i++;
        }
        if (i >= frames.length && lastStatus) ws.send(lastStatus);
      }, i >= frames.length ? 100 : 20);
      timers.add(tick);
      ws.on('close', () => { clearInterval(tick); timers.delete(tick); });
    });
    await new Promise((r) => server.listen(basePort + id - 1, '127.0.0.1', r));
    nodes.set(id, { server, wss, timers });
  }
  const kill = (id) => new Promise((resolve) => {
    const n = nodes.get(id);
    if (!n) return resolve();
    for (const t of n.timers) clearInterval(t);
    for (const c of n.wss.clients) c.terminate();
    n.wss.close();
    n.server.close(() => resolve());
    n.server.closeAllConnections?.();
    nodes.delete(id);
  });
  const close = async () => { for (const id of [...nodes.keys()]) await kill(id); };
  return { kill, close, addrs: [...byNode.keys()].sort().map((id) => `127.0.0.1:${basePort + id - 1}`) };
}

module.exports = { startFakeCluster };
