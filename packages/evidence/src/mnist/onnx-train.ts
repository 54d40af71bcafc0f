import { OnnxTrainer } from '@accsgd/onnx-training';
import * as ort from 'onnxruntime-node';
import type { ConvWeights } from './conv-model.js';
import { convForwardModel } from './conv-onnx-model.js';
import { batchArrays, CLASSES, IMAGE_SIZE, type MnistSplit } from './data.js';
import type { MlpWeights } from './model.js';
import { mlpForwardModel } from './onnx-model.js';
import { accsgdSettings } from './optimizers.js';
import { epochOrder } from './shuffle.js';
import { type EpochRecord, isConv, type RunOptions, type RunResult } from './train.js';

/** The backend name an ONNX Runtime run carries in its RunResult (and the plot's legend). */
export const ONNX_BACKEND = 'onnxruntime-node cpu';

const EVAL_BATCH = 1000;

/** Logits [count, 10] of the forward model (inference, onnxruntime-node cpu) for the split's images. */
export async function onnxLogits(
  model: Uint8Array,
  s: MnistSplit,
  chunk = EVAL_BATCH,
): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(model);
  const out = new Float32Array(s.count * CLASSES);
  try {
    for (let start = 0; start < s.count; start += chunk) {
      const end = Math.min(s.count, start + chunk);
      const x = new Float32Array(s.images.subarray(start * IMAGE_SIZE, end * IMAGE_SIZE));
      for (let i = 0; i < x.length; i++) x[i] = x[i]! / 255; // as batchArrays scales them
      const input = new ort.Tensor('float32', x, [end - start, IMAGE_SIZE]);
      const result = await session.run({ x: input });
      out.set(result.logits!.data as Float32Array, start * CLASSES);
      input.dispose();
      for (const t of Object.values(result)) t.dispose();
    }
  } finally {
    await session.release();
  }
  return out;
}

/** Test accuracy (argmax) and mean softmax cross-entropy of the model over a split. */
export async function onnxScore(
  model: Uint8Array,
  s: MnistSplit,
): Promise<{ accuracy: number; loss: number }> {
  const logits = await onnxLogits(model, s);
  let correct = 0;
  let sum = 0;
  for (let r = 0; r < s.count; r++) {
    const row = logits.subarray(r * CLASSES, (r + 1) * CLASSES);
    let best = 0;
    let max = row[0]!;
    for (let c = 1; c < CLASSES; c++)
      if (row[c]! > max) {
        max = row[c]!;
        best = c;
      }
    if (best === s.labels[r]) correct++;
    let z = 0;
    for (let c = 0; c < CLASSES; c++) z += Math.exp(row[c]! - max);
    sum += max + Math.log(z) - row[s.labels[r]!]!;
  }
  return { accuracy: correct / s.count, loss: sum / s.count };
}

export type OnnxRunOptions = Omit<RunOptions, 'prefix' | 'weights'> & { weights: MlpWeights | ConvWeights };

/**
 * The AccSGD run of `trainRun`, as an ONNX Runtime train step: the forward model built from the
 * same initial weights (mlpForwardModel, or convForwardModel for ConvWeights), trained by @accsgd/onnx-training's OnnxTrainer (one
 * session.run per step: forward, softmax cross-entropy, backward and AccSGD) on onnxruntime-node
 * cpu, on the same seeded batches; after each epoch the exported forward model is scored on the
 * validation split (and the test split after the last epoch, when given). The train step has one static batch size, so the batch size must divide the count.
 */
export async function trainOnnxRun(o: OnnxRunOptions): Promise<RunResult> {
  if (o.spec.name !== 'AccSGD') throw new Error(`the ONNX train step runs AccSGD, not ${o.spec.name}`);
  if (o.train.count % o.batchSize !== 0)
    throw new Error(`batch size ${o.batchSize} must divide the ${o.train.count} training images for ONNX`);
  const forward = isConv(o.weights) ? convForwardModel(o.weights) : mlpForwardModel(o.weights);
  const records: EpochRecord[] = [];
  let diverged: string | undefined;
  let testAccuracy: number | undefined;
  let t = performance.now();
  const initialTrain = await onnxScore(forward, o.train);
  const initialValidation = await onnxScore(forward, o.validation);
  records.push({
    epoch: 0,
    trainLoss: initialTrain.loss,
    validationAccuracy: initialValidation.accuracy,
    trainSeconds: 0,
    evalSeconds: (performance.now() - t) / 1000,
  });
  t = performance.now();
  const trainer = await OnnxTrainer.create(forward, {
    loss: 'softmax-cross-entropy',
    dimensions: { batch: o.batchSize },
    hyperparams: accsgdSettings(o.spec),
    ort,
    executionProvider: 'cpu',
  });
  let setup = (performance.now() - t) / 1000;
  try {
    let step = 0;
    for (let epoch = 1; epoch <= o.epochs && !diverged; epoch++) {
      const order = epochOrder(o.train.count, o.seed, epoch - 1);
      t = performance.now();
      let sum = 0;
      let seen = 0;
      for (let start = 0; start < o.train.count; start += o.batchSize) {
        const end = start + o.batchSize;
        const { x, y } = batchArrays(o.train, order, start, end);
        let loss: number;
        try {
          loss = await trainer.step({ x }, y);
        } catch (e) {
          diverged = `step ${step + 1}: ${(e as Error).message}`;
          break;
        }
        sum += loss * (end - start);
        seen += end - start;
        step++;
        o.onStep?.(step, loss);
        if (step % 50 === 0) await new Promise((r) => setImmediate(r));
      }
      if (diverged) break;
      const trainSeconds = (performance.now() - t) / 1000 + setup;
      setup = 0;
      t = performance.now();
      const exported = await trainer.exportModel();
      const { accuracy } = await onnxScore(exported, o.validation);
      if (epoch === o.epochs && o.test) testAccuracy = (await onnxScore(exported, o.test)).accuracy;
      records.push({
        epoch,
        trainLoss: sum / seen,
        validationAccuracy: accuracy,
        trainSeconds,
        evalSeconds: (performance.now() - t) / 1000,
      });
    }
  } finally {
    await trainer.dispose();
  }
  const seconds = records.reduce((s, r) => s + r.trainSeconds + r.evalSeconds, 0);
  return {
    spec: o.spec,
    backend: ONNX_BACKEND,
    epochs: records,
    ...(diverged ? { diverged } : {}),
    seconds,
    seed: o.seed,
    ...(testAccuracy !== undefined && !diverged ? { testAccuracy } : {}),
  };
}
