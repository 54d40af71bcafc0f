import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AccSGDGradientError, type ConformanceProblem, type ConformanceSession } from '@accsgd/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findChromium, webgpuRequired } from '../environment.js';
import { type BrowserAdapter, openBrowserAdapter, runInBrowser } from './index.js';

const chromiumFound = findChromium();
const skip = !chromiumFound.available && !webgpuRequired();
if (skip)
  console.warn(
    `[accsgd] SKIPPING browser runner tests: ${chromiumFound.available ? '' : chromiumFound.reason}`,
  );

const coreAdapterModule = fileURLToPath(new URL('../../../core/dist/conformance.js', import.meta.url));

// Browser start takes seconds; SwiftShader and a loaded CI machine can make it many.
const START_TIMEOUT_MS = 90_000;
const CALL_TIMEOUT_MS = 30_000;

/** One group with the default kappa 1000, xi 10, smallConst 0.7; one parameter w = [1, 2, 3]. */
const problem: ConformanceProblem = {
  groups: [{ hyperparams: { lr: 0.1 }, params: ['w'] }],
  params: { w: { shape: [3], init: Float64Array.of(1, 2, 3) } },
};
const gradient = Float64Array.of(0.5, -1, 2);

/*
 * The first step by hand:
 *   largeLr = lr*kappa/smallConst = 0.1*1000/0.7     = 142.857142857...
 *   alpha   = 1 - smallConst^2*xi/kappa = 1 - 0.0049 = 0.9951,  beta = 1 - alpha = 0.0049
 *   zeta    = smallConst/(smallConst + beta)          = 0.7/0.7049 = 0.99304865938...
 *   buf starts as p, so buf = beta*((1/beta - 1)*p - largeLr*g + p) = p - beta*largeLr*g = p - 0.7*g
 *     = [1 - 0.35, 2 + 0.7, 3 - 1.4] = [0.65, 2.7, 1.6]
 *   p = zeta*(p - 0.1*g) + (1 - zeta)*(p - 0.7*g) = p - (0.7 - 0.6*zeta)*g = p - 0.10417080437*g
 *     = [0.94791459782, 2.10417080437, 2.79165839126]
 */
const expectedBuffer = [0.65, 2.7, 1.6];
const expectedParam = [0.947914597815293, 2.104170804369414, 2.791658391261172];

/** The same step straight from the formulas, so the literals above are checked too. */
function stepFromFormulas(p: number[], g: number[], lr: number, kappa = 1000, xi = 10, smallConst = 0.7) {
  const largeLr = (lr * kappa) / smallConst;
  const alpha = 1 - (smallConst ** 2 * xi) / kappa;
  const beta = 1 - alpha;
  const zeta = smallConst / (smallConst + beta);
  const buffer = p.map((pi, i) => beta * ((1 / beta - 1) * pi - largeLr * g[i]! + pi));
  const param = p.map((pi, i) => zeta * (pi - lr * g[i]!) + (1 - zeta) * buffer[i]!);
  return { param, buffer };
}

/** float32 results: each element within 1e-6 of the float64 value, relatively. */
function expectClose(got: ArrayLike<number> | null | undefined, expected: number[]) {
  expect(got).toBeInstanceOf(Float64Array);
  expect(got!.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    expect(
      Math.abs(got![i]! - expected[i]!),
      `element ${i}: got ${got![i]}, expected ${expected[i]}`,
    ).toBeLessThanOrEqual(1e-6 * Math.abs(expected[i]!));
  }
}

describe.skipIf(skip)('openBrowserAdapter, core CPU adapter in Chromium', () => {
  let adapter: BrowserAdapter;
  const pageLog: string[] = [];

  beforeAll(async () => {
    if (!chromiumFound.available) throw new Error(`ACCSGD_REQUIRE_WEBGPU=1, but ${chromiumFound.reason}`);
    if (!existsSync(coreAdapterModule)) {
      throw new Error(
        `${coreAdapterModule} is missing: build @accsgd/core first (npx tsc -p tsconfig.build.json in packages/core)`,
      );
    }
    adapter = await openBrowserAdapter({
      module: coreAdapterModule,
      options: { dtype: 'float32' },
      log: (line) => pageLog.push(line),
      startTimeoutMs: START_TIMEOUT_MS,
      callTimeoutMs: CALL_TIMEOUT_MS,
    });
  }, START_TIMEOUT_MS + 10_000);

  afterAll(async () => {
    await adapter?.dispose();
  });

  it('reports the adapter and the browser it runs in', () => {
    expect(adapter.name).toBe('core/float32');
    expect(adapter.dtype).toBe('float32');
    expect(adapter.environment).toMatch(/^chromium \d+\.\d+/);
    if (adapter.environment.endsWith('no WebGPU')) {
      if (webgpuRequired())
        throw new Error(
          `ACCSGD_REQUIRE_WEBGPU=1, but the page has no WebGPU adapter (${adapter.environment})`,
        );
      console.warn(`[accsgd] Chromium started, but its page has no WebGPU adapter: ${adapter.environment}`);
    }
  });

  it('the hand-computed values match the formulas', () => {
    const { param, buffer } = stepFromFormulas([1, 2, 3], [...gradient], 0.1);
    for (let i = 0; i < 3; i++) {
      expect(param[i]).toBeCloseTo(expectedParam[i]!, 12);
      expect(buffer[i]).toBeCloseTo(expectedBuffer[i]!, 12);
    }
  });

  it(
    'runs one step in the page and reads back the hand-computed parameters and buffer',
    async () => {
      const session = await adapter.open(problem);
      try {
        const before = await session.read();
        expectClose(before.params.w, [1, 2, 3]);
        expect(before.buffers.w).toBeNull();

        // A null gradient crosses as null: no step for w, and no buffer yet.
        await session.step({ w: null });
        expect((await session.read()).buffers.w).toBeNull();

        await session.step({ w: gradient });
        const after = await session.read();
        expectClose(after.params.w, expectedParam);
        expectClose(after.buffers.w, expectedBuffer);
      } finally {
        await session.close();
      }
    },
    CALL_TIMEOUT_MS,
  );

  it(
    'a wrong-length gradient rejects with the page error name, message and class, and changes nothing',
    async () => {
      const session = await adapter.open(problem);
      try {
        const rejection = session.step({ w: Float64Array.of(1, 2) });
        await expect(rejection).rejects.toMatchObject({
          name: 'AccSGDGradientError',
          message: expect.stringContaining('"w"'),
        });
        await expect(rejection).rejects.toBeInstanceOf(AccSGDGradientError);
        const after = await session.read();
        expectClose(after.params.w, [1, 2, 3]);
        expect(after.buffers.w).toBeNull();
      } finally {
        await session.close();
      }
    },
    CALL_TIMEOUT_MS,
  );

  it(
    'exportState bytes round-trip through importState, in the same session and in a new one',
    async () => {
      // The state file holds the momentum buffers, hyperparameters and step counts, not the
      // parameters, as a PyTorch optimizer state_dict does.
      let first: ConformanceSession | undefined;
      let second: ConformanceSession | undefined;
      try {
        first = await adapter.open(problem);
        await first.step({ w: gradient });
        const saved = await first.exportState();
        expect(saved).toBeInstanceOf(Uint8Array);
        expect(saved.byteLength).toBeGreaterThan(8);

        await first.step({ w: gradient });
        const paramsAfterTwoSteps = (await first.read()).params.w!;
        expect(await first.exportState()).not.toEqual(saved);
        await first.importState(saved);
        const restored = await first.read();
        expectClose(restored.buffers.w, expectedBuffer);
        expectClose(restored.params.w, [...paramsAfterTwoSteps]);
        expect(await first.exportState()).toEqual(saved);

        second = await adapter.open(problem);
        await second.importState(saved);
        const imported = await second.read();
        expectClose(imported.buffers.w, expectedBuffer);
        expectClose(imported.params.w, [1, 2, 3]);
        expect(await second.exportState()).toEqual(saved);
      } finally {
        await first?.close();
        await second?.close();
      }
    },
    CALL_TIMEOUT_MS,
  );

  it(
    'a malformed state file rejects with the page error name',
    async () => {
      const session = await adapter.open(problem);
      try {
        await expect(session.importState(Uint8Array.of(1, 2, 3))).rejects.toMatchObject({
          name: 'AccSGDStateError',
        });
      } finally {
        await session.close();
      }
    },
    CALL_TIMEOUT_MS,
  );

  it(
    'a closed session refuses further calls',
    async () => {
      const session = await adapter.open(problem);
      await session.close();
      await expect(session.read()).rejects.toThrow(/session \d+ is closed/);
    },
    CALL_TIMEOUT_MS,
  );

  it('forwarded nothing alarming from the page console', () => {
    expect(pageLog.filter((line) => /\[page (error|uncaught|request failed)\]/.test(line))).toEqual([]);
  });
});

describe.skipIf(skip)('openBrowserAdapter, start-up errors', () => {
  it(
    'a factory that throws rejects openBrowserAdapter with the page error',
    async () => {
      await expect(
        openBrowserAdapter({
          module: coreAdapterModule,
          options: { dtype: 'bogus' },
          startTimeoutMs: START_TIMEOUT_MS,
        }),
      ).rejects.toMatchObject({
        name: 'AccSGDConfigError',
        message: expect.stringContaining('dtype'),
      });
    },
    START_TIMEOUT_MS,
  );
});

describe('openBrowserAdapter, bundling errors', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'accsgd-browser-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  // Fails while bundling, before any browser starts, so it runs even without Chromium.
  it('an adapter module that imports Node built-ins fails loudly with the esbuild message', async () => {
    const module = path.join(dir, 'node-only.js');
    await writeFile(
      module,
      "import { readFileSync } from 'node:fs';\nexport const conformanceAdapter = () => readFileSync;\n",
    );
    await expect(openBrowserAdapter({ module, executablePath: '/nonexistent' })).rejects.toThrow(
      /Could not resolve "node:fs"[\s\S]*Node built-ins/,
    );
  });

  it('a statically imported package that is not installed fails the build', async () => {
    const module = path.join(dir, 'static-missing.js');
    await writeFile(
      module,
      "import 'accsgd-no-such-package';\nexport const conformanceAdapter = () => ({});\n",
    );
    await expect(openBrowserAdapter({ module, executablePath: '/nonexistent' })).rejects.toThrow(
      /Could not resolve "accsgd-no-such-package"/,
    );
  });

  it('a missing factory export fails loudly', async () => {
    const module = path.join(dir, 'no-factory.js');
    await writeFile(module, 'export const somethingElse = 1;\n');
    await expect(openBrowserAdapter({ module, executablePath: '/nonexistent' })).rejects.toThrow(
      /No matching export .* for import "conformanceAdapter"/,
    );
  });
});

// An adapter that loads optional peers lazily (tfjs's loads only the backend it is asked for) must
// bundle in a project that lacks the others: such an import() becomes a module that throws.
describe.skipIf(skip)('runInBrowser, lazily imported packages that are not installed', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'accsgd-browser-lazy-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('bundles, runs, and throws only if the missing package is really loaded', async () => {
    const module = path.join(dir, 'lazy.js');
    await writeFile(
      module,
      [
        'export async function probe(which) {',
        "  if (which !== 'missing') return 'not loaded';",
        "  try { await import('accsgd-no-such-package'); return 'loaded'; } catch (e) { return e.message; }",
        '}',
        '',
      ].join('\n'),
    );
    const run = (which: string) =>
      runInBrowser<string>({
        module,
        exportName: 'probe',
        args: which,
        webgpu: false,
        startTimeoutMs: START_TIMEOUT_MS,
        timeoutMs: CALL_TIMEOUT_MS,
      });
    expect(await run('present')).toBe('not loaded');
    expect(await run('missing')).toMatch(/^accsgd-no-such-package is not installed \(it was imported lazily/);
  }, 240_000);
});
