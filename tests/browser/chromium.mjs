// Debian's chromium started headless through playwright-core (no browser
// download), with a fresh profile; shared by dashboard.mjs and load.mjs.

import { existsSync } from 'node:fs';

const INSTALL =
  "run `.ci/run` (it installs Debian's chromium with apt-get and runs `npm ci` in tests/browser)";

// This machine's closed network refuses Chromium's own background
// connections; without these flags it retries them and stalls.
const ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/** The env variable `name`, or exit 2 naming it. */
export function need(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`${process.argv[1]}: ${name} is not set`);
    process.exit(2);
  }
  return v;
}

/** playwright-core and a persistent context on `profile` (a fresh
 * --user-data-dir); exits 2 with the fix when either is not installed. */
export async function launch(profile) {
  const path = process.env.KS_CHROMIUM || '/usr/bin/chromium';
  if (!existsSync(path)) {
    console.error(`no chromium at ${path}: ${INSTALL}`);
    process.exit(2);
  }
  let pw;
  try {
    pw = await import('playwright-core');
  } catch (e) {
    console.error(`cannot load playwright-core (${e.code || e.message}): ${INSTALL}`);
    process.exit(2);
  }
  const ctx = await pw.chromium.launchPersistentContext(profile, {
    executablePath: path,
    headless: true,
    args: ARGS,
    viewport: { width: 1280, height: 900 },
  });
  return { pw, ctx };
}
