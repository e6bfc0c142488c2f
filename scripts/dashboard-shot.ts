/**
 * Screenshot of a running node's dashboard (README's picture): headless Chromium (Debian's `chromium`, driven by
 * puppeteer-core; CHROMIUM_PATH overrides /usr/bin/chromium) opens the URL, waits until the page shows round
 * `--round` or later, and saves a PNG.
 *
 *   npm run demo -- --rounds 7 --local-steps 20 --http-port 8470 &
 *   node --import=tsx scripts/dashboard-shot.ts --url http://127.0.0.1:8470/ --round 5 --out scripts/assets/dashboard.png
 */
import { Command } from 'commander';
import puppeteer from 'puppeteer-core';

const o = new Command()
  .requiredOption('--url <url>', "the node's dashboard URL, as printed at its start")
  .option('--round <n>', 'wait until the dashboard shows this round', '5')
  .option('--out <file>', 'PNG to write', 'out/dashboard.png')
  .option('--width <px>', 'viewport width', '1400')
  .option('--timeout-s <s>', 'give up after', '600')
  .parse(process.argv)
  .opts<{ url: string; round: string; out: string; width: string; timeoutS: string }>();

const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu'],
});
try {
  const page = await browser.newPage();
  await page.setViewport({ width: Number(o.width), height: 1000 });
  // The node may still be starting: retry the first load for a while.
  for (let tries = 0; ; tries++) {
    try {
      await page.goto(o.url, { waitUntil: 'load' });
      break;
    } catch (err) {
      if (tries >= 120) throw err;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  await page.waitForFunction(`Number(document.getElementById('round').dataset.round) >= ${Number(o.round)}`, { timeout: Number(o.timeoutS) * 1000, polling: 250 });
  // One more status event so the charts and tables of that round are drawn.
  await new Promise((r) => setTimeout(r, 1500));
  await page.screenshot({ path: o.out, fullPage: true });
  console.log(`wrote ${o.out}`);
} finally {
  await browser.close();
}
