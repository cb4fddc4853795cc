// Browser tests of live membership (issue 9): the Members tab adds a learner (drawn dashed with
// a catch-up bar), refuses a second change while one is in flight (one line), replaces a voter
// through a joint configuration (both halves drawn while it is in force), and the guided
// removed-node scenario keeps its leader.
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { serve, launch, openPage, shot, text, waitFor } = require('../lib');

let site;
let browser;
before(async () => { site = await serve(); browser = await launch(); });
after(async () => { await browser?.close(); await site?.close(); });

const leaderOf = async (page) => {
  const m = (await text(page, 'leader')).match(/leader: n(\d+)/);
  return m ? Number(m[1]) : null;
};
const standing = (page, id) => page.locator(`[data-testid="node-${id}"]`).getAttribute('data-standing');

test('add a learner, see it catch up, replace a voter through joint consensus', async () => {
  const page = await openPage(browser, `${site.url}/?nodes=3&seed=1&speed=50`);
  const leader = await waitFor(() => leaderOf(page), 15000, 'a leader');
  // A leader can take a change only once it has committed an entry of its term.
  await page.waitForTimeout(500);
  await page.locator('[data-testid="tab-members"]').click();
  await page.locator('[data-testid="members-panel"]').waitFor();
  // Two requests while paused: the second is refused in one line, the first starts n4.
  await page.locator('[data-testid="play"]').click();
  await page.locator('[data-testid="member-add"]').click();
  await page.locator('[data-testid="member-add"]').click();
  const notice = await waitFor(async () => {
    const n = page.locator('[data-testid="notice"]');
    return (await n.count()) ? (await n.textContent()) : null;
  }, 5000, 'a refusal notice');
  assert.match(notice, /not applied yet/);
  assert.equal((await page.locator('[data-testid="member-answer"]').getAttribute('data-refused')), 'true');
  await page.locator('[data-testid="play"]').click();
  await waitFor(async () => (await page.locator('[data-testid="node-4"]').count()) === 1, 5000, 'n4 drawn');
  await waitFor(async () => (await standing(page, 4)) === 'learner', 10000, 'n4 a learner');
  const bar = page.locator('[data-testid="catchup-4"]');
  await waitFor(async () => (await bar.count()) === 1
    && (await bar.getAttribute('data-matched')) === (await bar.getAttribute('data-last')), 10000, 'n4 caught up');
  assert.equal(await page.locator('[data-testid="member-row-4"]').getAttribute('data-standing'), 'learner');
  await shot(page, 'm1-learner-caught-up');

  // Pause, ask for the replacement from the node's menu, and step until the joint
  // configuration is in force.
  await page.locator('[data-testid="play"]').click();
  const out = [1, 2, 3].find((n) => n !== leader);
  await page.locator(`[data-testid="node-${out}"]`).click();
  await page.locator('[data-testid="menu-replace"]').click();
  const joint = page.locator('[data-testid="joint-config"]');
  for (let i = 0; i < 400 && (await joint.count()) === 0; i++) {
    await page.locator('[data-testid="step"]').click();
  }
  assert.equal(await joint.count(), 1, 'the joint configuration is drawn');
  assert.equal(await joint.getAttribute('data-old'), '3');
  assert.equal(await joint.getAttribute('data-new'), '3');
  assert.equal(await page.locator(`[data-testid="half-old-${out}"]`).count(), 1);
  assert.equal(await page.locator(`[data-testid="half-new-${out}"]`).count(), 0);
  assert.equal(await page.locator('[data-testid="half-new-4"]').count(), 1);
  assert.equal(await standing(page, out), 'outgoing');
  assert.equal(await standing(page, 4), 'incoming');
  assert.match(await text(page, 'member-summary'), /AND/);
  await shot(page, 'm2-joint-configuration');

  // Play on: the leader leaves the joint configuration by itself.
  await page.locator('[data-testid="play"]').click();
  await waitFor(async () => (await joint.count()) === 0, 10000, 'auto-leave');
  await waitFor(async () => (await standing(page, 4)) === 'voter', 5000, 'n4 a voter');
  assert.equal(await standing(page, out), 'removed');
  assert.match(await text(page, 'live-members'), /3 voters/);
  const narration = await text(page, 'narration');
  assert.match(narration, /joint configuration/);
  await shot(page, 'm3-replaced');
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('the removed-node chapter: the leader stands while the removed node campaigns', async () => {
  const page = await openPage(browser, `${site.url}/?course=1&speed=60`);
  await page.locator('[data-testid="course-chapter-removed-node"]').click();
  await page.locator('[data-testid="course-question"]').waitFor();
  await page.locator('[data-testid="course-choice-1"]').click();
  await page.locator('[data-testid="course-run"]').click();
  const verdict = page.locator('[data-testid="course-verdict"]');
  await verdict.waitFor({ timeout: 30000 });
  assert.match(await verdict.textContent(), /leader and its term stand/);
  const removed = await page.locator('[data-standing="removed"]').count();
  assert.ok(removed >= 1, 'a node is drawn as removed');
  await shot(page, 'm4-removed-node');
  assert.deepEqual(page.errors, []);
  await page.context().close();
});
