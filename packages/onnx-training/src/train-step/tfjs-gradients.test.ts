import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
// tfjs-core registers its gradient functions only through this entry point (or @tensorflow/tfjs).
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { buildGradientModel } from '../autodiff/gradient.js';
import { mlpModel, random } from '../test-support/forward-models.js';

/**
 * The MLP's gradients from this package's autodiff (float32, onnxruntime-node cpu) against
 * TensorFlow.js's own (tf.grads on its cpu backend, float32) for the same weights, batch and
 * one-hot labels: loss = -mean over rows of sum(labels * logSoftmax(relu(x W1 + b1) W2 + b2)).
 * Both compute in float32 with different operation orders; the sums here run over at most 16
 * terms of O(1) values, so a difference of 1e-5 relative to the largest gradient component is
 * float32 rounding (2^-24 = 6e-8 per operation), while a wrong rule is off by O(1).
 */
describe('MLP gradients against TensorFlow.js (cpu)', () => {
  it('agree within float32 tolerance', async () => {
    await tf.setBackend('cpu');
    const [B, IN, H, C] = [8, 5, 16, 4];
    const forward = mlpModel({ batch: B, inF: IN, hidden: H, classes: C, seed: 21 });
    const gm = buildGradientModel(forward, { loss: 'softmax-cross-entropy' });
    const x = Float32Array.from(random(B * IN, 4, 2));
    const labels = new Float32Array(B * C);
    for (let r = 0; r < B; r++) labels[r * C + ((r * 3) % C)] = 1;
    const shapes = { W1: [IN, H], b1: [H], W2: [H, C], b2: [C] } as Record<string, number[]>;
    const values = Object.fromEntries(
      Object.entries(shapes).map(([n, s], k) => [
        n,
        Float32Array.from(
          random(
            s.reduce((a, b) => a * b, 1),
            50 + k,
            0.8,
          ),
        ),
      ]),
    );

    const session = await ort.InferenceSession.create(gm.model);
    const feeds: Record<string, ort.Tensor> = {
      x: new ort.Tensor('float32', x, [B, IN]),
      labels: new ort.Tensor('float32', labels, [B, C]),
    };
    for (const [n, v] of Object.entries(values)) feeds[n] = new ort.Tensor('float32', v, shapes[n]!);
    const out = await session.run(feeds);

    const xt = tf.tensor2d(x, [B, IN]);
    const yt = tf.tensor2d(labels, [B, C]);
    const lossOf = (W1: tf.Tensor, b1: tf.Tensor, W2: tf.Tensor, b2: tf.Tensor) => {
      const h = tf.relu(tf.add(tf.matMul(xt, W1 as tf.Tensor2D), b1));
      const z = tf.add(tf.matMul(h, W2 as tf.Tensor2D), b2);
      return tf.neg(tf.mean(tf.sum(tf.mul(yt, tf.logSoftmax(z)), -1))) as tf.Scalar;
    };
    const args = ['W1', 'b1', 'W2', 'b2'].map((n) => tf.tensor(values[n]!, shapes[n]!));
    const tfLoss = (await lossOf(args[0]!, args[1]!, args[2]!, args[3]!).data())[0]!;
    const tfGrads = tf.grads((...a: tf.Tensor[]) => lossOf(a[0]!, a[1]!, a[2]!, a[3]!))(args);
    expect((out.loss!.data as Float32Array)[0]).toBeCloseTo(tfLoss, 6);
    let worst = 0;
    for (const [k, n] of ['W1', 'b1', 'W2', 'b2'].entries()) {
      const mine = out[gm.gradients.get(n)!]!.data as Float32Array;
      const theirs = await tfGrads[k]!.data();
      const scale = Math.max(...Array.from(theirs, Math.abs));
      expect(scale).toBeGreaterThan(1e-3); // a gradient that is not trivially zero
      for (let i = 0; i < mine.length; i++) worst = Math.max(worst, Math.abs(mine[i]! - theirs[i]!) / scale);
    }
    console.log(
      `[tfjs] worst gradient difference ${worst.toExponential(2)} (relative to each tensor's largest component)`,
    );
    expect(worst).toBeLessThan(1e-5);
    tf.dispose([xt, yt, ...args, ...tfGrads]);
    await session.release();
  });
});
