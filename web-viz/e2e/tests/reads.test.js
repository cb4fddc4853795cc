// Browser tests of reads and the direct actions: the get control with its read path, the read
// queue and the read-confirmation round (R<n>), the lease bar and its drift margin, the clock
// drift fault, the stale-lease scenario with the checker's verdict, forcing an election timeout,
// dropping one message, and dragging a node across the partition line (pointer and keyboard).
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const { serve, launch, shot, text, num, waitFor, ROOT } = require('../lib');

let site;
let browser;
before(async () => { site = await serve(); browser = await launch(); });
after(async () => { await browser?.close(); await site?.close(); });

async function open(url, viewport = { width: 1280, height: 800 }) {
  const context = await browser.newContext({ viewport, acceptDownloads: true });
  const page = await context.newPage();
  page.errors = [];
  page.on('console', (m) => { if (m.type() === 'error') page.errors.push(m.text()); });
  page.on('pageerror', (e) => page.errors.push(String(e)));
  await page.goto(`${site.url}/${url}`);
  await page.locator('[data-testid="cluster"]').waitFor();
  return page;
}

const leaderOf = async (page) => {
  const m = (await text(page, 'leader')).match(/leader: n(\d+)/);
  return m ? Number(m[1]) : null;
};

/// Waits for a leader while playing, then pauses.
async function leaderThenPause(page) {
  const l = await waitFor(() => leaderOf(page), 15000, 'a leader');
  if ((await text(page, 'play')).includes('Pause')) await page.locator('[data-testid="play"]').click();
  return l;
}

async function stepUntil(page, pred, max, what) {
  for (let i = 0; i < max; i++) {
    if (await pred()) return;
    await page.locator('[data-testid="step"]').click();
  }
  assert.fail(`not reached within ${max} steps: ${what}`);
}

const narration = async (page) => (await page.locator('[data-testid="narration-item"]').allTextContents()).join('\n');

test('a linearizable get waits in the read queue for its confirmation round, drawn as R<n>', async () => {
  const page = await open('?nodes=3&seed=3&speed=50');
  const l = await leaderThenPause(page);
  await page.locator('[data-testid="tab-client"]').click();
  await page.locator('[data-testid="client-op"]').selectOption('get');
  await page.locator('[data-testid="client-consistency"]').selectOption('linearizable');
  await page.locator('[data-testid="client-send"]').click();
  await stepUntil(page, async () => (await page.locator('[data-testid="msg"][data-round]').count()) > 0, 300, 'a read-confirmation heartbeat');
  const label = await page.locator('[data-testid="msg"][data-round] .msg-label').first().textContent();
  assert.match(label, /^R\d+$/);
  assert.match(await text(page, `read-queue-${l}`), /round R\d+ at read index \d+: 1 read confirming/);
  await shot(page, 'reads-01-read-round');
  await stepUntil(page, async () => (await page.locator('[data-testid="client-status"] [data-state="done"]').count()) > 0, 300, 'the answer');
  assert.match(await narration(page), /acknowledged round R\d+/);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('lease reads: the bar drains between acknowledgements and a lease get answers with no round', async () => {
  const page = await open('?nodes=3&seed=3&speed=50');
  await page.locator('[data-testid="tab-client"]').click();
  await page.locator('[data-testid="lease-margin"]').selectOption('20');
  await page.locator('[data-testid="lease-reads"]').check();
  await waitFor(async () => /lease reads on, drift margin 20%/.test(await text(page, 'notice')), 5000, 'the run restarted');
  const l = await leaderThenPause(page);
  const bar = page.locator(`[data-testid="lease-${l}"]`);
  await stepUntil(page, async () => Number(await bar.getAttribute('data-remaining')) > 0, 400, 'a lease');
  assert.equal(await bar.getAttribute('data-margin'), '3', '20% of 15 ticks');
  assert.equal(await bar.getAttribute('data-ticks'), '12');
  const r0 = Number(await bar.getAttribute('data-remaining'));
  await stepUntil(page, async () => Number(await bar.getAttribute('data-remaining')) < r0, 400, 'the lease draining');
  await page.locator('[data-testid="client-op"]').selectOption('get');
  await page.locator('[data-testid="client-consistency"]').selectOption('lease');
  await page.locator('[data-testid="client-send"]').click();
  await stepUntil(page, async () => (await page.locator('[data-testid="client-status"] [data-state="done"]').count()) > 0, 300, 'the answer');
  assert.match(await narration(page), /answers a lease read at once/);
  await shot(page, 'reads-02-lease-bar');
  // The new controls pass the same audit as the page: node card open, lease bar drawn.
  await page.locator(`[data-testid="node-${l}"]`).click();
  await page.locator('[data-testid="menu-clock-slow"]').waitFor();
  await page.addScriptTag({ path: require.resolve('axe-core/axe.min.js') });
  const bad = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'], rules: { 'target-size': { enabled: true } } });
    return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => ({ id: v.id, target: v.nodes[0]?.target }));
  });
  assert.deepEqual(bad, []);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('clock drift from the node card is drawn on the node and kept in the action log', async () => {
  const page = await open('?nodes=3&seed=4&paused=1');
  const a0 = await num(page, 'action-count');
  await page.locator('[data-testid="node-2"]').click();
  await page.locator('[data-testid="menu-clock-slow"]').click();
  assert.equal(await page.locator('[data-testid="node-2"]').getAttribute('data-drift'), '-200');
  assert.match(await text(page, 'flag-2'), /⏱ -20%/);
  await page.locator('[data-testid="menu-clock-normal"]').click();
  assert.equal(await page.locator('[data-testid="node-2"]').getAttribute('data-drift'), '0');
  assert.equal(await num(page, 'action-count'), a0 + 2);
  await page.context().close();
});

test('the stale-lease scenario is flagged by the checker; ReadIndex under the same fault is not', async () => {
  for (const [id, ok] of [['lease-stale-read', 'false'], ['read-index-refuses', 'true']]) {
    const page = await open(`?scenario=${id}&speed=85`);
    await page.locator('[data-testid="tab-history"]').click();
    const end = Number(await page.locator('[data-testid="timeline"]').getAttribute('max'));
    assert.ok(end > 0, 'a directed scenario knows its end');
    await waitFor(async () => (await num(page, 'step-count')) >= end, 60000, `${id} played to its end`);
    await waitFor(async () => (await page.locator('[data-testid="lin-verdict"]').getAttribute('data-ok')) === ok, 5000, `${id}: linearizable=${ok}`);
    await shot(page, `reads-03-${id}`);
    assert.deepEqual(page.errors, []);
    await page.context().close();
  }
});

test('time out now: a follower campaigns at once, and the narration says it was forced', async () => {
  const page = await open('?nodes=3&seed=4&speed=50');
  const l = await leaderThenPause(page);
  const f = [1, 2, 3].find((n) => n !== l);
  await page.locator(`[data-testid="node-${l}"]`).click();
  assert.equal(await page.locator('[data-testid="menu-timeout"]').count(), 0, 'a leader has no timer');
  await page.locator('[data-testid="node-menu"] button.x').click();
  await page.locator(`[data-testid="node-${f}"]`).click();
  // Keyboard: the menu's button is reachable and activates with Enter.
  await page.locator('[data-testid="menu-timeout"]').focus();
  await page.keyboard.press('Enter');
  await waitFor(async () => /candidate/.test(await page.locator(`[data-testid="node-${f}"]`).getAttribute('data-role')), 3000, 'a campaign');
  assert.match(await narration(page), new RegExp(`You make n${f}'s election timer run out now`));
  await shot(page, 'actions-01-timeout-now');
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('drop one message: from the inspector, and with Delete on a focused message', async () => {
  const page = await open('?nodes=3&seed=4&paused=1');
  await stepUntil(page, async () => (await page.locator('[data-testid="msg"]').count()) > 0, 200, 'a message in flight');
  await page.locator('[data-testid="msg"]').first().click({ force: true });
  // Messages can overlap: drop the one the inspector shows.
  const id = (await text(page, 'msg-inspector')).match(/#(\d+)/)[1];
  await page.locator('[data-testid="drop-msg"]').click();
  assert.equal(await page.locator(`[data-testid="msg"][data-id="${id}"]`).count(), 0);
  assert.equal(await page.locator('[data-testid="msg-inspector"]').count(), 0);
  assert.match(await narration(page), new RegExp(`Message #${id} .* is lost: you dropped it`));
  await stepUntil(page, async () => (await page.locator('[data-testid="msg"]').count()) > 0, 200, 'another message');
  const m2 = page.locator('[data-testid="msg"]').first();
  const id2 = await m2.getAttribute('data-id');
  await m2.focus();
  await page.keyboard.press('Delete');
  assert.equal(await page.locator(`[data-testid="msg"][data-id="${id2}"]`).count(), 0);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('drag a node across the partition line, and back with the keyboard; the export replays', async () => {
  const page = await open('?nodes=5&seed=6&speed=50');
  await leaderThenPause(page);
  const box = await page.locator('[data-testid="node-1"] .body').boundingBox();
  const svg = await page.locator('[data-testid="cluster"]').boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width / 2, box.y + 30, { steps: 4 });
  await page.locator('[data-testid="drag-ghost"]').waitFor();
  // Out of the ring: the drawing's top-left corner.
  await page.mouse.move(svg.x + 3, svg.y + 3, { steps: 4 });
  await page.mouse.up();
  await page.locator('[data-testid="partition-line"]').waitFor();
  assert.equal(await page.locator('[data-testid="link-1-2"]').getAttribute('data-cut'), 'true');
  assert.equal(await page.locator('[data-testid="link-2-3"]').getAttribute('data-cut'), 'false');
  await shot(page, 'actions-02-dragged-across');
  // The keyboard's way: node 1's card, "Move across the partition line": one side again.
  await page.locator('[data-testid="node-1"]').focus();
  await page.keyboard.press('Enter');
  await page.locator('[data-testid="menu-across"]').focus();
  await page.keyboard.press('Enter');
  await waitFor(async () => (await page.locator('[data-testid="partition-line"]').count()) === 0, 3000, 'healed');
  assert.equal(await page.locator('[data-testid="link-1-2"]').getAttribute('data-cut'), 'false');
  // Export: the actions (a partition and a heal) replay exactly in `cargo test`.
  await page.locator('[data-testid="step"]').click();
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.locator('[data-testid="tab-scenarios"]').click().then(() => page.locator('[data-testid="export"]').click()),
  ]);
  const file = await download.path();
  const json = JSON.parse(fs.readFileSync(file, 'utf8'));
  const kinds = json.actions.map((a) => (typeof a.action.Fault === 'string' ? a.action.Fault : Object.keys(a.action.Fault)[0]));
  assert.deepEqual(kinds, ['Partition', 'Heal']);
  const traces = path.join(ROOT, 'artifacts', 'traces');
  fs.mkdirSync(traces, { recursive: true });
  fs.copyFileSync(file, path.join(traces, 'e2e-drag-partition-5n-seed6.json'));
  assert.deepEqual(page.errors, []);
  await page.context().close();
});
