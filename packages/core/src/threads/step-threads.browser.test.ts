import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * The threads in a browser: headless Chromium loads the built dist/ as plain ES modules from a
 * page served cross-origin isolated (COOP/COEP), so SharedArrayBuffer exists and the step's
 * workers are module Web Workers started from dist/threads/step-worker.js, as a bundler that keeps
 * `new URL('./step-worker.js', import.meta.url)` would serve them. The page's main thread cannot
 * block, so it spins while it waits. Skipped with a notice without Chromium or a build, failed
 * then under ACCSGD_REQUIRE_WEBGPU=1 (the switch CI sets for its browser tests).
 */
const packageRoot = fileURLToPath(new URL('../..', import.meta.url));
const chromium = [process.env.ACCSGD_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser'].find(
  (p): p is string => !!p && existsSync(p),
);
const built = existsSync(join(packageRoot, 'dist/threads/step-worker.js'));
const reason = !chromium
  ? 'no Chromium (apt-get install chromium)'
  : !built
    ? 'dist/ is not built'
    : undefined;
const required = process.env.ACCSGD_REQUIRE_WEBGPU === '1';
if (reason && !required) console.warn(`\n[accsgd] SKIPPED the threads-in-a-browser test: ${reason}\n`);

const PAGE = `<!doctype html><meta charset="utf-8"><script type="module">
import { AccSGD, ParameterArena, fusedCoefficients, resolveHyperparams } from '/dist/index.js';
import { StepThreads } from '/dist/threads/step-threads.js';
const out = { isolated: globalThis.crossOriginIsolated };
try {
  const sizes = [300001, 7, 250000, 65536];
  const total = sizes.reduce((a, b) => a + b, 0);
  const make = (shared, threads) => {
    const arena = new ParameterArena(3 * total + 64, { shared });
    const params = sizes.map((n, t) => { const p = arena.float32(n); for (let i = 0; i < n; i++) p[i] = Math.sin(i * 0.37 + t); return p; });
    const grads = sizes.map((n) => arena.float32(n));
    return { arena, params, grads, opt: new AccSGD(params, { lr: 0.05, weightDecay: 1e-3 }, { arena, threads }) };
  };
  const one = make(false, 1), two = make(true, 2);
  out.shared = two.arena.shared;
  await two.opt.threadsReady();
  out.threads = two.opt.threads;
  for (let k = 0; k < 3; k++) {
    for (const m of [one, two]) m.grads.forEach((g, t) => { for (let i = 0; i < g.length; i++) g[i] = Math.cos(i * 0.1 + k + t) * 0.1; });
    one.opt.step(one.grads); two.opt.step(two.grads);
  }
  const same = (a, b) => a.every((x, i) => Object.is(x, b[i]));
  out.identical = one.params.every((p, t) => same(p, two.params[t]) && same(one.opt.buffer(t), two.opt.buffer(t)));
  const before = two.params.map((p) => p.slice());
  two.grads[2][249999] = NaN;
  try { two.opt.step(two.grads); } catch (e) { out.error = e.message; }
  out.unchanged = two.params.every((p, t) => same(p, before[t]));
  two.opt.dispose();
  out.afterDispose = two.opt.threads;
  // Parameters and gradients side by side on one SharedArrayBuffer (every thread copies its own
  // pieces), but for one gradient on a buffer of its own, which Web Workers cannot be handed
  // mid-step: that one streams through this thread. Both as one thread would.
  const memory = new SharedArrayBuffer(4 * 2 * total);
  let used = 0;
  const place = (n) => { const v = new Float32Array(memory, 4 * used, n); used += n; return v; };
  const sharedParams = sizes.map((n, t) => place(n).fill(0.5 + t));
  const sharedGrads = sizes.map((n, t) => (t === 2 ? new Float32Array(new SharedArrayBuffer(4 * n)) : place(n)));
  const plainParams = sharedParams.map((p) => p.slice());
  const threaded = new AccSGD(sharedParams, { lr: 0.05 }, { threads: 2 });
  const alone = new AccSGD(plainParams, { lr: 0.05 });
  await threaded.threadsReady();
  for (let k = 0; k < 2; k++) {
    sharedGrads.forEach((g, t) => { for (let i = 0; i < g.length; i++) g[i] = Math.cos(i * 0.3 + k + t) * 0.1; });
    threaded.step(sharedGrads);
    alone.step(sharedGrads.map((g) => g.slice()));
  }
  out.sharedIdentical = sharedParams.every((p, t) => same(p, plainParams[t]) && same(threaded.buffer(t), alone.buffer(t)));
  out.sharedThreads = threaded.threads;
  threaded.dispose();
  // Workers alone (the page's thread claims nothing): their chunks, their results.
  const n = 200003;
  const arena = new ParameterArena(6 * n + 64, { shared: true });
  const [p, g, b, p2, g2, b2] = Array.from({ length: 6 }, () => arena.float32(n));
  for (let i = 0; i < n; i++) { p[i] = p2[i] = Math.sin(i); g[i] = g2[i] = Math.cos(i) * 0.1; b[i] = b2[i] = Math.sin(2 * i); }
  const c = fusedCoefficients(resolveHyperparams({ lr: 0.02 }));
  const threads = StepThreads.create([{ memory: arena.memory, kernel: arena.kernel }], 3, 8, 2, { callerWorks: false });
  await threads.ready();
  threads.begin(0); threads.setCoefficients(0, c, false); threads.add(p.byteOffset, g.byteOffset, b.byteOffset, n, 0);
  out.workersScan = threads.scan();
  threads.update();
  out.workerChunks = threads.workerChunks;
  arena.kernel.update(p2.byteOffset, g2.byteOffset, b2.byteOffset, n, c, false);
  out.workersIdentical = same(p, p2) && same(b, b2);
  threads.dispose();
} catch (e) { out.failure = String(e && e.stack || e); }
window.__result = out;
</script>`;

let server: Server | undefined;
afterAll(() => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())));

function serve(): Promise<string> {
  server = createServer((request, response) => {
    const headers = {
      'Cross-Origin-Opener-Policy': 'same-origin',
      'Cross-Origin-Embedder-Policy': 'require-corp',
    };
    const path = new URL(request.url ?? '/', 'http://x').pathname;
    if (path === '/') {
      response.writeHead(200, { ...headers, 'Content-Type': 'text/html' }).end(PAGE);
      return;
    }
    const file = normalize(join(packageRoot, path));
    if (!file.startsWith(join(packageRoot, 'dist')) || !existsSync(file)) {
      response.writeHead(404, headers).end();
      return;
    }
    const type = extname(file) === '.js' ? 'text/javascript' : 'application/octet-stream';
    response.writeHead(200, { ...headers, 'Content-Type': type }).end(readFileSync(file));
  });
  return new Promise((resolve) =>
    server!.listen(0, '127.0.0.1', () =>
      resolve(`http://127.0.0.1:${(server!.address() as AddressInfo).port}`),
    ),
  );
}

describe.skipIf(reason !== undefined && !required)('threads in a cross-origin isolated page', () => {
  it('step with module Web Workers, bit-identical and atomic, and stop at dispose()', async () => {
    if (reason) expect.fail(`ACCSGD_REQUIRE_WEBGPU=1 but ${reason}`);
    const { chromium: launcher } = await import('playwright-core');
    const browser = await launcher.launch({
      executablePath: chromium,
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-background-networking',
        '--disable-component-update',
        '--no-first-run',
      ],
    });
    try {
      const page = await browser.newPage();
      await page.goto(await serve());
      await page.waitForFunction(() => (window as { __result?: unknown }).__result !== undefined, undefined, {
        timeout: 120_000,
      });
      const result = await page.evaluate(() => (window as { __result?: unknown }).__result);
      expect(result).toEqual({
        isolated: true,
        shared: true,
        threads: 2,
        identical: true,
        error:
          'gradient for parameter "2": element 249999 is NaN (non-finite gradients are rejected; see the nonFinite option)',
        unchanged: true,
        afterDispose: 1,
        sharedIdentical: true,
        sharedThreads: 2,
        workersScan: true,
        workerChunks: 2 * 4, // 200,003 elements: 4 chunks, scanned then updated
        workersIdentical: true,
      });
    } finally {
      await browser.close();
    }
  }, 180_000);
});
