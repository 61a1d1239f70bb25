// Drives Home Assistant's frontend as a newcomer would, in headless Chromium (Debian's) with
// playwright-core, and prints one JSON object on stdout: the steps done with their times and
// what they saw, or the error and the step it happened in. A screenshot of every step goes to
// `screenshots`, so that a failure can be seen. Two scenarios, after logging in:
//   add-integration  Settings > Devices & services > Add integration > Layercode, the provider
//                    menu, the config flow with the local server's URLs, the new device's page
//   assist           the Assist dialog: one typed request, then one spoken into a fake
//                    microphone that plays the WAV file `microphone` once
//
// Usage: node frontend_driver.mjs '{"scenario": ..., "url": ..., "username": ..., "password": ...,
//   "chromium": ..., "screenshots": ..., "timeoutMs": ..., and for add-integration "agentId",
//   "authorizeUrl", "websocketUrl"; for assist "microphone", "typed"}'
//
// Home Assistant's frontend is web components with open shadow roots: playwright's
// role/label/text locators pierce them. Every wait is bounded (STEP_MS each, `timeoutMs` in all).
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const options = JSON.parse(process.argv[2]);
const STEP_MS = 30000;
const started = Date.now();
const steps = [];
const consoleErrors = [];
const blocked = [];
let step = 'launch';
let context = null;
const profile = mkdtempSync(join(tmpdir(), 'layercode-frontend-'));
mkdirSync(options.screenshots, { recursive: true });

function finish(result, code) {
  const out = { ...result, steps, consoleErrors, blocked, totalMs: Date.now() - started };
  process.stdout.write(`${JSON.stringify(out)}\n`);
  rmSync(profile, { recursive: true, force: true });
  process.exit(code);
}

// A last resort: whatever hangs, the run ends (the test's own timeout is longer).
const watchdog = setTimeout(() => {
  const close = context ? context.close().catch(() => {}) : Promise.resolve();
  const result = { error: `watchdog: over ${options.timeoutMs} ms`, failedStep: step };
  const timer = setTimeout(() => finish(result, 3), 3000);
  close.then(() => {
    clearTimeout(timer);
    finish(result, 3);
  });
}, options.timeoutMs);

async function run(name, page, action) {
  step = name;
  const t0 = Date.now();
  await action();
  steps.push({ name, ms: Date.now() - t0 });
  await page.screenshot({ path: join(options.screenshots, `${steps.length}-${name}.png`) });
}

async function addIntegration(page) {
  await run('integrations', page, async () => {
    await page.goto(`${options.url}/config/integrations/dashboard`);
    await page.getByText('Add integration', { exact: true }).waitFor();
  });

  await run('add-integration', page, async () => {
    await page.getByText('Add integration', { exact: true }).click();
    await page.getByLabel('Search for a brand name').fill('Layercode');
    await page.getByText('Layercode Voice Agent', { exact: true }).click();
    // The provider menu: Layercode or LiveLayer.
    await page.getByText('Layercode agent', { exact: true }).click();
    await page.getByLabel('Agent ID').waitFor();
  });

  await run('config-flow', page, async () => {
    await page.getByLabel('Agent ID').fill(options.agentId);
    await page.getByLabel('Authorize URL').fill(options.authorizeUrl);
    await page.getByLabel('WebSocket URL').fill(options.websocketUrl);
    await page.getByRole('button', { name: 'Submit' }).click();
    await page.getByText(`Created configuration for ${options.agentId}.`).waitFor();
  });

  await run('finish', page, async () => {
    await page.getByRole('button', { name: 'Finish' }).click();
    // The first entry of an integration: the frontend opens the integration's page.
    await page.waitForURL(/\/config\/integrations\/integration\/layercode/);
    await page.getByText(options.agentId, { exact: true }).waitFor();
  });

  await run('device-page', page, async () => {
    // The entry row's "1 service": with one device, it leads to that device's page.
    await page.getByText('1 service', { exact: true }).last().click();
    await page.waitForURL(/\/config\/devices\/device\//);
  });

  // Each status entity's row on the device page, and what it shows.
  const rows = {
    Mute: 'hui-toggle-entity-row',
    'Agent speaking': 'hui-simple-entity-row',
    'User speaking': 'hui-simple-entity-row',
    Connection: 'hui-sensor-entity-row',
  };
  const seen = {};
  await run('device-entities', page, async () => {
    for (const [name, element] of Object.entries(rows)) {
      // The device page re-renders its rows as the new entities' states arrive: a row can be
      // replaced while it is read, so each read is tried again (bounded) on a fresh element.
      for (let attempt = 1; ; attempt++) {
        try {
          seen[name] = await readRow(page.locator(element, { hasText: name }).first());
          break;
        } catch (error) {
          if (attempt >= 5 || !String(error).includes('not attached')) throw error;
          await page.waitForTimeout(300);
        }
      }
    }
  });

  return { deviceUrl: page.url(), seen };
}

async function readRow(row) {
  await row.scrollIntoViewIfNeeded();
  const toggle = row.getByRole('switch');
  return {
    visible: await row.isVisible(),
    text: await row.evaluate((node) => {
      // The row's text, shadow roots included.
      const parts = [];
      const walk = (n) => {
        if (n.nodeType === Node.TEXT_NODE) parts.push(n.textContent);
        if (n.shadowRoot) walk(n.shadowRoot);
        for (const child of n.childNodes) walk(child);
      };
      walk(node);
      return parts.join(' ').replace(/\s+/g, ' ').trim();
    }),
    switchOn: (await toggle.count()) ? await toggle.isChecked() : null,
  };
}

// The chat bubbles of the Assist dialog: [{from: "user"|"hass", text}].
async function bubbles(page) {
  const messages = page.locator('ha-assist-chat .message');
  const texts = await messages.allTextContents();
  const classes = await messages.evaluateAll((nodes) => nodes.map((node) => node.className));
  return texts.map((text, i) => ({
    from: classes[i].includes('user') ? 'user' : 'hass',
    text: text.replace(/\s+/g, ' ').trim(),
  }));
}

// Waits (bounded) until the dialog shows `count` bubbles, the last one from Home Assistant.
async function waitForBubbles(page, count) {
  const deadline = Date.now() + STEP_MS;
  for (;;) {
    const shown = await bubbles(page);
    if (shown.length >= count && shown[count - 1].from === 'hass') return;
    if (Date.now() > deadline) {
      throw new Error(`the Assist dialog shows ${JSON.stringify(shown)}, not ${count} bubbles`);
    }
    await page.waitForTimeout(200);
  }
}

async function assist(page) {
  let shown = 0;
  await run('assist-open', page, async () => {
    await page.getByRole('button', { name: 'Assist' }).click();
    await page.getByLabel('Enter a request').waitFor();
    await waitForBubbles(page, 1); // "How can I assist?"
    shown = (await bubbles(page)).length;
  });
  await run('assist-typed', page, async () => {
    await page.getByLabel('Enter a request').fill(options.typed);
    await page.getByLabel('Enter a request').press('Enter');
    await waitForBubbles(page, shown + 2);
    shown += 2;
  });
  await run('assist-spoken', page, async () => {
    // The fake microphone starts playing at the first capture, i.e. now.
    await page.getByRole('button', { name: 'Start listening' }).click();
    await waitForBubbles(page, shown + 2);
  });
  return { bubbles: await bubbles(page) };
}

try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: options.chromium,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: [
      '--no-sandbox',
      '--disable-background-networking',
      ...(options.microphone
        ? [
            '--use-fake-ui-for-media-stream',
            '--use-fake-device-for-media-stream',
            `--use-file-for-fake-audio-capture=${options.microphone}%noloop`,
            '--autoplay-policy=no-user-gesture-required',
          ]
        : []),
    ],
  });
  context.setDefaultTimeout(STEP_MS);
  const origin = new URL(options.url).origin;
  // Only Home Assistant itself: brand icons and the like from the internet are refused here
  // rather than left to time out.
  await context.route(
    (url) => url.origin !== origin,
    (route) => {
      blocked.push(route.request().url());
      return route.abort('blockedbyclient');
    },
  );
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (message) => {
    if (message.type() === 'error') consoleErrors.push(message.text());
  });
  page.on('pageerror', (error) => consoleErrors.push(`pageerror: ${error.message}`));

  await run('login', page, async () => {
    await page.goto(`${options.url}/`);
    await page.waitForURL(/\/auth\/authorize/);
    await page.getByLabel('Username').fill(options.username);
    await page.getByLabel('Password', { exact: true }).fill(options.password);
    await page.getByRole('button', { name: 'Log in' }).click();
    // The default dashboard, and the tokens saved ("Keep me logged in"): a navigation before
    // then logs out again.
    await page.waitForURL(/\/lovelace/);
    await page.waitForFunction(() => localStorage.getItem('hassTokens') !== null);
  });

  const result =
    options.scenario === 'assist' ? await assist(page) : await addIntegration(page);
  await context.close();
  context = null;
  clearTimeout(watchdog);
  finish({ ok: true, ...result }, 0);
} catch (error) {
  clearTimeout(watchdog);
  if (context) {
    const page = context.pages()[0];
    if (page) await page.screenshot({ path: join(options.screenshots, 'failure.png') }).catch(() => {});
    await context.close().catch(() => {});
  }
  finish({ error: String(error?.message ?? error), failedStep: step }, 1);
}
