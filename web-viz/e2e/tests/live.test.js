// Live mode against a 3-node cluster: the fake one below (frames produced by the real core) on
// ports 17101..17103, or a real one with LIVE_REAL=1 (127.0.0.1:7001..7003, `make cluster-start`).
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const fs = require('node:fs');
const { execFileSync } = require('node:child_process');
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
