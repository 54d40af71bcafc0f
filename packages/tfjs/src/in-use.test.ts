import { findNodeWebGPU, webgpuRequired } from '@accsgd/conformance';
import { describe, expect, it } from 'vitest';
import { fitComparison } from './test-support/fit-comparison.js';
import { expectSameTraining } from './test-support/same-training.js';

describe('AccSGD in use: model.fit, fused kernel against tfjs ops', () => {
  for (const backend of ['cpu', 'wasm'] as const) {
    it(`${backend}: the same weights after 48 steps`, async () => {
      const result = await fitComparison({ backend });
      expect(result.backend).toBe(backend);
      expectSameTraining(result);
    });
  }

  it('webgpu in Node (Dawn): the same weights after 48 steps', async (context) => {
    const found = await findNodeWebGPU();
    if (!found.available) {
      expect(webgpuRequired(), `ACCSGD_REQUIRE_WEBGPU=1 but ${found.reason}`).toBe(false);
      console.warn(`[accsgd] SKIPPED webgpu in-use training: ${found.reason}`);
      context.skip();
    }
    // The default non-finite check: on webgpu it runs on the device (tfjs-backend-webgpu in Node
    // has no synchronous read-back, and model.fit's applyGradients needs none).
    const result = await fitComparison({ backend: 'webgpu', nonFinite: 'error' });
    expect(result.backend).toBe('webgpu');
    expectSameTraining(result);
  });
});
