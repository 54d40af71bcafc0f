import { AccSGDConfigError, AccSGDStateError, encodeState, resolveHyperparams } from '@accsgd/core';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { AccSGDOptimizer } from './accsgd-optimizer.js';

/** The AccSGDConfigError's field, or a failure when `attempt` does not throw one. */
function rejectedField(attempt: () => unknown): string {
  try {
    attempt();
  } catch (error) {
    expect(error).toBeInstanceOf(AccSGDConfigError);
    return (error as AccSGDConfigError).field;
  }
  throw new Error('expected an AccSGDConfigError');
}

// SPEC §1: tfjs variables are float32, so hyperparameters valid in float64 whose float32
// multipliers overflow or round to zero are rejected wherever they come in, naming the field.
describe('AccSGDOptimizer rejects hyperparameters whose float32 multipliers overflow or vanish', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });

  it('in the constructor: lr = 1e38 and 1e-46 name lr, weightDecay = 1e39 names weightDecay', () => {
    expect(rejectedField(() => new AccSGDOptimizer({ lr: 1e38 }))).toBe('lr');
    expect(rejectedField(() => new AccSGDOptimizer({ lr: 1e-46 }))).toBe('lr');
    expect(rejectedField(() => new AccSGDOptimizer({ lr: 0.1, weightDecay: 1e39 }))).toBe('weightDecay');
    expect(rejectedField(() => new AccSGDOptimizer({ lr: 0.1, groups: [{ params: ['a'], lr: 1e38 }] }))).toBe(
      'lr',
    );
  });

  it('in setLearningRate, a schedule and importState, changing nothing', () => {
    const v = tf.variable(tf.tensor1d([1, 2]), true, 'float32_multipliers_v');
    const opt = new AccSGDOptimizer({ lr: 0.1 });
    expect(rejectedField(() => opt.setLearningRate(1e38))).toBe('lr');
    expect(opt.paramGroups[0]!.hyperparams.lr).toBe(0.1);
    const bad = encodeState({
      groups: [{ hyperparams: resolveHyperparams({ lr: 1e38 }), params: [], step: 3 }],
      buffers: new Map(),
    });
    expect(() => opt.importState(bad)).toThrow(AccSGDStateError);
    expect(() => opt.importState(bad)).toThrow(/^group 0: lr is out of range for float32/);
    expect(opt.paramGroups[0]).toMatchObject({ hyperparams: { lr: 0.1 }, step: 0 });
    opt.setLearningRate(() => 1e-46);
    expect(rejectedField(() => opt.applyGradients({ [v.name]: tf.tensor1d([0, 0]) }))).toBe('lr');
    expect(Array.from(v.dataSync())).toEqual([1, 2]);
    expect(opt.momentumBuffer(v.name)).toBeNull();
    v.dispose();
    opt.dispose();
  });
});
