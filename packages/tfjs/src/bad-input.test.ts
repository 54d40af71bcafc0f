import { AccSGDConfigError, AccSGDError, AccSGDGradientError, AccSGDStateError } from '@accsgd/core';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AccSGDOptimizer, accsgd } from './accsgd-optimizer.js';

/**
 * The bad-input catalogue of @accsgd/tfjs. Each row: what is done, the typed error, the message it
 * must contain; and, checked for every row, that the variables, the state file (buffers,
 * hyperparameters, step counts), the iteration count and tf.memory().numTensors are unchanged, and
 * that the next valid step gives what an untouched twin optimizer gives. Add a row to cover a new
 * kind of bad input.
 */

tf.env().set('IS_TEST', true);

let counter = 0;
const uniqueName = (base: string) => `bad_${base}_${counter++}`;

type Call = (opt: AccSGDOptimizer, names: { a: string; b: string }) => unknown;
type ErrorClass = typeof AccSGDConfigError | typeof AccSGDGradientError | typeof AccSGDStateError;

const fromConfig = (config: Record<string, unknown>) => {
  const [cls, create] = tf.serialization.SerializationMap.getMap().classNameMap.AccSGD!;
  return create(cls, config as tf.serialization.ConfigDict);
};

/** Tensors the rows use, made once (and some disposed) before any row runs. */
const fixtures: Record<string, tf.Tensor> = {};

const rows: [string, Call, ErrorClass, RegExp][] = [
  // 1. setWeights with malformed items: used to throw TypeError.
  [
    'setWeights([null])',
    (o) => o.setWeights([null as never]),
    AccSGDStateError,
    /optimizer weight 0 is null/,
  ],
  [
    'setWeights with { name: "iter", tensor: null }',
    (o) => o.setWeights([{ name: 'iter', tensor: null as never }]),
    AccSGDStateError,
    /optimizer weight "iter" is null; expected a tf.Tensor/,
  ],
  [
    'setWeights with a numeric name',
    (o) => o.setWeights([{ name: 7 as never, tensor: fixtures.iter! }]),
    AccSGDStateError,
    /optimizer weight 0 has a name of type number; expected a string/,
  ],
  [
    'setWeights with a disposed "iter"',
    (o) => o.setWeights([{ name: 'iter', tensor: fixtures.disposedIter! }]),
    AccSGDStateError,
    /optimizer weight "iter" is a disposed tensor/,
  ],
  // 2. A disposed buffer: used to throw tfjs's Error and leak one tensor.
  [
    'setWeights with a disposed buffer',
    (o, { a, b }) =>
      o.setWeights([
        { name: 'iter', tensor: fixtures.iter! },
        { name: `${a}/momentum_buffer`, tensor: fixtures.bufferA! },
        { name: `${b}/momentum_buffer`, tensor: fixtures.disposedBufferB! },
      ]),
    AccSGDStateError,
    /optimizer weight ".*\/momentum_buffer" is a disposed tensor/,
  ],
  [
    'setWeights("iter")',
    (o) => o.setWeights('iter' as never),
    AccSGDStateError,
    /must be a non-empty array, got string/,
  ],
  [
    'setWeights with a Map item',
    (o) => o.setWeights([new Map([['name', 'iter']]) as never]),
    AccSGDStateError,
    /optimizer weight 0 has a name of type undefined/,
  ],
  // 3. groups that are not an array: fromConfig used to drop them silently.
  [
    'fromConfig({ groups: "abc" })',
    () => fromConfig({ lr: 0.1, groups: 'abc' }),
    AccSGDConfigError,
    /groups must be a non-empty array/,
  ],
  [
    'fromConfig({ groups: {} })',
    () => fromConfig({ lr: 0.1, groups: {} }),
    AccSGDConfigError,
    /groups must be a non-empty array/,
  ],
  [
    'fromConfig({ groups: null })',
    () => fromConfig({ lr: 0.1, groups: null }),
    AccSGDConfigError,
    /groups must be a non-empty array/,
  ],
  [
    'fromConfig({ groups: [null] })',
    () => fromConfig({ lr: 0.1, groups: [null] }),
    AccSGDConfigError,
    /groups\[0\] must be/,
  ],
  [
    'fromConfig({ groups: ["a"] })',
    () => fromConfig({ lr: 0.1, groups: ['a'] }),
    AccSGDConfigError,
    /groups\[0\] must be/,
  ],
  [
    'accsgd({ groups: "abc" })',
    () => accsgd({ lr: 0.1, groups: 'abc' as never }),
    AccSGDConfigError,
    /groups must be a non-empty array/,
  ],
  [
    'accsgd({ groups: {} })',
    () => accsgd({ lr: 0.1, groups: {} as never }),
    AccSGDConfigError,
    /groups must be a non-empty array/,
  ],
  // 4. Gradients in a Map: tfjs used to count an empty step.
  [
    'applyGradients(new Map(...))',
    (o, { a }) => o.applyGradients(new Map([[a, fixtures.gradA!]]) as never),
    AccSGDGradientError,
    /expected a NamedTensorMap \(a plain object .*\) or a NamedTensor\[\], got a Map/,
  ],
  [
    'applyGradientsAsync(new Map(...))',
    (o, { a }) => o.applyGradientsAsync(new Map([[a, fixtures.gradA!]]) as never),
    AccSGDGradientError,
    /expected a NamedTensorMap .* got a Map/,
  ],
  [
    'applyGradients(a Tensor)',
    (o) => o.applyGradients(fixtures.gradA! as never),
    AccSGDGradientError,
    /got a Tensor/,
  ],
  [
    'applyGradients(new Set())',
    (o) => o.applyGradients(new Set() as never),
    AccSGDGradientError,
    /got a Set/,
  ],
];

describe('bad input (cpu): a typed error, nothing changed, no tensor leaked, and the next step as fresh', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
    fixtures.iter = tf.scalar(1, 'int32');
    fixtures.disposedIter = tf.scalar(1, 'int32');
    fixtures.disposedIter.dispose();
    fixtures.bufferA = tf.tensor1d([1, 2]);
    fixtures.disposedBufferB = tf.tensor1d([3, 4, 5]);
    fixtures.disposedBufferB.dispose();
    fixtures.gradA = tf.tensor1d([0.5, -0.5]);
  });
  afterAll(() => tf.dispose(Object.values(fixtures)));

  for (const [what, call, errorClass, message] of rows) {
    it(`rejects ${what}`, async () => {
      const names = { a: uniqueName('a'), b: uniqueName('b') };
      const a = tf.variable(tf.tensor1d([1, -2]), true, names.a);
      const b = tf.variable(tf.tensor1d([0.5, 0.25, -1]), true, names.b);
      const make = () => accsgd({ lr: 0.1, kappa: 100, xi: 5 });
      const opt = make();
      const grads = { [names.a]: tf.tensor1d([0.1, 0.2]), [names.b]: tf.tensor1d([0.3, -0.1, 0.2]) };
      opt.applyGradients(grads);
      const fingerprint = async () => ({
        a: Array.from(a.dataSync()),
        b: Array.from(b.dataSync()),
        state: Array.from(await opt.exportState()),
        iterations: opt.iterations,
        lastStep: opt.lastStep,
      });
      const before = await fingerprint();
      const tensors = tf.memory().numTensors;
      let error: unknown = null;
      try {
        await call(opt, names);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(errorClass);
      expect(error).toBeInstanceOf(AccSGDError);
      expect((error as Error).message).toMatch(message);
      expect(tf.memory().numTensors).toBe(tensors);
      expect(await fingerprint()).toEqual(before);

      // The next valid step gives what a twin optimizer, restored from the state before the bad
      // call onto the same variable values, gives.
      opt.applyGradients(grads);
      const next = [Array.from(a.dataSync()), Array.from(b.dataSync()), Array.from(await opt.exportState())];
      a.assign(tf.tensor1d(before.a));
      b.assign(tf.tensor1d(before.b));
      const twin = make();
      twin.importState(new Uint8Array(before.state));
      twin.applyGradients(grads);
      expect([
        Array.from(a.dataSync()),
        Array.from(b.dataSync()),
        Array.from(await twin.exportState()),
      ]).toEqual(next);
      tf.dispose([a, b, ...Object.values(grads)]);
      twin.dispose();
      opt.dispose();
    });
  }
});
