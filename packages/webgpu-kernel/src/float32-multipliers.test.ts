import { AccSGDConfigError, AccSGDStateError, encodeState, resolveHyperparams } from '@accsgd/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { noGPU, noGPUReason, testDevice } from './test-support/gpu.js';
import { WebGPUAccSGD } from './webgpu-optimizer.js';

const STORAGE = 0x80;

/** The AccSGDConfigError's field, or a failure when `attempt` does not throw one. */
async function rejectedField(attempt: () => unknown): Promise<string> {
  try {
    await attempt();
  } catch (error) {
    expect(error).toBeInstanceOf(AccSGDConfigError);
    return (error as AccSGDConfigError).field;
  }
  throw new Error('expected an AccSGDConfigError');
}

// SPEC §1: the kernels take float32 multipliers, so hyperparameters that are valid in float64 but
// whose float32 multipliers overflow or round to zero are rejected, naming the field.
describe.skipIf(noGPU)(
  `WebGPUAccSGD rejects hyperparameters whose float32 multipliers overflow or vanish (${noGPU ? noGPUReason : 'Dawn'})`,
  () => {
    let device: GPUDevice;
    let params: GPUBuffer;
    let grads: GPUBuffer;
    beforeAll(async () => {
      device = await testDevice();
      params = device.createBuffer({ size: 64, usage: STORAGE });
      grads = device.createBuffer({ size: 64, usage: STORAGE });
    });
    afterAll(() => device?.destroy());
    const create = (defaults: Parameters<typeof WebGPUAccSGD.create>[2], group: object = {}) =>
      WebGPUAccSGD.create(
        device,
        [{ params, grads, segments: [{ offset: 0, size: 16 }], ...group }],
        defaults,
      );

    it('create: lr = 1e38 and lr = 1e-46 name lr, weightDecay = 1e39 names weightDecay', async () => {
      expect(await rejectedField(() => create({ lr: 1e38 }))).toBe('lr');
      expect(await rejectedField(() => create({ lr: 1e-46 }))).toBe('lr');
      expect(await rejectedField(() => create({ lr: 0.1 }, { weightDecay: 1e39 }))).toBe('weightDecay');
    });

    it('setLearningRate and importState reject them and change nothing', async () => {
      const optimizer = await create({ lr: 0.1 });
      expect(await rejectedField(() => optimizer.setLearningRate(1e38))).toBe('lr');
      expect(await rejectedField(() => optimizer.setLearningRate(1e-46))).toBe('lr');
      const bad = encodeState({
        groups: [{ hyperparams: resolveHyperparams({ lr: 1e38 }), params: optimizer.paramNames, step: 3 }],
        buffers: new Map(),
      });
      await expect(optimizer.importState(bad)).rejects.toThrow(AccSGDStateError);
      await expect(optimizer.importState(bad)).rejects.toThrow(/^group 0: lr is out of range for float32/);
      expect(optimizer.paramGroups[0]).toMatchObject({ hyperparams: { lr: 0.1 }, step: 0 });
      optimizer.destroy();
    });
  },
);
