// Browser tests of playground v2: keyboard, layout at laptop and phone size, pause, the course,
// the "break Raft" menu with the checker's verdict, and an accessibility audit (axe-core).
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');

const { serve, launch, shot, text, num, waitFor } = require('../lib');

let site;
let browser;
before(async () => { site = await serve(); browser = await launch(); });
after(async () => { await browser?.close(); await site?.close(); });

async function open(url, viewport = { width: 1280, height: 800 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.errors = [];
  page.on('console', (m) => { if (m.type() === 'error' || /preventDefault/.test(m.text())) page.errors.push(m.text()); });
  page.on('pageerror', (e) => page.errors.push(String(e)));
  await page.goto(`${site.url}/${url}`);
  await page.locator('[data-testid="cluster"]').waitFor();
  return page;
}

const playing = async (page) => (await text(page, 'play')).includes('Pause');

test('keyboard: space toggles once, arrows step even on a focused slider, the page never scrolls', async () => {
  const page = await open('?nodes=3&seed=4&paused=1');
  // Click Play (focus stays on the button), then Space: exactly one toggle back to paused.
  await page.locator('[data-testid="play"]').click();
  assert.equal(await playing(page), true);
  await page.keyboard.press(' ');
  await page.waitForTimeout(200);
  assert.equal(await playing(page), false, 'space after clicking Play toggled twice');
  await page.keyboard.press(' ');
  await page.waitForTimeout(200);
  assert.equal(await playing(page), true);
  await page.keyboard.press(' ');
  await page.waitForTimeout(200);
  assert.equal(await playing(page), false);
  // → on the focused speed slider steps one event and leaves the speed alone.
  const speed = await page.locator('[data-testid="speed"]').inputValue();
  await page.locator('[data-testid="speed"]').focus();
  const e0 = await num(page, 'event-count');
  await page.keyboard.press('ArrowRight');
  await waitFor(async () => (await num(page, 'event-count')) === e0 + 1, 3000, 'a step from the slider');
  assert.equal(await page.locator('[data-testid="speed"]').inputValue(), speed, 'the slider moved');
  await page.keyboard.press('ArrowLeft');
  await waitFor(async () => (await num(page, 'event-count')) === e0, 3000, 'a step back');
  assert.equal(await page.evaluate(() => window.scrollY), 0, 'the page scrolled');
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('the main view fits 1280x800 with readable node labels', async () => {
  const page = await open('?nodes=5&seed=1&speed=50');
  await waitFor(async () => /leader: n/.test(await text(page, 'leader')), 15000, 'a leader');
  for (const id of ['cluster', 'play', 'timeline', 'narration', 'row-5']) {
    const b = await page.locator(`[data-testid="${id}"]`).boundingBox();
    assert.ok(b && b.y + b.height <= 800, `${id} is below the fold (${JSON.stringify(b)})`);
  }
  const px = await page.evaluate(() => {
    const t = document.querySelector('[data-testid="node-1"] .node-role');
    return t.getBoundingClientRect().height;
  });
  assert.ok(px >= 11, `node role label is ${px}px tall`);
  await shot(page, 'v2-01-laptop-1280x800');
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('phone width: one column, the document no wider than the viewport', async () => {
  const page = await open('?nodes=5&seed=1&speed=50', { width: 390, height: 844 });
  await page.waitForTimeout(1000);
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 390, `the document is ${width}px wide`);
  const c = await page.locator('[data-testid="cluster"]').boundingBox();
  const n = await page.locator('.card.narration').boundingBox();
  assert.ok(n.y > c.y, 'narration below the drawing');
  assert.ok(Math.abs(n.x - c.x) < 40, 'single column');
  const px = await page.evaluate(() => document.querySelector('[data-testid="node-1"] .node-id').getBoundingClientRect().height);
  assert.ok(px >= 11, `node label is ${px}px tall`);
  await shot(page, 'v2-02-phone-390x844');
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('pausing never moves a message backwards, nor the clock', async () => {
  const page = await open('?nodes=5&seed=1&speed=30');
  await waitFor(async () => (await page.locator('[data-testid="msg"]').count()) > 0, 15000, 'messages in flight');
  for (let round = 0; round < 3; round++) {
    const before = await page.evaluate(() => ({
      t: document.querySelector('[data-testid="sim-time"]').textContent,
      m: Object.fromEntries([...document.querySelectorAll('[data-testid="msg"]')].map((m) => [m.dataset.id, Number(m.dataset.progress)])),
    }));
    await page.locator('[data-testid="play"]').click();
    await page.waitForTimeout(150);
    const after = await page.evaluate(() => ({
      t: document.querySelector('[data-testid="sim-time"]').textContent,
      m: Object.fromEntries([...document.querySelectorAll('[data-testid="msg"]')].map((m) => [m.dataset.id, Number(m.dataset.progress)])),
    }));
    for (const [id, p] of Object.entries(after.m)) {
      if (id in before.m) assert.ok(p >= before.m[id] - 1e-9, `message ${id} went back from ${before.m[id]} to ${p}`);
    }
    assert.ok(parseFloat(after.t) >= parseFloat(before.t), `clock went back: ${before.t} -> ${after.t}`);
    await page.locator('[data-testid="play"]').click();
    await page.waitForTimeout(300);
  }
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('every course chapter reaches its outcome, and progress is kept in the URL', async () => {
  const page = await open('?course=1&speed=75');
  const ids = await page.locator('[data-testid^="course-chapter-"]').evaluateAll((els) => els.map((e) => e.dataset.testid.replace('course-chapter-', '')));
  assert.ok(ids.length >= 6, `only ${ids.length} chapters`);
  for (const id of ids) {
    await page.locator(`[data-testid="course-chapter-${id}"]`).click();
    await page.locator('[data-testid="course-question"]').waitFor();
    await page.locator('[data-testid="course-choice-0"]').click();
    await page.locator('[data-testid="course-run"]').click();
    const v = page.locator('[data-testid="course-verdict"]');
    await waitFor(async () => (await v.count()) > 0, 60000, `chapter ${id} verdict`);
    const answer = await v.getAttribute('data-answer');
    assert.match(answer, /^\d+$/);
    await shot(page, `v2-course-${id}`);
    assert.match(page.url(), new RegExp(`chapter=${id}`));
  }
  assert.match(decodeURIComponent(page.url()), new RegExp(`done=[^&]*${ids[0]}`));
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('the "break Raft" menu makes the checker report a violation', async () => {
  const page = await open('?scenario=figure-8&speed=100');
  await page.locator('[data-testid="tab-break"]').click();
  assert.equal(await page.locator('[data-testid="checker"]').getAttribute('data-ok'), 'true');
  await page.locator('[data-testid="mutation-CommitPreviousTermByCounting"]').click();
  await waitFor(async () => (await page.locator('[data-testid="checker"]').getAttribute('data-ok')) === 'false', 60000, 'a violation');
  assert.match(await text(page, 'checker'), /state machine safety/);
  await shot(page, 'v2-03-break-raft-caught');
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('the history view shows client operations and the linearizability verdict', async () => {
  const page = await open('?nodes=3&seed=3&speed=50');
  await waitFor(async () => /leader: n/.test(await text(page, 'leader')), 15000, 'a leader');
  await page.locator('[data-testid="tab-client"]').click();
  await page.locator('[data-testid="client-send"]').click();
  await waitFor(async () => (await page.locator('[data-testid="client-status"] [data-state="done"]').count()) > 0, 15000, 'the answer');
  await page.locator('[data-testid="tab-history"]').click();
  assert.ok((await page.locator('[data-testid="history-op"]').count()) >= 1);
  await waitFor(async () => (await page.locator('[data-testid="lin-verdict"]').getAttribute('data-ok')) === 'true', 5000, 'linearizable');
  await shot(page, 'v2-04-history');
  await page.context().close();
});

test('accessibility audit (axe-core): no serious or critical violations', async () => {
  const page = await open('?nodes=5&seed=1&speed=50');
  await waitFor(async () => /leader: n/.test(await text(page, 'leader')), 15000, 'a leader');
  await page.locator('[data-testid="play"]').click();
  await page.addScriptTag({ path: require.resolve('axe-core/axe.min.js') });
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    // Tap targets of at least 24 px (WCAG 2.2 target-size) are checked too: off in axe by default.
    const r = await axe.run(document, { resultTypes: ['violations'], rules: { 'target-size': { enabled: true } } });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help, target: v.nodes[0]?.target }));
  });
  console.log('axe violations:', JSON.stringify(result));
  const bad = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad, []);
  await page.context().close();
});

test('nodes, links and messages are reachable by keyboard', async () => {
  const page = await open('?nodes=3&seed=4&paused=1');
  const reach = await page.evaluate(() => ['node-1', 'link-1-2'].map((id) => {
    const el = document.querySelector(`[data-testid="${id}"]`);
    return el.getAttribute('tabindex') === '0' && el.getAttribute('role') === 'button' && !!(el.getAttribute('aria-label') || el.querySelector('title')?.textContent);
  }));
  assert.deepEqual(reach, [true, true]);
  await page.locator('[data-testid="node-1"]').focus();
  await page.keyboard.press('Enter');
  await page.locator('[data-testid="node-menu"]').waitFor();
  await page.context().close();
});

