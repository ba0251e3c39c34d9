// The dashboard as a person uses it, in Debian's chromium (headless, driven
// through the DevTools protocol by playwright-core; no browser download).
// Run by tests/ui_browser.rs against a real `keysentry daemon`:
//
//   KS_UI_URL=http://127.0.0.1:PORT KS_UI_TOKEN=... KS_INCIDENT_ID=N \
//   KS_INCIDENT_SHOWS=TEXT KS_NOTE=TEXT KS_SCREENSHOT_DIR=DIR \
//   KS_PROFILE_DIR=DIR KS_DUMP_DIR=DIR node tests/browser/dashboard.mjs
//
// Signs in through the login form and opens the incident by keyboard only,
// checks every control has an accessible name, resolves the incident with a
// note, signs out. Every body the browser received and every URL it visited
// go to KS_DUMP_DIR, so the test can grep them (and the profile, with its
// history) for the planted key: the key itself is never given to this
// script. Prints one line per step and a last JSON line; exits 1 on the
// first failed step (after a screenshot of it), 2 when it cannot run.

import { mkdirSync, writeFileSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { launch, need } from './chromium.mjs';

const base = need('KS_UI_URL').replace(/\/$/, '');
const token = need('KS_UI_TOKEN');
const id = need('KS_INCIDENT_ID');
const shows = need('KS_INCIDENT_SHOWS');
const note = need('KS_NOTE');
const shots = need('KS_SCREENSHOT_DIR');
const profile = need('KS_PROFILE_DIR');
const dump = need('KS_DUMP_DIR');

mkdirSync(shots, { recursive: true });
mkdirSync(dump, { recursive: true });
const urlsFile = join(dump, 'urls.txt');
writeFileSync(urlsFile, '');

let step = 'start chromium';
const done = [];
function ok(what) {
  done.push(what);
  console.log(`ok: ${what}`);
}
function fail(msg) {
  throw new Error(msg);
}

const { pw, ctx } = await launch(profile);
const page = ctx.pages()[0] || (await ctx.newPage());
// app.js may confirm actions: a person clicks OK.
page.on('dialog', (d) => d.accept().catch(() => {}));

// Every URL asked for and every body received, for the no-key grep.
let seq = 0;
page.on('request', (r) => appendFileSync(urlsFile, `${r.method()} ${r.url()}\n`));
page.on('framenavigated', (f) => {
  if (f === page.mainFrame()) appendFileSync(urlsFile, `NAVIGATED ${f.url()}\n`);
});
page.on('response', async (r) => {
  const n = String(++seq).padStart(3, '0');
  const headers = Object.entries(r.headers()).map(([k, v]) => `${k}: ${v}`).join('\n');
  let body = '';
  try {
    body = (await r.body()).toString('utf8');
  } catch {
    // Redirects have no body to read.
  }
  writeFileSync(join(dump, `response-${n}.txt`), `${r.status()} ${r.url()}\n${headers}\n\n${body}`);
});
async function snapshot(name) {
  writeFileSync(join(dump, `dom-${name}.html`), await page.content());
}

const path = () => new URL(page.url()).pathname;

// Presses Tab until the focused element matches `selector`: what a
// keyboard user does, so a control that cannot be reached fails here.
async function tabTo(selector, max = 150) {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press('Tab');
    if (await page.evaluate((s) => !!document.activeElement?.matches(s), selector)) return i + 1;
  }
  fail(`${selector} was not reached with ${max} presses of Tab`);
}

// Every control the accessibility tree exposes has a name (as a screen
// reader announces it), and every form field is found by its label.
const CONTROL_ROLES = new Set([
  'textbox', 'searchbox', 'combobox', 'listbox', 'button', 'checkbox', 'radio',
  'spinbutton', 'slider', 'switch', 'link', 'menuitem',
]);
async function checkLabels(where) {
  const cdp = await ctx.newCDPSession(page);
  const { nodes } = await cdp.send('Accessibility.getFullAXTree');
  const unnamed = [];
  let controls = 0;
  for (const n of nodes) {
    const role = n.role?.value;
    if (n.ignored || !CONTROL_ROLES.has(role)) continue;
    controls++;
    if (!String(n.name?.value ?? '').trim()) {
      let desc = '';
      if (n.backendDOMNodeId) {
        const { node } = await cdp.send('DOM.describeNode', { backendNodeId: n.backendDOMNodeId });
        desc = `<${node.localName} ${(node.attributes || []).join(' ')}>`;
      }
      unnamed.push(`${role} ${desc}`);
    }
  }
  await cdp.detach();
  if (unnamed.length) fail(`${where}: controls without an accessible name: ${unnamed.join('; ')}`);
  const fields = await page.evaluate(() =>
    [...document.querySelectorAll('input:not([type=hidden]), select, textarea')].map((e, i) => {
      e.setAttribute('data-ks-field', String(i));
      const label = e.labels && e.labels[0];
      return { i, name: e.name || e.id, label: label ? label.textContent.trim() : null };
    }),
  );
  for (const f of fields) {
    if (!f.label) fail(`${where}: field ${f.name} has no <label>`);
    const found = await page
      .getByLabel(f.label, { exact: true })
      .evaluateAll((els, i) => els.some((e) => e.getAttribute('data-ks-field') === String(i)), f.i);
    if (!found) fail(`${where}: getByLabel(${JSON.stringify(f.label)}) does not find field ${f.name}`);
  }
  return { controls, fields: fields.length };
}

// Waits (through navigations) until the incident page says `want`.
async function stateIs(want) {
  const until = Date.now() + 15000;
  let last = '';
  while (Date.now() < until) {
    try {
      last = ((await page.locator('#state').textContent({ timeout: 1000 })) || '').trim();
      if (last.toLowerCase().includes(want)) return last;
    } catch {
      // The page is navigating; look again.
    }
    await page.waitForTimeout(100);
  }
  fail(`#state says ${JSON.stringify(last)}, not ${want}`);
}

const result = { ok: false, steps: done };
try {
  step = 'unauthenticated /ui/ leads to the login page';
  await page.goto(`${base}/ui/`);
  if (path() !== '/ui/login') fail(`GET /ui/ without a session ended at ${page.url()}`);
  await snapshot('login');
  const loginA11y = await checkLabels('login page');
  ok(`${step} (${loginA11y.controls} controls named)`);

  step = 'sign in by keyboard';
  const tabs = await tabTo('input[name="token"]');
  await page.keyboard.type(token);
  await Promise.all([page.waitForURL((u) => u.pathname === '/ui/'), page.keyboard.press('Enter')]);
  const cookie = (await ctx.cookies(`${base}/ui/`)).find((c) => c.name === 'ks_session');
  if (!cookie) fail('no ks_session cookie after signing in');
  if (!cookie.httpOnly || cookie.sameSite !== 'Strict') {
    fail(`ks_session is not HttpOnly; SameSite=Strict: ${JSON.stringify({ ...cookie, value: '…' })}`);
  }
  if ((await page.evaluate(() => document.cookie)).includes('ks_session')) {
    fail('page script can read ks_session');
  }
  ok(`${step} (${tabs} Tab, then typed the token and Enter)`);

  step = 'the planted incident is in the list';
  const row = page.locator(`#incidents tr[data-id="${id}"]`);
  await row.waitFor({ timeout: 10000 });
  const rowText = await row.innerText();
  if (!rowText.includes(shows)) fail(`row ${id} does not show ${shows}: ${JSON.stringify(rowText)}`);
  if (!(await page.locator('#counts').isVisible())) fail('no #counts on the list');
  await snapshot('list');
  const listA11y = await checkLabels('incident list');
  await page.screenshot({ path: join(shots, 'ui-list.png'), fullPage: true });
  ok(`${step} (${listA11y.fields} fields, ${listA11y.controls} controls named)`);

  step = 'open the incident by keyboard';
  const link = `#incidents tr[data-id="${id}"] a[href="/ui/incidents/${id}"]`;
  const linkTabs = await tabTo(link);
  await Promise.all([
    page.waitForURL((u) => u.pathname === `/ui/incidents/${id}`),
    page.keyboard.press('Enter'),
  ]);
  const before = await stateIs('');
  await snapshot('incident');
  const incA11y = await checkLabels('incident page');
  await page.screenshot({ path: join(shots, 'ui-incident.png'), fullPage: true });
  ok(`${step} (${linkTabs} Tab, then Enter; state ${before}; ${incA11y.fields} fields named)`);

  step = 'resolve with a note';
  const form = page.locator('form#resolve');
  await form.getByLabel('Note').fill(note);
  await form.getByRole('button', { name: 'Resolve' }).click();
  await stateIs('resolved');
  // What the store says, not only what a script drew: load the page again.
  await page.reload();
  const after = await stateIs('resolved');
  if (path() !== `/ui/incidents/${id}`) fail(`after resolving the browser is at ${page.url()}`);
  const text = await page.locator('main').innerText();
  if (!text.includes(note)) fail('the note is not on the incident page');
  await snapshot('resolved');
  await page.screenshot({ path: join(shots, 'ui-incident-resolved.png'), fullPage: true });
  ok(`${step} (state ${before} → ${after}, note shown)`);

  step = 'sign out';
  const session = cookie.value;
  const signOut = page.locator('form[action="/ui/logout"]').getByRole('button');
  await Promise.all([page.waitForURL((u) => u.pathname === '/ui/login'), signOut.click()]);
  await page.goto(`${base}/ui/`);
  if (path() !== '/ui/login') fail(`after signing out /ui/ shows ${page.url()}`);
  // The old cookie, replayed by hand, no longer opens the list.
  const api = await pw.request.newContext();
  const replay = await api.get(`${base}/ui/`, {
    headers: { Cookie: `ks_session=${session}` },
    maxRedirects: 0,
  });
  const where = replay.headers().location || '';
  await api.dispose();
  if (replay.status() !== 303 || !where.endsWith('/ui/login')) {
    fail(`the signed-out session still answers ${replay.status()} ${where}`);
  }
  await snapshot('signed-out');
  ok(`${step} (back at the login page; the old session is refused)`);
  result.ok = true;
} catch (e) {
  result.failed = step;
  result.error = String(e && e.message ? e.message : e).split('\n')[0];
  console.log(`FAILED at "${step}": ${result.error} (page ${page.url()})`);
  await page.screenshot({ path: join(shots, 'failure.png'), fullPage: true }).catch(() => {});
  await snapshot('failure').catch(() => {});
}
// Closing writes the profile (history) out for the test to read.
await ctx.close();
result.screenshots = shots;
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
