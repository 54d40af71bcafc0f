import * as tf from '@tensorflow/tfjs-core';
import { ConvNet, type ConvWeights } from './conv-model.js';
import { batchArrays, CLASSES, IMAGE_SIZE, type MnistSplit } from './data.js';
import { Mlp, type MlpWeights } from './model.js';
import { createOptimizer, type OptimizerSpec } from './optimizers.js';
import { epochOrder } from './shuffle.js';

export interface EpochRecord {
  /** 0: before training (loss over the whole training set, forward only); k ≥ 1: after epoch k. */
  epoch: number;
  /** Epoch k ≥ 1: the mean of the minibatch losses seen during the epoch. */
  trainLoss: number;
  /** Accuracy on the validation split (carved from the training images) after the epoch. */
  validationAccuracy: number;
  /** Seconds spent in the epoch's training steps (batches built, forward, backward, update). */
  trainSeconds: number;
  /** Seconds spent evaluating after the epoch. */
  evalSeconds: number;
}

export interface RunResult {
  spec: OptimizerSpec;
  backend: string;
  epochs: EpochRecord[];
  /** Set when the loss became non-finite (or AccSGD rejected a non-finite gradient); training stopped. */
  diverged?: string;
  /** Sum of trainSeconds + evalSeconds. */
  seconds: number;
  /** The seed of the initial weights and of the batch order. */
  seed: number;
  /**
   * Test accuracy after the last epoch, when a test split was given. Reports keep it only for the
   * settings chosen on the validation split.
   */
  testAccuracy?: number;
}

export interface RunOptions {
  train: MnistSplit;
  /** Scored after every epoch; the settings are chosen on it. */
  validation: MnistSplit;
  /** Scored once, after the last epoch (optional). */
  test?: MnistSplit;
  /** The MLP's or the conv net's initial weights (the model follows from them). */
  weights: MlpWeights | ConvWeights;
  spec: OptimizerSpec;
  epochs: number;
  batchSize: number;
  seed: number;
  /** Unique per run in the process (tfjs variable names are global). */
  prefix: string;
  onStep?: (step: number, loss: number) => void;
}

const EVAL_BATCH = 1000;

/** What training and scoring need of a model: `Mlp` and `ConvNet` both have it. */
export type Model = Pick<Mlp, 'logits' | 'loss' | 'lossAndGradients' | 'dispose'>;

export const isConv = (w: MlpWeights | ConvWeights): w is ConvWeights => 'k1' in w;

function identity(n: number): Uint32Array {
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  return p;
}

function tensors(s: MnistSplit, order: ArrayLike<number>, start: number, end: number) {
  const { x, y } = batchArrays(s, order, start, end);
  const n = end - start;
  return { x: tf.tensor2d(x, [n, IMAGE_SIZE]), y: tf.tensor2d(y, [n, CLASSES]) };
}

/** One optimizer step on the examples order[start..end); returns the batch's loss before the step. */
export function trainStep(
  model: Model,
  optimizer: tf.Optimizer,
  s: MnistSplit,
  order: ArrayLike<number>,
  start: number,
  end: number,
): number {
  const { x, y } = tensors(s, order, start, end);
  const { loss, grads } = model.lossAndGradients(x, y);
  x.dispose();
  y.dispose();
  try {
    optimizer.applyGradients(grads);
    return loss.dataSync()[0]!;
  } finally {
    loss.dispose();
    tf.dispose(grads);
  }
}

/** Fraction of the split classified correctly (argmax of the logits). */
export function accuracy(model: Model, s: MnistSplit): number {
  const order = identity(s.count);
  let correct = 0;
  for (let start = 0; start < s.count; start += EVAL_BATCH) {
    const end = Math.min(s.count, start + EVAL_BATCH);
    const predicted = tf.tidy(() => {
      const { x } = tensors(s, order, start, end);
      return tf.argMax(model.logits(x), 1);
    });
    const p = predicted.dataSync();
    predicted.dispose();
    for (let r = 0; r < p.length; r++) if (p[r] === s.labels[start + r]) correct++;
  }
  return correct / s.count;
}

/** Mean softmax cross-entropy over the split (forward only). */
export function meanLoss(model: Model, s: MnistSplit): number {
  const order = identity(s.count);
  let sum = 0;
  for (let start = 0; start < s.count; start += EVAL_BATCH) {
    const end = Math.min(s.count, start + EVAL_BATCH);
    const loss = tf.tidy(() => {
      const { x, y } = tensors(s, order, start, end);
      return model.loss(x, y);
    });
    sum += loss.dataSync()[0]! * (end - start);
    loss.dispose();
  }
  return sum / s.count;
}

/**
 * Trains a fresh MLP from `weights` with one optimizer setting on the current backend: `epochs`
 * passes over `train` in the seeded order (batches of `batchSize`, the last one smaller if
 * `batchSize` does not divide the count), scoring `validation` after each and `test` (when given) once at the end.
 */
export async function trainRun(o: RunOptions): Promise<RunResult> {
  const model: Model = isConv(o.weights) ? new ConvNet(o.weights, o.prefix) : new Mlp(o.weights, o.prefix);
  const optimizer = createOptimizer(o.spec);
  const records: EpochRecord[] = [];
  let diverged: string | undefined;
  let testAccuracy: number | undefined;
  try {
    let t = performance.now();
    records.push({
      epoch: 0,
      trainLoss: meanLoss(model, o.train),
      validationAccuracy: accuracy(model, o.validation),
      trainSeconds: 0,
      evalSeconds: (performance.now() - t) / 1000,
    });
    let step = 0;
    for (let epoch = 1; epoch <= o.epochs && !diverged; epoch++) {
      const order = epochOrder(o.train.count, o.seed, epoch - 1);
      t = performance.now();
      let sum = 0;
      let seen = 0;
      for (let start = 0; start < o.train.count; start += o.batchSize) {
        const end = Math.min(o.train.count, start + o.batchSize);
        let loss: number;
        try {
          loss = trainStep(model, optimizer, o.train, order, start, end);
        } catch (e) {
          diverged = `step ${step + 1}: ${(e as Error).message}`;
          break;
        }
        if (!Number.isFinite(loss)) {
          diverged = `step ${step + 1}: loss ${loss}`;
          break;
        }
        sum += loss * (end - start);
        seen += end - start;
        step++;
        o.onStep?.(step, loss);
        // Let the event loop run now and then (progress bar, signals).
        if (step % 50 === 0) await new Promise((r) => setImmediate(r));
      }
      if (diverged) break;
      const trainSeconds = (performance.now() - t) / 1000;
      t = performance.now();
      const validationAccuracy = accuracy(model, o.validation);
      records.push({
        epoch,
        trainLoss: sum / seen,
        validationAccuracy,
        trainSeconds,
        evalSeconds: (performance.now() - t) / 1000,
      });
    }
    if (o.test && !diverged) testAccuracy = accuracy(model, o.test);
  } finally {
    optimizer.dispose();
    model.dispose();
  }
  const seconds = records.reduce((s, r) => s + r.trainSeconds + r.evalSeconds, 0);
  return {
    spec: o.spec,
    backend: tf.getBackend(),
    epochs: records,
    ...(diverged ? { diverged } : {}),
    seconds,
    seed: o.seed,
    ...(testAccuracy !== undefined ? { testAccuracy } : {}),
  };
}
