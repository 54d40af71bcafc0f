import { AccSGDOptimizer } from '@accsgd/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
// For its side effect: tfjs-core's gradient functions are registered by @tensorflow/tfjs-layers
// (or @tensorflow/tfjs); tfjs-core's own register_all_gradients module is not loadable by plain Node ESM.
import '@tensorflow/tfjs-layers';
import type { BatchSchedule } from './data.js';
import { CLASSES, INPUTS, type MlpWeights, PARAM_SHAPES } from './model.js';
import type { AccSGDSettings } from './onnx.js';

let counter = 0;

/**
 * The same MLP, initial weights, batches and AccSGD hyperparameters on TensorFlow.js's wasm backend
 * with @accsgd/tfjs (its fused wasm kernel): loss = -mean(sum(labels * logSoftmax(logits), -1)),
 * gradients from tf.variableGrads. Returns the loss of each of the first `steps` steps (epoch 1).
 */
export async function trainTfjs(options: {
  weights: MlpWeights;
  schedule: BatchSchedule;
  hyperparams: AccSGDSettings;
  steps: number;
}): Promise<number[]> {
  await tf.setBackend('wasm');
  await tf.ready();
  const b = options.schedule.batchSize;
  if (options.steps > options.schedule.stepsPerEpoch)
    throw new Error(`${options.steps} steps do not fit one epoch of ${options.schedule.stepsPerEpoch}`);
  // Unique variable names per run: tfjs keeps a global registry of variable names.
  const run = counter++;
  const vars = Object.fromEntries(
    (Object.keys(PARAM_SHAPES) as (keyof MlpWeights)[]).map((name) => [
      name,
      tf.variable(
        tf.tensor(options.weights[name], PARAM_SHAPES[name], 'float32'),
        true,
        `mnist${run}_${name}`,
      ),
    ]),
  ) as Record<keyof MlpWeights, tf.Variable>;
  const optimizer = new AccSGDOptimizer({ ...options.hyperparams });
  const losses: number[] = [];
  try {
    for (let s = 0; s < options.steps; s++) {
      const batch = options.schedule.batch(0, s);
      const x = tf.tensor2d(batch.x, [b, INPUTS]);
      const y = tf.tensor2d(batch.labels, [b, CLASSES]);
      const { value, grads } = tf.variableGrads(() =>
        tf.tidy(() => {
          const h = tf.relu(tf.add(tf.matMul(x, vars.W1 as tf.Tensor2D), vars.b1));
          const z = tf.add(tf.matMul(h, vars.W2 as tf.Tensor2D), vars.b2);
          return tf.neg(tf.mean(tf.sum(tf.mul(y, tf.logSoftmax(z)), -1))) as tf.Scalar;
        }),
      );
      optimizer.applyGradients(grads);
      losses.push((await value.data())[0]!);
      tf.dispose([x, y, value, ...Object.values(grads)]);
    }
  } finally {
    optimizer.dispose();
    tf.dispose(Object.values(vars));
  }
  return losses;
}

/** The largest |a - b| / max(|a|, |b|) over the first n losses, and the step where it occurs (1-based). */
export function maxRelativeDifference(
  a: readonly number[],
  b: readonly number[],
): { max: number; step: number } {
  const n = Math.min(a.length, b.length);
  let max = 0;
  let step = 0;
  for (let i = 0; i < n; i++) {
    const d = Math.abs(a[i]! - b[i]!) / Math.max(Math.abs(a[i]!), Math.abs(b[i]!), Number.MIN_VALUE);
    if (d > max || !Number.isFinite(d)) {
      max = d;
      step = i + 1;
    }
  }
  return { max, step };
}
