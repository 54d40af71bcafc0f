import { AccSGD, AccSGDGradientError } from '@accsgd/core';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accsgd } from '../accsgd-optimizer.js';
import { findNonFinite } from '../non-finite-scan.js';
import { wasmFirstNonFiniteOf } from './wasm.js';

// A step over many small tensors: the non-finite check is one call over all of them.
const SIZES = Array.from({ length: 300 }, (_, t) => [0, 1, 3, 4, 16, 17, 37][t % 7]!);

function values(n: number, seed: number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + seed) * scale);
}

describe('wasm: many tensors in one step', () => {
  beforeAll(async () => {
    await tf.setBackend('wasm');
  });
  const made: tf.Tensor[] = [];
  afterAll(() => tf.dispose(made));

  it('finds the first non-finite element over all gradients in one call, in order', () => {
    const arrays = SIZES.map((n, t) => values(n, t));
    const grads = () => arrays.map((a) => tf.tensor1d(a));
    let tensors = grads();
    expect(wasmFirstNonFiniteOf(tf.backend(), tensors)).toBeNull();
    expect(findNonFinite(tensors)).toBeNull();
    tf.dispose(tensors);
    arrays[293]![36] = Number.NaN; // a tail of one (37 elements)
    arrays[250]![16] = Number.POSITIVE_INFINITY; // a tail of one (17 elements)
    arrays[198]![2] = Number.NEGATIVE_INFINITY; // a tensor of 3: tail only
    tensors = grads();
    expect(wasmFirstNonFiniteOf(tf.backend(), tensors)).toEqual({ tensor: 198, element: 2 });
    expect(findNonFinite(tensors)).toEqual({ tensor: 198, element: 2 });
    expect(findNonFinite(tensors.slice(199))).toEqual({ tensor: 51, element: 16 });
    expect(findNonFinite(tensors.slice(251))).toEqual({ tensor: 42, element: 36 });
    expect(findNonFinite([])).toBeNull();
    tf.dispose(tensors);
  });

  it('steps 1024 variables bit-identically to core, and changes none when one gradient is bad', () => {
    const count = 1024;
    const size = (t: number) => 5 + (t % 11);
    const start = Array.from({ length: count }, (_, t) => values(size(t), t));
    const variables = start.map((v, t) => tf.variable(tf.tensor1d(v), true, `many/v${t}`));
    made.push(...variables);
    const opt = accsgd({ lr: 0.05 });
    const plain = start.map((v) => v.slice());
    const coreOf = new AccSGD(plain, { lr: 0.05 });
    for (let k = 0; k < 3; k++) {
      const g = start.map((v, t) => values(v.length, 1000 * k + t, 0.1));
      const named = g.map((a, t) => ({ name: variables[t]!.name, tensor: tf.tensor1d(a) }));
      opt.applyGradients(named);
      coreOf.step(g);
      tf.dispose(named.map((n) => n.tensor));
    }
    variables.forEach((v, t) => expect([t, ...v.dataSync()]).toEqual([t, ...plain[t]!]));
    // A NaN in the 1000th gradient: under 'error' the step throws and no variable moves.
    const before = variables.map((v) => v.dataSync().slice());
    const g = start.map((v, t) => values(v.length, 7 + t, 0.1));
    g[999]![3] = Number.NaN;
    const named = g.map((a, t) => ({ name: variables[t]!.name, tensor: tf.tensor1d(a) }));
    expect(() => opt.applyGradients(named)).toThrow(AccSGDGradientError);
    expect(() => opt.applyGradients(named)).toThrow(/"many\/v999".*element 3 is NaN/);
    variables.forEach((v, t) => expect([t, ...v.dataSync()]).toEqual([t, ...before[t]!]));
    expect(opt.iterations).toBe(3);
    tf.dispose(named.map((n) => n.tensor));
    opt.dispose();
  });
});
