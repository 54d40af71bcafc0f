import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { createRng } from '../rng.js';
import { CLASSES, IMAGE_SIZE, type MnistSplit } from './data.js';
import { initialWeights, Mlp } from './model.js';
import { mlpForwardModel } from './onnx-model.js';
import { onnxLogits } from './onnx-train.js';

tf.env().set('IS_TEST', true);

describe('ONNX forward model', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
    await tf.ready();
  });

  it('gives the logits of the tfjs Mlp for the same weights (float32 tolerance)', async () => {
    // Seeded weights with non-zero biases, and five random "images" of bytes.
    const weights = initialWeights(7);
    const rng = createRng(11);
    for (const b of [weights.b1, weights.b2])
      for (let i = 0; i < b.length; i++) b[i] = 0.2 * rng.uniform() - 0.1;
    const count = 5;
    const split: MnistSplit = {
      images: Uint8Array.from({ length: count * IMAGE_SIZE }, () => Math.floor(256 * rng.uniform())),
      labels: new Uint8Array(count),
      count,
    };

    const onnx = await onnxLogits(mlpForwardModel(weights), split);

    const mlp = new Mlp(weights, 'onnx-model-test');
    const x = tf.tensor2d(
      Float32Array.from(split.images, (v) => v / 255),
      [count, IMAGE_SIZE],
    );
    const logits = mlp.logits(x);
    const expected = logits.dataSync() as Float32Array;
    tf.dispose([x, logits]);
    mlp.dispose();

    expect(onnx.length).toBe(count * CLASSES);
    let maxAbs = 0;
    let maxDiff = 0;
    for (let i = 0; i < onnx.length; i++) {
      maxAbs = Math.max(maxAbs, Math.abs(expected[i]!));
      maxDiff = Math.max(maxDiff, Math.abs(onnx[i]! - expected[i]!));
    }
    expect(maxAbs).toBeGreaterThan(0.5); // not trivially zero
    expect(maxDiff).toBeLessThan(1e-5 * Math.max(1, maxAbs));
  });
});
