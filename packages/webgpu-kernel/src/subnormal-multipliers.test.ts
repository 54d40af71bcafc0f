import {
  accuracyBound,
  float32Multipliers,
  fusedCoefficients,
  relativeError,
  resolveHyperparams,
} from '@accsgd/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { twinOptimizers } from './test-support/compare.js';
import { noGPU, noGPUReason, testDevice } from './test-support/gpu.js';

// lr = 1e-40 is valid: its float32 multipliers bufFromGrad = -smallConst * xi * lr = -7e-40 and
// paramFromGrad = -zeta * lr are subnormal, not zero. WGSL lets a device flush subnormal values
// to zero (SwiftShader does), which dropped the gradient term: with large gradients and small
// parameters the step missed SPEC §3's bound by 2.6e5x. The kernel keeps such multipliers as a
// normal float32 times 2^-64 (exact), so a flush-to-zero device computes what core computes.
describe.skipIf(noGPU)(`subnormal float32 multipliers (${noGPU ? noGPUReason : 'Dawn'})`, () => {
  let device: GPUDevice;
  beforeAll(async () => {
    device = await testDevice();
  });
  afterAll(() => device?.destroy());

  it('lr = 1e-40 has subnormal gradient multipliers (the case under test)', () => {
    const m = float32Multipliers(fusedCoefficients(resolveHyperparams({ lr: 1e-40 })), false);
    for (const k of [2, 4]) {
      expect(m[k]).not.toBe(0);
      expect(Math.abs(m[k]!)).toBeLessThan(2 ** -126);
    }
  });

  it('keeps the gradient term of lr = 1e-40 with large gradients, as core does (within the bound)', async () => {
    const size = 64;
    // Parameters near 1e-15 and gradients near 1e25: the gradient term c * g is about 1e-15, as
    // large as the parameters, and is lost when the subnormal multiplier is flushed.
    const init = new Float32Array(size).map((_, i) => (1 + (i % 7)) * 1e-15);
    const grad = () => new Float32Array(size).map((_, i) => ((i % 5) - 2) * 1e25 + 3e24);
    const twins = await twinOptimizers(device, [{ hyperparams: {}, tensors: [{ name: 'w', size, init }] }], {
      lr: 1e-40,
    });
    for (let t = 0; t < 3; t++) await twins.step({ w: grad() });
    const gpu = await twins.readFlat(0);
    const cpu = twins.cpuParams.get('w')!;
    // The gradient term moved the parameters: core's result is far from the no-gradient one.
    expect(relativeError(cpu, init)).toBeGreaterThan(0.1);
    expect(relativeError(gpu, cpu)).toBeLessThanOrEqual(accuracyBound('float32', 3));
    twins.gpu.destroy();
  });
});
