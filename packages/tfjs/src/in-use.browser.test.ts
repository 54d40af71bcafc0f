import { fileURLToPath } from 'node:url';
import { findChromium, webgpuRequired } from '@accsgd/conformance';
import { runInBrowser } from '@accsgd/conformance/browser';
import { describe, expect, it } from 'vitest';
import type { FitComparison } from './test-support/fit-comparison.js';
import { expectSameTraining } from './test-support/same-training.js';
import type { SyncStepOutcome } from './test-support/sync-step.js';

// The same model.fit comparison as in-use.test.ts, inside headless Chromium on its webgl and
// webgpu backends (SwiftShader without a GPU).
const chromium = findChromium();
const module = fileURLToPath(new URL('./test-support/fit-comparison.ts', import.meta.url));

describe('AccSGD in use in headless Chromium: model.fit, fused kernel against tfjs ops', () => {
  for (const backend of ['webgl', 'webgpu'] as const) {
    it(`${backend}: the same weights after 48 steps`, async (context) => {
      if (!chromium.available) {
        expect(webgpuRequired(), `ACCSGD_REQUIRE_WEBGPU=1 but ${chromium.reason}`).toBe(false);
        console.warn(`[accsgd] SKIPPED ${backend} in-use training in Chromium: ${chromium.reason}`);
        context.skip();
      }
      const result = await runInBrowser<FitComparison>({
        module,
        exportName: 'fitComparison',
        // The default settings, as a page calls model.fit: the non-finite check included (on
        // webgpu it runs on the device; tfjs's synchronous read-back there returns zeros on
        // SwiftShader and loses the page's WebGPU).
        args: { backend, nonFinite: 'error' },
        executablePath: chromium.available ? chromium.executablePath : undefined,
      });
      expect(result.backend).toBe(backend);
      expectSameTraining(result);
    });
  }
});

describe('the synchronous non-finite check in headless Chromium', () => {
  for (const backend of ['webgl', 'webgpu'] as const) {
    it(`${backend}: a finite gradient is applied; a bad one changes nothing, is reported, and leaves the device usable`, async (context) => {
      if (!chromium.available) {
        expect(webgpuRequired(), `ACCSGD_REQUIRE_WEBGPU=1 but ${chromium.reason}`).toBe(false);
        context.skip();
      }
      const outcome = await runInBrowser<SyncStepOutcome>({
        module: fileURLToPath(new URL('./test-support/sync-step.ts', import.meta.url)),
        exportName: 'syncStepOutcome',
        args: { backend },
        executablePath: chromium.available ? chromium.executablePath : undefined,
      });
      expect(outcome.error).toBeNull();
      // GPU arithmetic may contract to fused multiply-adds: a few float32 ulps.
      expect(outcome.untouched).toBe(false);
      outcome.got!.forEach((v, i) => expect(Math.abs(v - outcome.expected[i]!)).toBeLessThan(1e-6));
      // A NaN gradient next: rejected (at once on webgl, by the device's verdict on webgpu) ...
      expect(outcome.bad.error).toBe('AccSGDGradientError');
      expect(outcome.bad.message).toMatch(/sync_step_v.*element 7 is NaN/);
      // ... with the variable as the first step left it, read back afterwards: WebGPU still works.
      expect(outcome.bad.after).toEqual(outcome.got);
    });
  }
});
