import { OnnxTrainer } from '@accsgd/onnx-training';
import * as ortNode from 'onnxruntime-node';
import type { BatchSchedule } from './data.js';
import type { MnistSplit } from './idx.js';
import { CLASSES, INPUTS } from './model.js';

/** AccSGD's hyperparameters as the trainer and @accsgd/tfjs take them. */
export interface AccSGDSettings {
  lr: number;
  kappa: number;
  xi: number;
}

/** What evaluate() needs of an ORT module: onnxruntime-node and onnxruntime-web both fit. */
interface OrtTensorLike {
  data: unknown;
  dispose(): void;
}
interface OrtLike {
  InferenceSession: {
    create(
      model: Uint8Array,
      options?: Record<string, unknown>,
    ): Promise<{
      run(feeds: Record<string, OrtTensorLike>): Promise<Record<string, OrtTensorLike>>;
      release(): Promise<void>;
    }>;
  };
  Tensor: new (type: 'float32', data: Float32Array, dims: readonly number[]) => OrtTensorLike;
}

export interface Evaluation {
  correct: number;
  count: number;
  accuracy: number;
  /** The predicted digit of every image. */
  predictions: Uint8Array;
}

/** Runs an inference model (x[batch, 784] -> logits[batch, 10]) over a split and scores argmax. */
export async function evaluate(
  ort: OrtLike,
  model: Uint8Array,
  split: MnistSplit,
  options: { chunk?: number; sessionOptions?: Record<string, unknown> } = {},
): Promise<Evaluation> {
  const chunk = options.chunk ?? 1000;
  const session = await ort.InferenceSession.create(model, options.sessionOptions);
  const predictions = new Uint8Array(split.count);
  let correct = 0;
  try {
    for (let start = 0; start < split.count; start += chunk) {
      const n = Math.min(chunk, split.count - start);
      const x = new ort.Tensor('float32', split.x.subarray(start * INPUTS, (start + n) * INPUTS), [
        n,
        INPUTS,
      ]);
      const out = await session.run({ x });
      const logits = out.logits!.data as Float32Array;
      for (let r = 0; r < n; r++) {
        let best = 0;
        for (let c = 1; c < CLASSES; c++)
          if (logits[r * CLASSES + c]! > logits[r * CLASSES + best]!) best = c;
        predictions[start + r] = best;
        if (best === split.y[start + r]) correct++;
      }
      x.dispose();
      for (const t of Object.values(out)) t.dispose();
    }
  } finally {
    await session.release();
  }
  return { correct, count: split.count, accuracy: correct / split.count, predictions };
}

export interface EpochReport {
  epoch: number;
  steps: number;
  meanLoss: number;
  testAccuracy: number;
  seconds: number;
}

export interface OnnxTrainingResult {
  /** The loss of every step, in order (each of its batch, before the update). */
  losses: number[];
  epochs: EpochReport[];
  /** The trained forward model (OnnxTrainer.exportModel()). */
  exported: Uint8Array;
  /** Training and per-epoch evaluation time, seconds (session creation included). */
  seconds: number;
  placement: { executionProvider: string; strictPlacement: boolean };
}

export interface OnnxTrainingOptions {
  forward: Uint8Array;
  schedule: BatchSchedule;
  hyperparams: AccSGDSettings;
  test: MnistSplit;
  /** Stop after the first epoch whose test accuracy reaches this (default: never early). */
  targetAccuracy?: number;
  maxEpochs: number;
  /** Steps per epoch (default: every full batch). */
  stepsPerEpoch?: number;
  executionProvider?: 'cpu' | 'webgpu';
  strictPlacement?: boolean;
  onEpoch?: (report: EpochReport) => void;
}

/**
 * Trains the forward model with OnnxTrainer (one session.run per step: forward, softmax
 * cross-entropy, backward and AccSGD) on onnxruntime-node, and evaluates the exported model on the
 * test split (onnxruntime-node cpu) after every epoch.
 */
export async function trainOnnx(options: OnnxTrainingOptions): Promise<OnnxTrainingResult> {
  const t0 = performance.now();
  const executionProvider = options.executionProvider ?? 'cpu';
  const strictPlacement = options.strictPlacement ?? false;
  const trainer = await OnnxTrainer.create(options.forward, {
    loss: 'softmax-cross-entropy',
    dimensions: { batch: options.schedule.batchSize },
    hyperparams: options.hyperparams,
    ort: ortNode,
    executionProvider,
    strictPlacement,
  });
  const losses: number[] = [];
  const epochs: EpochReport[] = [];
  let exported: Uint8Array | undefined;
  try {
    const steps = Math.min(options.stepsPerEpoch ?? Number.POSITIVE_INFINITY, options.schedule.stepsPerEpoch);
    for (let epoch = 0; epoch < options.maxEpochs; epoch++) {
      const e0 = performance.now();
      let sum = 0;
      for (let s = 0; s < steps; s++) {
        const { x, labels } = options.schedule.batch(epoch, s);
        const loss = await trainer.step({ x }, labels);
        losses.push(loss);
        sum += loss;
      }
      exported = await trainer.exportModel();
      const { accuracy } = await evaluate(ortNode, exported, options.test);
      const report = {
        epoch: epoch + 1,
        steps,
        meanLoss: sum / steps,
        testAccuracy: accuracy,
        seconds: (performance.now() - e0) / 1000,
      };
      epochs.push(report);
      options.onEpoch?.(report);
      if (options.targetAccuracy !== undefined && accuracy >= options.targetAccuracy) break;
    }
    exported ??= await trainer.exportModel();
  } finally {
    await trainer.dispose();
  }
  return {
    losses,
    epochs,
    exported,
    seconds: (performance.now() - t0) / 1000,
    placement: { executionProvider, strictPlacement },
  };
}
