import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findChromium } from '@accsgd/conformance';
import { BASE_FLAGS, WEBGPU_FLAGS } from '@accsgd/conformance/browser';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { startStaticServer } from '../scripts/static-server.mjs';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const DIST = join(ROOT, 'dist');
export const OUTPUT = join(ROOT, 'test-output');

export interface Harness {
  browser: Browser;
  context: BrowserContext;
  page: Page;
  url: string;
  /** console.error messages, page errors and failed requests, as lines. */
  problems: string[];
  /** Requests to anything but the page's own origin. */
  foreign: string[];
  close(): Promise<void>;
}

/**
 * The built page (dist/) on a loopback static server, in Debian's Chromium with the WebGPU flags
 * the project uses (SwiftShader without a GPU). Nothing is downloaded.
 */
export async function openPlayground(): Promise<Harness> {
  if (!existsSync(join(DIST, 'index.html')))
    throw new Error(`no build in ${DIST}: run \`npm run build -w @accsgd/example-playground\` first`);
  const found = findChromium();
  if (!found.available) throw new Error(`no Chromium: ${found.reason}`);
  await mkdir(OUTPUT, { recursive: true });
  const server = await startStaticServer({ root: DIST });
  const browser = await chromium.launch({
    executablePath: found.executablePath,
    headless: true,
    args: [...BASE_FLAGS, ...WEBGPU_FLAGS],
  });
  const context = await browser.newContext({
    viewport: { width: 1200, height: 1000 },
    acceptDownloads: true,
  });
  const page = await context.newPage();
  const problems: string[] = [];
  const foreign: string[] = [];
  const origin = new URL(server.url).origin;
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console.error: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on('request', (r) => {
    const url = r.url();
    if (!url.startsWith(origin) && !url.startsWith('blob:') && !url.startsWith('data:')) foreign.push(url);
  });
  await page.goto(server.url);
  await waitReady(page);
  return {
    browser,
    context,
    page,
    url: server.url,
    problems,
    foreign,
    async close() {
      await browser.close();
      await server.close();
    },
  };
}

export async function waitReady(page: Page): Promise<void> {
  await page.waitForSelector('body[data-ready="true"]', { timeout: 120_000 });
}

/**
 * Reloads the page and waits for it. On SwiftShader, about one reload in six right after a WebGPU
 * run never came back (the page's adapter request did not answer); a person would reload again, and
 * so does this, once, saying so. A second hang fails the test.
 */
export async function reloadReady(page: Page): Promise<void> {
  await page.reload();
  try {
    await page.waitForSelector('body[data-ready="true"]', { timeout: 60_000 });
  } catch {
    console.warn('[accsgd] the playground did not come back from a reload in 60 s; reloading once more');
    await page.reload();
    await waitReady(page);
  }
}

export const webgpuRequired = () => process.env.ACCSGD_REQUIRE_WEBGPU === '1';
export const usesWebGPU = (backend: string) => backend.includes('webgpu') || backend === 'webgpu-kernel';
