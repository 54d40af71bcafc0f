import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { OnnxTrainer } from '@accsgd/onnx-training';
import * as ort from 'onnxruntime-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { createRng } from '../rng.js';
import {
  ConvNet,
  convFilterGrad,
  convInputGrad,
  convParameterCount,
  convShapes,
  initialConvWeights,
  maxPoolGrad,
} from './conv-model.js';
import { convForwardModel } from './conv-onnx-model.js';
import { batchArrays, CLASSES, IMAGE_SIZE, type MnistSplit } from './data.js';
import { onnxLogits } from './onnx-train.js';
import { accsgdSettings, createOptimizer } from './optimizers.js';
import { trainStep } from './train.js';

tf.env().set('IS_TEST', true);
let prefix = 0;
const unique = () => `conv${prefix++}`;

function randomSplit(count: number, seed: number): MnistSplit {
  const rng = createRng(seed);
  return {
    images: Uint8Array.from({ length: count * IMAGE_SIZE }, () => Math.floor(256 * rng.uniform())),
    labels: Uint8Array.from({ length: count }, () => Math.floor(CLASSES * rng.uniform())),
    count,
  };
}

function randomTensor(shape: number[], seed: number): tf.Tensor {
  const rng = createRng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(
    Float32Array.from({ length: n }, () => 2 * rng.uniform() - 1),
    shape,
  );
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): { diff: number; scale: number } {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return { diff, scale };
}

const VALID = { strides: [1, 1], pad: 'valid', dataFormat: 'NHWC', dilations: [1, 1] };

describe('LeNet-style conv net', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
    await tf.ready();
  });

  it('has 5x5x1x8, 5x5x8x16 kernels and a 256-10 dense layer: 5,994 parameters', () => {
    expect(convShapes()).toEqual({
      k1: [5, 5, 1, 8],
      b1: [8],
      k2: [5, 5, 8, 16],
      b2: [16],
      w3: [256, 10],
      b3: [10],
    });
    expect(convParameterCount()).toBe(200 + 8 + 3200 + 16 + 2560 + 10);
    const w = initialConvWeights(1);
    expect(w.k1.length).toBe(200);
    expect(w.w3.length).toBe(2560);
    // Glorot-uniform limits: sqrt(6 / (25 + 200)) and sqrt(6 / (200 + 400)).
    expect(Math.max(...w.k1.map(Math.abs))).toBeLessThanOrEqual(Math.sqrt(6 / 225));
    expect(Math.max(...w.k2.map(Math.abs))).toBeLessThanOrEqual(Math.sqrt(6 / 600));
    expect(Math.max(...w.k1.map(Math.abs))).toBeGreaterThan(0.5 * Math.sqrt(6 / 225));
    expect([...w.b1, ...w.b2, ...w.b3].every((b) => b === 0)).toBe(true);
    expect(initialConvWeights(1).k2).toEqual(w.k2);
    expect(initialConvWeights(2).k2).not.toEqual(w.k2);

    const net = new ConvNet(w, unique());
    const x = tf.zeros([3, IMAGE_SIZE]) as tf.Tensor2D;
    const logits = net.logits(x);
    expect(logits.shape).toEqual([3, 10]);
    tf.dispose([x, logits]);
    net.dispose();
  });

  it("backward helpers equal tfjs-backend-cpu's own backward kernels", () => {
    const x = randomTensor([2, 9, 9, 3], 1) as tf.Tensor4D;
    const filter = randomTensor([5, 5, 3, 4], 2) as tf.Tensor4D;
    const dy = randomTensor([2, 5, 5, 4], 3) as tf.Tensor4D;
    const run = (name: string, inputs: tf.NamedTensorMap, attrs: object) =>
      tf.engine().runKernel(name, inputs, attrs as tf.NamedAttrMap) as tf.Tensor;
    const checks: [tf.Tensor, tf.Tensor][] = [
      [
        convFilterGrad(x, dy),
        run('Conv2DBackpropFilter', { x, dy }, { ...VALID, filterShape: [5, 5, 3, 4] }),
      ],
      [
        convInputGrad(dy, filter),
        run('Conv2DBackpropInput', { dy, filter }, { ...VALID, inputShape: [2, 9, 9, 3] }),
      ],
    ];
    // Rounded to a few levels so that many windows hold tied maxima (as on a blank background).
    const a = tf.round(tf.mul(randomTensor([2, 8, 8, 3], 4), 1.5)) as tf.Tensor4D;
    const p = tf.maxPool(a, 2, 2, 'valid');
    const dp = randomTensor([2, 4, 4, 3], 5) as tf.Tensor4D;
    checks.push([
      maxPoolGrad(dp, a, p),
      run('MaxPoolGrad', { dy: dp, input: a, output: p }, { filterSize: 2, strides: 2, pad: 'valid' }),
    ]);
    for (const [mine, theirs] of checks) {
      expect(mine.shape).toEqual(theirs.shape);
      const { diff, scale } = maxDiff(mine.dataSync(), theirs.dataSync());
      expect(scale).toBeGreaterThan(0.5);
      expect(diff).toBeLessThan(1e-5 * scale);
    }
  });

  it('gradients agree with central differences of the loss', () => {
    const weights = initialConvWeights(3);
    const rng = createRng(9);
    for (const b of [weights.b1, weights.b2]) for (let i = 0; i < b.length; i++) b[i] = 0.1 * rng.uniform();
    const split = randomSplit(4, 5);
    const { x: xs, y: ys } = batchArrays(split, [0, 1, 2, 3], 0, 4);
    const x = tf.tensor2d(xs, [4, IMAGE_SIZE]);
    const y = tf.tensor2d(ys, [4, CLASSES]);
    const net = new ConvNet(weights, unique());
    const { loss, grads } = net.lossAndGradients(x, y);
    expect(loss.dataSync()[0]).toBeCloseTo(net.loss(x, y).dataSync()[0]!, 5);
    // Small enough that few ReLU or max-pool winners switch, large enough for float32 losses.
    const h = 2e-3;
    for (const [name, index] of [
      ['k1', 7],
      ['b1', 2],
      ['k2', 123],
      ['b2', 5],
      ['w3', 40],
      ['b3', 3],
    ] as const) {
      const at = (delta: number) => {
        const changed = Float32Array.from(weights[name]);
        changed[index] = changed[index]! + delta;
        const w = { ...weights, [name]: changed };
        const m = new ConvNet(w, unique());
        const l = m.loss(x, y);
        const v = l.dataSync()[0]!;
        l.dispose();
        m.dispose();
        return v;
      };
      const numeric = (at(h) - at(-h)) / (2 * h);
      const analytic = grads[net.vars[name].name]!.dataSync()[index]!;
      expect(Math.abs(analytic - numeric), `${name}[${index}]: ${analytic} vs ${numeric}`).toBeLessThan(
        2e-3 + 0.02 * Math.abs(numeric),
      );
    }
    tf.dispose([x, y, loss, grads]);
    net.dispose();
  });
});

describe('conv net as an ONNX model', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
    await tf.ready();
  });

  it('gives the logits of the tfjs ConvNet for the same weights', async () => {
    const weights = initialConvWeights(7);
    const rng = createRng(11);
    for (const b of [weights.b1, weights.b2, weights.b3])
      for (let i = 0; i < b.length; i++) b[i] = 0.2 * rng.uniform() - 0.1;
    const split = randomSplit(5, 12);
    const onnx = await onnxLogits(convForwardModel(weights), split);
    const net = new ConvNet(weights, unique());
    const x = tf.tensor2d(
      Float32Array.from(split.images, (v) => v / 255),
      [5, IMAGE_SIZE],
    );
    const logits = net.logits(x);
    const { diff, scale } = maxDiff(onnx, logits.dataSync());
    tf.dispose([x, logits]);
    net.dispose();
    expect(onnx.length).toBe(5 * CLASSES);
    expect(scale).toBeGreaterThan(0.1);
    expect(diff).toBeLessThan(1e-5 * Math.max(1, scale));
  });

  it('trains through OnnxTrainer along the tfjs AccSGD run from the same weights and batches', async () => {
    const weights = initialConvWeights(4);
    const split = randomSplit(8, 21);
    // A blank top half, as MNIST's background: tied maxima in the pools once the biases move.
    for (let i = 0; i < 8; i++) split.images.fill(0, i * IMAGE_SIZE, i * IMAGE_SIZE + 14 * 28);
    const spec = { name: 'AccSGD' as const, lr: 0.1 };
    const net = new ConvNet(weights, unique());
    const optimizer = createOptimizer(spec);
    const trainer = await OnnxTrainer.create(convForwardModel(weights), {
      loss: 'softmax-cross-entropy',
      dimensions: { batch: 4 },
      hyperparams: accsgdSettings(spec),
      ort,
      executionProvider: 'cpu',
    });
    const order = [3, 1, 6, 0, 2, 7, 5, 4];
    const tfjsLosses: number[] = [];
    const onnxLosses: number[] = [];
    for (let step = 0; step < 4; step++) {
      const start = (4 * step) % 8;
      tfjsLosses.push(trainStep(net, optimizer, split, order, start, start + 4));
      const { x, y } = batchArrays(split, order, start, start + 4);
      onnxLosses.push(await trainer.step({ x }, y));
    }
    await trainer.dispose();
    optimizer.dispose();
    net.dispose();
    // The losses move (training happens) and the two runtimes agree to float32 rounding.
    expect(Math.abs(tfjsLosses[3]! - tfjsLosses[0]!)).toBeGreaterThan(1e-3);
    for (let i = 0; i < 4; i++) expect(onnxLosses[i]).toBeCloseTo(tfjsLosses[i]!, 4);
  }, 60_000);
});
