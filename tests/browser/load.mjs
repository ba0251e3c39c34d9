// bench/ui.sh's browser figure: signs in through the login form, then loads
// each of KS_PATHS (space-separated) ten times in chromium and prints the
// median navigation time (request start to the load event) of each.
//
//   KS_UI_URL=http://127.0.0.1:PORT KS_UI_TOKEN=... KS_PROFILE_DIR=DIR \
//   KS_PATHS="/ui/ /ui/incidents/1" node tests/browser/load.mjs

import { launch, need } from './chromium.mjs';

const base = need('KS_UI_URL').replace(/\/$/, '');
const token = need('KS_UI_TOKEN');
const profile = need('KS_PROFILE_DIR');
const paths = need('KS_PATHS').split(/\s+/).filter(Boolean);
const ROUNDS = 10;

const { ctx } = await launch(profile);
const page = ctx.pages()[0] || (await ctx.newPage());
await page.goto(`${base}/ui/login`);
await page.locator('input[name="token"]').fill(token);
await Promise.all([page.waitForURL((u) => u.pathname === '/ui/'), page.keyboard.press('Enter')]);

const out = [];
for (const p of paths) {
  const ms = [];
  for (let i = 0; i < ROUNDS; i++) {
    await page.goto(`${base}${p}`, { waitUntil: 'load' });
    if (new URL(page.url()).pathname === '/ui/login') throw new Error(`${p} sent the browser to the login page`);
    ms.push(await page.evaluate(() => {
      const [nav] = performance.getEntriesByType('navigation');
      return nav.loadEventEnd - nav.startTime;
    }));
  }
  ms.sort((a, b) => a - b);
  const median = (ms[ROUNDS / 2 - 1] + ms[ROUNDS / 2]) / 2;
  out.push(`chromium        load ${p.padEnd(27)} median ${median.toFixed(2).padStart(7)} ms  (request to load event, ${ROUNDS} loads)`);
}
await ctx.close();
console.log(out.join('\n'));
