// Live mode against 3-node clusters: a fake one (frames produced by the real core, replayed by
// fake-cluster.js on ports 17101..17103) and, when the `keyval` binary is built (KEYVAL_BIN, or
// target/debug/keyval), a real one started here on ports 27301..27303 with its data in a temp dir.
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const fs = require('node:fs');
const os = require('node:os');
const { execFileSync, spawn } = require('node:child_process');
const { serve, launch, openPage, shot, text, waitFor, ROOT } = require('../lib');
const { startFakeCluster } = require('../fake-cluster');

const FRAMES = process.env.LIVE_FRAMES || path.join(__dirname, '..', '.cache', 'frames.jsonl');

let site;
let browser;
let cluster;
before(async () => {
  if (!fs.existsSync(FRAMES)) {
    fs.mkdirSync(path.dirname(FRAMES), { recursive: true });
    const out = execFileSync('cargo', ['run', '-q', '-p', 'web-viz', '--example', 'live_fixture', '--', '6', '1'],
      { cwd: ROOT, maxBuffer: 1 << 28 });
    fs.writeFileSync(FRAMES, out);
  }
  cluster = await startFakeCluster(FRAMES, 17101);
  site = await serve();
  browser = await launch();
});
after(async () => { await browser?.close(); await site?.close(); await cluster?.close(); });

test('live mode shows the leader, and a killed node turns dead', async () => {
  const page = await openPage(browser, `${site.url}/?mode=live&live=${cluster.addrs.join(',')}`);
  const leader = await waitFor(async () => {
    const m = (await text(page, 'live-leader')).match(/leader: n(\d+)/);
    return m ? Number(m[1]) : null;
  }, 15000, 'a leader in live mode');
  for (let i = 1; i <= 3; i++) {
    assert.equal(await page.locator(`[data-testid="live-node-${i}"]`).getAttribute('data-state'), 'alive');
  }
  await shot(page, '08-live-leader');
  const victim = leader === 2 ? 3 : 2;
  const t0 = Date.now();
  await cluster.kill(victim);
  await waitFor(async () => (await page.locator(`[data-testid="live-node-${victim}"]`).getAttribute('data-state')) === 'dead', 3000, 'dead node');
  console.log(`# killed node shown dead after ${Date.now() - t0} ms`);
  await shot(page, '09-live-node-dead');
  const others = [1, 2, 3].filter((i) => i !== victim);
  for (const i of others) {
    assert.equal(await page.locator(`[data-testid="live-node-${i}"]`).getAttribute('data-state'), 'alive');
  }
  assert.ok(page.errors.every((e) => e.includes('WebSocket')), `unexpected errors: ${page.errors}`);
  await page.context().close();
});

const TARGET = process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target');
const KEYVAL = process.env.KEYVAL_BIN || path.join(TARGET, 'debug', 'keyval');
const KVCTL = path.join(path.dirname(KEYVAL), 'kvctl');

test('live mode against a real 3-node keyval cluster', { skip: !fs.existsSync(KEYVAL) && `no keyval binary at ${KEYVAL}` }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'keyval-live-'));
  const peers = [1, 2, 3].map((i) => `${i}=127.0.0.1:${27300 + i}`).join(',');
  const procs = new Map();
  for (const i of [1, 2, 3]) {
    const log = fs.openSync(path.join(dir, `node${i}.log`), 'a');
    procs.set(i, spawn(KEYVAL, ['--id', String(i), '--listen', `127.0.0.1:${27300 + i}`, '--peers', peers,
      '--data-dir', path.join(dir, `node${i}`)], { stdio: ['ignore', log, log] }));
  }
  try {
    const addrs = [1, 2, 3].map((i) => `127.0.0.1:${27300 + i}`);
    const page = await openPage(browser, `${site.url}/?mode=live&live=${addrs.join(',')}`);
    const leader = await waitFor(async () => {
      const m = (await text(page, 'live-leader')).match(/leader: n(\d+)/);
      return m ? Number(m[1]) : null;
    }, 20000, 'a leader of the real cluster');
    for (let i = 1; i <= 3; i++) {
      await waitFor(async () => (await page.locator(`[data-testid="live-node-${i}"]`).getAttribute('data-state')) === 'alive', 5000, `node ${i} alive`);
    }
    if (fs.existsSync(KVCTL)) {
      execFileSync(KVCTL, ['--endpoints', addrs.join(','), 'put', 'playground', 'live']);
      await waitFor(async () => (await page.locator('[data-testid="live-event"]').allTextContents()).some((t) => t.includes('playground=live')), 5000, 'the put in the event list');
    }
    await shot(page, '10-real-cluster-live');
    const victim = leader;
    const t0 = Date.now();
    procs.get(victim).kill('SIGKILL');
    await waitFor(async () => (await page.locator(`[data-testid="live-node-${victim}"]`).getAttribute('data-state')) === 'dead', 3000, 'killed leader shown dead');
    console.log(`# real cluster: killed leader n${victim} shown dead after ${Date.now() - t0} ms`);
    const next = await waitFor(async () => {
      const m = (await text(page, 'live-leader')).match(/leader: n(\d+)/);
      return m && Number(m[1]) !== victim ? Number(m[1]) : null;
    }, 10000, 'a new leader');
    assert.notEqual(next, victim);
    await shot(page, '11-real-cluster-leader-killed');
    await page.context().close();
  } finally {
    for (const p of procs.values()) p.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
