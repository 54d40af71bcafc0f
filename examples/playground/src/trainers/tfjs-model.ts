// tfjs-core alone registers no gradients (the @tensorflow/tfjs union package does): tf.variableGrads needs them.
import '@tensorflow/tfjs-core/dist/register_all_gradients';
import type * as TF from '@tensorflow/tfjs-core';
import type { ModelSpec } from '../models.js';

/** The task's forward pass in tfjs ops over variables named as the spec's parameters. */
export function forward(
  tf: typeof TF,
  spec: ModelSpec,
  params: Record<string, TF.Tensor>,
  x: TF.Tensor2D,
): TF.Tensor2D {
  const p = params as Record<string, TF.Tensor2D> & { K1: TF.Tensor4D; c1: TF.Tensor1D };
  if (spec.task === 'mnist-cnn') {
    const images = tf.reshape(x, [-1, 28, 28, 1]) as TF.Tensor4D;
    const conv = tf.relu(tf.add(tf.conv2d(images, p.K1, 2, 'same'), p.c1));
    return tf.add(tf.matMul(tf.reshape(conv, [-1, 14 * 14 * 8]) as TF.Tensor2D, p.W2!), p.b2!);
  }
  const pre = tf.add(tf.matMul(x, p.W1!), p.b1!);
  const hidden = (spec.task === 'toy' ? tf.tanh(pre) : tf.relu(pre)) as TF.Tensor2D;
  return tf.add(tf.matMul(hidden, p.W2!), p.b2!);
}

export function lossOf(tf: typeof TF, logits: TF.Tensor2D, labels: TF.Tensor2D): TF.Scalar {
  return tf.losses.softmaxCrossEntropy(labels, logits) as TF.Scalar;
}
