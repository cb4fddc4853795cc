// Exports a trace from the built page into web-viz/tests/traces/ (a run with a put, a cut link
// and a crashed leader), to pin it as a regression test: node web-viz/e2e/export-fixture.js
const fs = require('fs');
const { serve, launch, openPage, text, waitFor } = require('./lib');
(async () => {
  const site = await serve(); const browser = await launch();
  const page = await openPage(browser, site.url + '/?nodes=5&seed=11&speed=50');
  await waitFor(async () => /leader: n/.test(await text(page, 'leader')));
  const l = Number((await text(page, 'leader')).match(/n(\d)/)[1]);
  await page.locator('[data-testid="client-key"]').fill('fruit');
  await page.locator('[data-testid="client-value"]').fill('apple');
  await page.locator('[data-testid="client-send"]').click();
  await page.waitForTimeout(400);
  await page.locator('[data-testid="link-1-2"]').click({force: true});
  await page.locator(`[data-testid="node-${l}"]`).click();
  await page.locator('[data-testid="menu-crash"]').click();
  await page.waitForTimeout(1500);
  await page.locator('[data-testid="play"]').click();
  const [dl] = await Promise.all([page.waitForEvent('download'), page.locator('[data-testid="tab-scenarios"]').click().then(() => page.locator('[data-testid="export"]').click())]);
  fs.copyFileSync(await dl.path(), require('path').join(__dirname, '..', 'tests', 'traces', 'browser-5n-seed11-crash-put.json'));
  console.log(page.errors);
  await browser.close(); await site.close();
})();
