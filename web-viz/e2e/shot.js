// Ad-hoc screenshot: node shot.js "/?nodes=5&seed=1" out.png [waitMs] [jsToRun]
'use strict';
const { serve, launch, openPage } = require('./lib');
(async () => {
  const site = await serve();
  const browser = await launch();
  const page = await openPage(browser, site.url + (process.argv[2] || '/'));
  await page.waitForTimeout(Number(process.argv[4] || 2000));
  if (process.argv[5]) { await page.evaluate(process.argv[5]); await page.waitForTimeout(500); }
  await page.screenshot({ path: process.argv[3] || '/tmp/shot.png', fullPage: process.argv[6] === 'full' });
  console.log('errors:', JSON.stringify(page.errors));
  await browser.close(); await site.close();
})();
