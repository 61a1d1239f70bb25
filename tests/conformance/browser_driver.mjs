// Runs the conformance page (harness.js) in headless Chromium with playwright-core and prints
// one JSON object on stdout: what the page recorded, the page's console errors, timings.
//
// Usage: node browser_driver.mjs '{"pageUrl": ..., "wav": ..., "chromium": ..., "timeoutMs": ...}'
//
// The fake microphone plays `wav` once (%noloop) from the first getUserMedia on. The SDK loads
// its VAD files from https://assets.layercode.com; they are served from the page's origin
// instead (CONFORMANCE_NOTES fix A): page.route for the model and ONNX runtime files, and an
// init script for the AudioWorklet module, which page.route does not intercept.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const options = JSON.parse(process.argv[2]);
const started = Date.now();
const consoleErrors = [];
const requests = [];
let context = null;
const profile = mkdtempSync(join(tmpdir(), 'layercode-conformance-'));

function finish(result, code) {
  process.stdout.write(`${JSON.stringify({ ...result, consoleErrors, requests, totalMs: Date.now() - started })}\n`);
  rmSync(profile, { recursive: true, force: true });
  process.exit(code);
}

// A last resort: whatever hangs, the run ends (the test's own timeout is longer).
const watchdog = setTimeout(() => {
  const close = context ? context.close().catch(() => {}) : Promise.resolve();
  const timer = setTimeout(() => finish({ error: `watchdog: over ${options.timeoutMs} ms` }, 3), 3000);
  close.then(() => {
    clearTimeout(timer);
    finish({ error: `watchdog: over ${options.timeoutMs} ms` }, 3);
  });
}, options.timeoutMs);

try {
  const launched = Date.now();
  context = await chromium.launchPersistentContext(profile, {
    executablePath: options.chromium,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-background-networking',
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
      `--use-file-for-fake-audio-capture=${options.wav}%noloop`,
      '--autoplay-policy=no-user-gesture-required',
    ],
  });
  const launchMs = Date.now() - launched;
  const origin = new URL(options.pageUrl).origin;
  await context.addInitScript(() => {
    const original = AudioWorklet.prototype.addModule;
    AudioWorklet.prototype.addModule = function addModule(url, moduleOptions) {
      const local = String(url).replace('https://assets.layercode.com/', `${location.origin}/assets/`);
      return original.call(this, local, moduleOptions);
    };
  });
  const page = context.pages()[0] ?? (await context.newPage());
  await page.route('https://assets.layercode.com/**', async (route) => {
    const path = new URL(route.request().url()).pathname;
    await route.fulfill({ response: await route.fetch({ url: `${origin}/assets${path}` }) });
  });
  page.on('request', (request) => requests.push(request.url()));
  page.on('console', (message) => {
    if (message.type() === 'error') consoleErrors.push(message.text());
  });
  page.on('pageerror', (error) => consoleErrors.push(`pageerror: ${error.message}`));
  await page.goto(options.pageUrl, { timeout: 10000 });
  await page.waitForFunction(() => window.harness !== undefined, null, { timeout: 10000 });
  const result = await page.evaluate(() => window.harness.run());
  await context.close();
  context = null;
  clearTimeout(watchdog);
  finish({ ...result, launchMs }, 0);
} catch (error) {
  clearTimeout(watchdog);
  if (context) await context.close().catch(() => {});
  finish({ error: String(error?.stack ?? error) }, 2);
}
