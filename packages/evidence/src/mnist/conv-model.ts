import * as tf from '@tensorflow/tfjs-core';
import { createRng, laneSeed } from '../rng.js';

/**
 * The conv net's shape: 28x28x1 -> conv 5x5 (valid), `c1` filters, ReLU -> max pool 2 -> conv 5x5
 * (valid), `c2` filters, ReLU -> max pool 2 -> 4x4x`c2` -> dense 10 (LeNet-style, no hidden dense).
 */
export interface ConvShape {
  c1: number;
  c2: number;
}
export const CONV_SHAPE: ConvShape = { c1: 8, c2: 16 };

export interface ConvWeights {
  /** [5, 5, 1, c1], HWIO (tfjs's conv2d layout). */
  k1: Float32Array;
  b1: Float32Array;
  /** [5, 5, c1, c2]. */
  k2: Float32Array;
  b2: Float32Array;
  /** [4 * 4 * c2, 10]; rows in NHWC flatten order (row, column, channel). */
  w3: Float32Array;
  b3: Float32Array;
}

/** Parameter shapes by name, in the order of ConvWeights. */
export function convShapes(s: ConvShape = CONV_SHAPE): Record<keyof ConvWeights, number[]> {
  return {
    k1: [5, 5, 1, s.c1],
    b1: [s.c1],
    k2: [5, 5, s.c1, s.c2],
    b2: [s.c2],
    w3: [4 * 4 * s.c2, 10],
    b3: [10],
  };
}

export function convParameterCount(s: ConvShape = CONV_SHAPE): number {
  return Object.values(convShapes(s)).reduce((n, shape) => n + shape.reduce((a, b) => a * b, 1), 0);
}

function glorot(count: number, fanIn: number, fanOut: number, seed: number): Float32Array {
  const rng = createRng(seed);
  const limit = Math.sqrt(6 / (fanIn + fanOut));
  const w = new Float32Array(count);
  for (let i = 0; i < count; i++) w[i] = (2 * rng.uniform() - 1) * limit;
  return w;
}

/**
 * Seeded initial weights, the same on every backend: Glorot-uniform kernels with Keras's conv fans
 * (fan in = 5·5·in channels, fan out = 5·5·out channels) from this package's xoshiro128** stream,
 * zero biases. Lanes 11-13 keep them independent of the MLP's (lanes 1-2) for the same seed.
 */
export function initialConvWeights(seed: number, s: ConvShape = CONV_SHAPE): ConvWeights {
  const sh = convShapes(s);
  return {
    k1: glorot(25 * s.c1, 25, 25 * s.c1, laneSeed(seed, 11)),
    b1: new Float32Array(s.c1),
    k2: glorot(25 * s.c1 * s.c2, 25 * s.c1, 25 * s.c2, laneSeed(seed, 12)),
    b2: new Float32Array(s.c2),
    w3: glorot(sh.w3[0]! * 10, sh.w3[0]!, 10, laneSeed(seed, 13)),
    b3: new Float32Array(10),
  };
}

type Names = keyof ConvWeights;
const NAMES: readonly Names[] = ['k1', 'b1', 'k2', 'b2', 'w3', 'b3'];

/**
 * The conv net's variables on the current tfjs backend, its forward pass, and its loss and
 * gradients by explicit back-propagation: tfjs-core's Node bundle registers no gradient functions,
 * so the backward pass calls the backward kernels (Conv2DBackpropFilter/Input, MaxPoolGrad) itself;
 * `conv-model.test.ts` checks it against finite differences. tfjs-backend-cpu registers them;
 * tfjs-backend-wasm does not, which is why the conv net trains on cpu.
 */
export class ConvNet {
  readonly vars: Record<Names, tf.Variable>;
  readonly shape: ConvShape;

  constructor(weights: ConvWeights, prefix: string, s: ConvShape = CONV_SHAPE) {
    this.shape = s;
    const sh = convShapes(s);
    this.vars = Object.fromEntries(
      NAMES.map((n) => [n, tf.variable(tf.tensor(weights[n], sh[n]), true, `${prefix}/${n}`)]),
    ) as Record<Names, tf.Variable>;
  }

  get variables(): tf.Variable[] {
    return NAMES.map((n) => this.vars[n]);
  }

  private forward(x: tf.Tensor2D) {
    const v = this.vars;
    const n = x.shape[0];
    const images = tf.reshape(x, [n, 28, 28, 1]) as tf.Tensor4D;
    const z1 = tf.add(tf.conv2d(images, v.k1 as tf.Tensor4D, 1, 'valid'), v.b1) as tf.Tensor4D;
    const a1 = tf.relu(z1);
    const p1 = tf.maxPool(a1, 2, 2, 'valid');
    const z2 = tf.add(tf.conv2d(p1, v.k2 as tf.Tensor4D, 1, 'valid'), v.b2) as tf.Tensor4D;
    const a2 = tf.relu(z2);
    const p2 = tf.maxPool(a2, 2, 2, 'valid');
    const features = tf.reshape(p2, [n, 16 * this.shape.c2]) as tf.Tensor2D;
    const logits = tf.add(tf.matMul(features, v.w3), v.b3) as tf.Tensor2D;
    return { images, z1, a1, p1, z2, a2, p2, features, logits };
  }

  /** Logits [batch, 10] for inputs [batch, 784] (pixels in row-major order). */
  logits(x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => this.forward(x).logits);
  }

  loss(x: tf.Tensor2D, yOneHot: tf.Tensor2D): tf.Scalar {
    return tf.tidy(() => crossEntropy(tf.logSoftmax(this.logits(x)), yOneHot));
  }

  lossAndGradients(x: tf.Tensor2D, yOneHot: tf.Tensor2D): { loss: tf.Scalar; grads: tf.NamedTensorMap } {
    return tf.tidy(() => {
      const v = this.vars;
      const f = this.forward(x);
      const batch = x.shape[0];
      const logProbs = tf.logSoftmax(f.logits);
      const loss = crossEntropy(logProbs, yOneHot);
      const dLogits = tf.div(tf.sub(tf.exp(logProbs), yOneHot), batch);
      const dW3 = tf.matMul(tf.transpose(f.features), dLogits);
      const dB3 = tf.sum(dLogits, 0);
      const dP2 = tf.reshape(tf.matMul(dLogits, tf.transpose(v.w3)), f.p2.shape) as tf.Tensor4D;
      const dA2 = maxPoolGrad(dP2, f.a2, f.p2);
      const dZ2 = tf.mul(dA2, tf.cast(tf.greater(f.z2, 0), 'float32')) as tf.Tensor4D;
      const dK2 = convFilterGrad(f.p1, dZ2);
      const dB2 = tf.sum(dZ2, [0, 1, 2]);
      const dP1 = convInputGrad(dZ2, v.k2 as tf.Tensor4D);
      const dA1 = maxPoolGrad(dP1, f.a1, f.p1);
      const dZ1 = tf.mul(dA1, tf.cast(tf.greater(f.z1, 0), 'float32')) as tf.Tensor4D;
      const dK1 = convFilterGrad(f.images, dZ1);
      const dB1 = tf.sum(dZ1, [0, 1, 2]);
      const g: Record<Names, tf.Tensor> = { k1: dK1, b1: dB1, k2: dK2, b2: dB2, w3: dW3, b3: dB3 };
      return { loss, grads: Object.fromEntries(NAMES.map((n) => [v[n].name, g[n]])) };
    });
  }

  dispose(): void {
    for (const v of this.variables) v.dispose();
  }
}

/**
 * d loss / d kernel of a stride-1 'valid' NHWC conv, as a forward conv: the batch becomes the
 * channels (x -> [in, H, W, batch], dy -> [oh, ow, batch, out] as the kernel), giving [in, kh, kw, out].
 * Forward convs are what every backend registers (tfjs-backend-wasm has no Conv2DBackpropFilter,
 * and tfjs-backend-cpu's is about 30x slower than its forward conv on these shapes).
 */
export function convFilterGrad(x: tf.Tensor4D, dy: tf.Tensor4D): tf.Tensor4D {
  const g = tf.conv2d(tf.transpose(x, [3, 1, 2, 0]), tf.transpose(dy, [1, 2, 0, 3]), 1, 'valid');
  return tf.transpose(g, [1, 2, 0, 3]);
}

/** d loss / d input of a stride-1 'valid' NHWC conv: the full conv of dy with the kernel turned 180° and in/out swapped. */
export function convInputGrad(dy: tf.Tensor4D, filter: tf.Tensor4D): tf.Tensor4D {
  const [kh, kw] = filter.shape;
  const flipped = tf.transpose(tf.reverse(filter, [0, 1]), [0, 1, 3, 2]) as tf.Tensor4D;
  return tf.conv2d(
    tf.pad(dy, [
      [0, 0],
      [kh - 1, kh - 1],
      [kw - 1, kw - 1],
      [0, 0],
    ]),
    flipped,
    1,
    'valid',
  );
}

/**
 * d loss / d input of a 2x2 stride-2 max pool: each window's dy goes to its first maximum in
 * row-major order, as tfjs-backend-cpu's MaxPoolGrad and ONNX Runtime's MaxPool gradient route it.
 * Ties are common here, not rare: on MNIST's blank background every conv output equals its bias,
 * so a window of four equal positive values must pass dy once, not four times.
 */
export function maxPoolGrad(dy: tf.Tensor4D, input: tf.Tensor4D, output: tf.Tensor4D): tf.Tensor4D {
  const [n, h, w, c] = input.shape;
  const six = [n, h / 2, 1, w / 2, 1, c];
  const isMax = tf.cast(
    tf.equal(tf.reshape(input, [n, h / 2, 2, w / 2, 2, c]), tf.reshape(output, six)),
    'float32',
  );
  const at = (r: number, col: number) => tf.slice(isMax, [0, 0, r, 0, col, 0], six);
  const [e00, e01, e10, e11] = [at(0, 0), at(0, 1), at(1, 0), at(1, 1)];
  const not = (e: tf.Tensor) => tf.sub(1, e);
  const m01 = tf.mul(e01, not(e00));
  const m10 = tf.mul(e10, tf.mul(not(e00), not(e01)));
  const m11 = tf.mul(e11, tf.mul(tf.mul(not(e00), not(e01)), not(e10)));
  const mask = tf.concat([tf.concat([e00, m01], 4), tf.concat([m10, m11], 4)], 2);
  return tf.reshape(tf.mul(mask, tf.reshape(dy, six)), [n, h, w, c]);
}

function crossEntropy(logProbs: tf.Tensor, yOneHot: tf.Tensor): tf.Scalar {
  return tf.neg(tf.div(tf.sum(tf.mul(yOneHot, logProbs)), logProbs.shape[0]!)) as tf.Scalar;
}
