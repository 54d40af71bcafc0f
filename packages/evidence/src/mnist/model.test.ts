import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { beforeAll, describe, expect, it } from 'vitest';
import { createRng } from '../rng.js';
import type { MnistSplit } from './data.js';
import { initialWeights, LAYERS, Mlp, type MlpWeights, parameterCount } from './model.js';
import { createOptimizer, OPTIMIZERS } from './optimizers.js';
import { trainStep } from './train.js';

tf.env().set('IS_TEST', true);
let prefix = 0;
const unique = () => `test${prefix++}`;

/** A float64 reference of the loss: the mean softmax cross-entropy of a [n0, n1, n2] ReLU MLP. */
function referenceLoss(w: MlpWeights, layers: readonly number[], x: number[][], labels: number[]): number {
  const [n0, n1, n2] = layers as [number, number, number];
  let total = 0;
  for (let r = 0; r < x.length; r++) {
    const h = Array.from({ length: n1 }, (_, j) => {
      let z = w.b1[j]!;
      for (let i = 0; i < n0; i++) z += x[r]![i]! * w.w1[i * n1 + j]!;
      return Math.max(0, z);
    });
    const logits = Array.from({ length: n2 }, (_, k) => {
      let z = w.b2[k]!;
      for (let j = 0; j < n1; j++) z += h[j]! * w.w2[j * n2 + k]!;
      return z;
    });
    const m = Math.max(...logits);
    const logSum = m + Math.log(logits.reduce((s, z) => s + Math.exp(z - m), 0));
    total += logSum - logits[labels[r]!]!;
  }
  return total / x.length;
}

function tinyProblem(layers: readonly [number, number, number], n: number, seed: number) {
  const rng = createRng(seed);
  const x = Array.from({ length: n }, () => Array.from({ length: layers[0] }, () => rng.uniform()));
  const labels = Array.from({ length: n }, () => Math.floor(rng.uniform() * layers[2]));
  const y = labels.map((l) => Array.from({ length: layers[2] }, (_, k) => (k === l ? 1 : 0)));
  return { x, labels, y };
}

describe('784-256-10 MLP', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
    await tf.ready();
  });

  it('has 784*256 + 256 + 256*10 + 10 = 203,530 parameters', () => {
    expect(parameterCount()).toBe(203_530);
    expect(parameterCount(LAYERS)).toBe(784 * 256 + 256 + 256 * 10 + 10);
    const model = new Mlp(initialWeights(1), unique());
    expect(model.parameterCount()).toBe(203_530);
    expect(model.variables.map((v) => v.shape)).toEqual([[784, 256], [256], [256, 10], [10]]);
    model.dispose();
  });

  it('starts from seeded Glorot-uniform weights and zero biases', () => {
    const a = initialWeights(1);
    const b = initialWeights(1);
    const c = initialWeights(2);
    expect(a.w1).toEqual(b.w1);
    expect(a.w2).toEqual(b.w2);
    expect(a.w1).not.toEqual(c.w1);
    const limit1 = Math.sqrt(6 / (784 + 256));
    const largest = a.w1.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    expect(largest).toBeLessThanOrEqual(limit1);
    expect(largest).toBeGreaterThan(0.99 * limit1);
    expect(a.w1.reduce((s, v) => s + v, 0) / a.w1.length).toBeCloseTo(0, 3);
    expect(Array.from(a.b1).every((v) => v === 0) && Array.from(a.b2).every((v) => v === 0)).toBe(true);
  });

  it('back-propagates the gradient of the float64 reference loss (central differences)', () => {
    const layers = [6, 5, 4] as const;
    const w = initialWeights(3, layers);
    // Non-zero biases, so their gradients are exercised too.
    w.b1.set([0.1, -0.2, 0.05, 0.3, -0.1]);
    w.b2.set([0.2, -0.1, 0, 0.1]);
    const { x, labels, y } = tinyProblem(layers, 7, 11);
    const model = new Mlp(w, unique(), layers);
    const { loss, grads } = model.lossAndGradients(tf.tensor2d(x), tf.tensor2d(y));
    expect(loss.dataSync()[0]).toBeCloseTo(referenceLoss(w, layers, x, labels), 5);
    const names = ['w1', 'b1', 'w2', 'b2'] as const;
    const eps = 1e-6;
    names.forEach((key, vi) => {
      const analytic = grads[model.variables[vi]!.name]!.dataSync();
      const values = w[key];
      expect(analytic.length).toBe(values.length);
      for (let i = 0; i < values.length; i++) {
        // The weights are float32; perturb a float64 copy.
        const plus = { ...w, [key]: Float64Array.from(values) } as unknown as MlpWeights;
        const minus = { ...w, [key]: Float64Array.from(values) } as unknown as MlpWeights;
        (plus[key] as unknown as Float64Array)[i]! += eps;
        (minus[key] as unknown as Float64Array)[i]! -= eps;
        const numeric =
          (referenceLoss(plus, layers, x, labels) - referenceLoss(minus, layers, x, labels)) / (2 * eps);
        expect(Math.abs(analytic[i]! - numeric)).toBeLessThan(2e-6);
      }
    });
    model.dispose();
  });

  it('lowers the loss of a tiny batch with one step of every optimizer (same weights, same batch)', () => {
    const n = 8;
    const rng = createRng(5);
    const split: MnistSplit = {
      images: Uint8Array.from({ length: n * 784 }, () => Math.floor(rng.uniform() * 256)),
      labels: Uint8Array.from({ length: n }, (_, i) => i % 10),
      count: n,
    };
    const order = Uint32Array.from({ length: n }, (_, i) => i);
    const weights = initialWeights(1);
    const lrs = { AccSGD: 0.05, SGD: 0.05, Momentum: 0.05, Nesterov: 0.05, Adam: 0.001 };
    const before: number[] = [];
    const after: number[] = [];
    for (const name of OPTIMIZERS) {
      const model = new Mlp(weights, unique());
      const optimizer = createOptimizer({ name, lr: lrs[name] });
      before.push(trainStep(model, optimizer, split, order, 0, n));
      after.push(trainStep(model, optimizer, split, order, 0, n)); // the loss after the first step
      optimizer.dispose();
      model.dispose();
    }
    // Same initial weights and batch: the same initial loss, about ln 10 for a fresh net.
    for (const l of before) expect(l).toBeCloseTo(before[0]!, 5);
    expect(before[0]).toBeGreaterThan(2);
    expect(before[0]).toBeLessThan(3.5);
    after.forEach((l, i) => expect(l, OPTIMIZERS[i]).toBeLessThan(before[i]!));
  });

  it('computes the same loss and gradients on wasm as on cpu', async () => {
    const layers = [20, 16, 10] as const;
    const w = initialWeights(4, layers);
    const { y } = tinyProblem(layers, 9, 2);
    const x = tinyProblem(layers, 9, 3).x;
    const on = async (backend: string) => {
      await tf.setBackend(backend);
      await tf.ready();
      const model = new Mlp(w, unique(), layers);
      const { loss, grads } = model.lossAndGradients(tf.tensor2d(x), tf.tensor2d(y));
      const out = [
        loss.dataSync()[0]!,
        ...model.variables.flatMap((v) => Array.from(grads[v.name]!.dataSync())),
      ];
      model.dispose();
      return out;
    };
    const cpu = await on('cpu');
    const wasm = await on('wasm');
    await tf.setBackend('cpu');
    expect(wasm.length).toBe(cpu.length);
    for (let i = 0; i < cpu.length; i++) expect(Math.abs(wasm[i]! - cpu[i]!)).toBeLessThan(1e-5);
  });
});
