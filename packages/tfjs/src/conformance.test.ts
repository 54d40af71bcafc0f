import { describeConformance } from '@accsgd/conformance/vitest';
import { AccSGDConfigError } from '@accsgd/core';
import { describe, expect, it } from 'vitest';
import { conformanceAdapter } from './conformance.js';

// The full suite (golden trajectories, resume, state file, bad inputs) on the Node backends whose
// memory JS reads directly, fused and composite. WebGPU is in conformance-webgpu.test.ts, the
// browser backends in conformance-browser.test.ts.
describeConformance(() => conformanceAdapter({ backend: 'cpu' }), {
  title: 'tfjs/cpu (fused kernel)',
  requireClosedLoop: true,
});
describeConformance(() => conformanceAdapter({ backend: 'cpu', fused: false }), {
  title: 'tfjs/cpu (composite ops)',
  requireClosedLoop: true,
});
describeConformance(() => conformanceAdapter({ backend: 'wasm' }), {
  title: 'tfjs/wasm (fused kernel)',
  requireClosedLoop: true,
});

describe('conformanceAdapter options', () => {
  it('refuses an option it does not know, or a value outside its choices, naming it', async () => {
    await expect(conformanceAdapter({ backend: 'cpu', bogus: 1 } as never)).rejects.toThrow(
      "bogus is not an option of @accsgd/tfjs's conformance adapter (expected backend, fused, api); got 1",
    );
    await expect(conformanceAdapter({ api: 'fit' } as never)).rejects.toThrow(AccSGDConfigError);
    await expect(conformanceAdapter({ backend: 'tpu' } as never)).rejects.toThrow(AccSGDConfigError);
  });
});
