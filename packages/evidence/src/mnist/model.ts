import * as tf from '@tensorflow/tfjs-core';
import { createRng, laneSeed } from '../rng.js';

/** The layer widths: 784 inputs, one hidden ReLU layer of 256, 10 logits. */
export const LAYERS = [784, 256, 10] as const;

export interface MlpWeights {
  /** [784, 256], row-major (input-major, as tf.matMul(x, w1) reads it). */
  w1: Float32Array;
  b1: Float32Array;
  /** [256, 10]. */
  w2: Float32Array;
  b2: Float32Array;
}

/** Weights + biases of an MLP with these layer widths. */
export function parameterCount(layers: readonly number[] = LAYERS): number {
  let n = 0;
  for (let i = 1; i < layers.length; i++) n += layers[i - 1]! * layers[i]! + layers[i]!;
  return n;
}

function glorotUniform(fanIn: number, fanOut: number, seed: number): Float32Array {
  const rng = createRng(seed);
  const limit = Math.sqrt(6 / (fanIn + fanOut));
  const w = new Float32Array(fanIn * fanOut);
  for (let i = 0; i < w.length; i++) w[i] = (2 * rng.uniform() - 1) * limit;
  return w;
}

/**
 * Seeded initial weights, the same on every backend: Glorot-uniform kernels (the Keras default)
 * drawn from this package's xoshiro128** stream, zero biases.
 */
export function initialWeights(seed: number, layers: readonly number[] = LAYERS): MlpWeights {
  const [i, h, o] = layers as [number, number, number];
  return {
    w1: glorotUniform(i, h, laneSeed(seed, 1)),
    b1: new Float32Array(h),
    w2: glorotUniform(h, o, laneSeed(seed, 2)),
    b2: new Float32Array(o),
  };
}

/** The MLP's trainable variables on the current tfjs backend, and its forward pass and loss. */
export class Mlp {
  readonly w1: tf.Variable;
  readonly b1: tf.Variable;
  readonly w2: tf.Variable;
  readonly b2: tf.Variable;

  /** `prefix` makes the variable names unique in the process (tfjs registers them globally). */
  constructor(weights: MlpWeights, prefix: string, layers: readonly number[] = LAYERS) {
    const [i, h, o] = layers as [number, number, number];
    this.w1 = tf.variable(tf.tensor2d(weights.w1, [i, h]), true, `${prefix}/dense1/kernel`);
    this.b1 = tf.variable(tf.tensor1d(weights.b1), true, `${prefix}/dense1/bias`);
    this.w2 = tf.variable(tf.tensor2d(weights.w2, [h, o]), true, `${prefix}/dense2/kernel`);
    this.b2 = tf.variable(tf.tensor1d(weights.b2), true, `${prefix}/dense2/bias`);
  }

  get variables(): tf.Variable[] {
    return [this.w1, this.b1, this.w2, this.b2];
  }

  parameterCount(): number {
    return this.variables.reduce((n, v) => n + v.size, 0);
  }

  /** Logits [batch, 10] for inputs [batch, 784]. */
  logits(x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      const hidden = tf.relu(tf.add(tf.matMul(x, this.w1), this.b1));
      return tf.add(tf.matMul(hidden, this.w2), this.b2) as tf.Tensor2D;
    });
  }

  /** Mean softmax cross-entropy over the batch, against one-hot targets. */
  loss(x: tf.Tensor2D, yOneHot: tf.Tensor2D): tf.Scalar {
    return tf.tidy(() => crossEntropy(tf.logSoftmax(this.logits(x)), yOneHot));
  }

  /**
   * The mean softmax cross-entropy and its gradients with respect to the variables (keyed by
   * variable name, as `optimizer.applyGradients` takes them), by explicit back-propagation.
   * tfjs-core's Node bundle registers no gradient functions (the `@tensorflow/tfjs` bundle and
   * tfjs-layers register them), so `tf.grads`/`optimizer.minimize` would fail here; the backward
   * pass of this two-layer net is short enough to write out, and `mlp.test.ts` checks it against
   * finite differences.
   */
  lossAndGradients(x: tf.Tensor2D, yOneHot: tf.Tensor2D): { loss: tf.Scalar; grads: tf.NamedTensorMap } {
    return tf.tidy(() => {
      const batch = x.shape[0];
      const z1 = tf.add(tf.matMul(x, this.w1), this.b1);
      const hidden = tf.relu(z1);
      const logits = tf.add(tf.matMul(hidden, this.w2), this.b2);
      const logProbs = tf.logSoftmax(logits);
      const loss = crossEntropy(logProbs, yOneHot);
      // d loss / d logits = (softmax - y) / batch
      const dLogits = tf.div(tf.sub(tf.exp(logProbs), yOneHot), batch);
      // Explicit transposes: tfjs-backend-wasm's matMul with transposeA/transposeB set is about
      // 14x slower than a transpose followed by a plain matMul (measured on [100,784]x[100,256]).
      const dW2 = tf.matMul(tf.transpose(hidden), dLogits);
      const dB2 = tf.sum(dLogits, 0);
      const dHidden = tf.matMul(dLogits, tf.transpose(this.w2));
      const dZ1 = tf.mul(dHidden, tf.cast(tf.greater(z1, 0), 'float32'));
      const dW1 = tf.matMul(tf.transpose(x), dZ1);
      const dB1 = tf.sum(dZ1, 0);
      return {
        loss,
        grads: { [this.w1.name]: dW1, [this.b1.name]: dB1, [this.w2.name]: dW2, [this.b2.name]: dB2 },
      };
    });
  }

  dispose(): void {
    for (const v of this.variables) v.dispose();
  }
}

function crossEntropy(logProbs: tf.Tensor, yOneHot: tf.Tensor): tf.Scalar {
  return tf.neg(tf.div(tf.sum(tf.mul(yOneHot, logProbs)), logProbs.shape[0]!)) as tf.Scalar;
}
