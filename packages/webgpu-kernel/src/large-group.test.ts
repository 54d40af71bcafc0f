import { accuracyBound, relativeError } from '@accsgd/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pattern, twinOptimizers } from './test-support/compare.js';
import { noGPU, testDevice } from './test-support/gpu.js';

/**
 * A group of 41,000,080 parameters (164 MB of float32) on a device with the default limits
 * (maxStorageBufferBindingSize 128 MiB, maxComputeWorkgroupsPerDimension 65,535): the group needs
 * two binding windows, each covered by one capped dispatch whose workgroups loop over the window's
 * 65,536 chunks of 512 elements (folding itself is covered by the small-limit tests). Every element
 * of every tensor is compared with the CPU optimizer of @accsgd/core.
 */
const SIZES = { big: 40_000_000, odd: 1_000_003, small: 77 };

describe.skipIf(noGPU)('a group beyond maxStorageBufferBindingSize and 65,535 workgroups', () => {
  let device: GPUDevice;
  beforeAll(async () => {
    device = await testDevice();
  });
  afterAll(() => device?.destroy());

  it('matches the CPU optimizer element for element over three steps', async () => {
    expect(device.limits.maxStorageBufferBindingSize).toBe(128 * 1024 * 1024);
    expect(device.limits.maxComputeWorkgroupsPerDimension).toBe(65535);
    const twin = await twinOptimizers(
      device,
      [
        {
          hyperparams: { weightDecay: 1e-3 },
          tensors: [
            { name: 'big', size: SIZES.big },
            { name: 'odd', size: SIZES.odd, offset: SIZES.big + 64 },
            { name: 'small', size: SIZES.small, offset: SIZES.big + 64 + SIZES.odd },
          ],
        },
      ],
      { lr: 0.05 },
    );
    // Elements [0, 41,000,144) in windows of 33,554,432: two dispatches for the one group.
    expect(twin.gpu.dispatchesPerStep).toBe(2);
    const grads = { big: pattern(SIZES.big, 7), odd: pattern(SIZES.odd, 8), small: pattern(SIZES.small, 9) };
    const schedule = [grads, { ...grads, odd: null }, grads];
    for (let t = 1; t <= schedule.length; t++) {
      await twin.step(schedule[t - 1]!);
      if (t === 2) continue;
      const read = await twin.gpu.read();
      for (const name of Object.keys(SIZES)) {
        expect(
          relativeError(read.params.get(name)!, twin.cpuParams.get(name)!),
          `param ${name}, step ${t}`,
        ).toBeLessThanOrEqual(accuracyBound('float32', t));
        expect(
          relativeError(read.buffers.get(name)!, twin.cpu.buffer(name)!),
          `buffer ${name}, step ${t}`,
        ).toBeLessThanOrEqual(accuracyBound('float32', t));
      }
    }
    expect(twin.gpu.paramGroups[0]!.step).toBe(3);
    twin.gpu.destroy();
    for (const b of twin.buffers) {
      b.params.destroy();
      b.grads.destroy();
    }
  }, 180_000);
});
