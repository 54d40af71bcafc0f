import { readFileSync } from 'node:fs';
import { type LearningRateSchedule, OnnxTrainer } from '@accsgd/onnx-training';
import * as ortNode from 'onnxruntime-node';
import * as ortWeb from 'onnxruntime-web';
import { batchAt, CLASSES, type MnistSplit, PIXELS, permutation } from './mnist.js';

/** The conv net torch.onnx.export wrote (model/export.py): input x[1, 1, 28, 28], output logits[1, 10]. */
export function exportedModel(): Uint8Array {
  return new Uint8Array(readFileSync(new URL('../model/cnn.onnx', import.meta.url)));
}

export interface FineTuneConfig {
  /** The first `trainCount` training images (60,000: all). */
  trainCount: number;
  /** The first `testCount` test images. */
  testCount: number;
  batchSize: number;
  epochs: number;
  /** AccSGD's lr at step 0 (a cosine schedule takes it to 0 at the last step), kappa and xi. */
  lr: number;
  kappa: number;
  xi: number;
  /** Weight decay of the weights; biases are a group without it. */
  weightDecay: number;
  shuffleSeed: number;
  /** Steps the checkpointed trainer keeps going, to compare with the trainer resumed from its checkpoint. */
  compareSteps: number;
  log?: (line: string) => void;
}

export const FULL_RUN: FineTuneConfig = {
  trainCount: 60_000,
  testCount: 10_000,
  batchSize: 64,
  epochs: 3,
  lr: 0.1,
  kappa: 1000,
  xi: 10,
  weightDecay: 5e-4,
  shuffleSeed: 7,
  compareSteps: 50,
};

export interface Scores {
  accuracy: number;
  predictions: Uint8Array;
  logits: Float32Array;
}

/** Runs a batch-1 model (as exported) over the first images of a split, one image per run. */
export async function score(
  ort: typeof ortNode | typeof ortWeb,
  model: Uint8Array,
  split: MnistSplit,
): Promise<Scores> {
  const session = await ort.InferenceSession.create(model);
  const predictions = new Uint8Array(split.count);
  const logits = new Float32Array(split.count * CLASSES);
  let correct = 0;
  try {
    for (let i = 0; i < split.count; i++) {
      const x = new ort.Tensor('float32', split.x.slice(i * PIXELS, (i + 1) * PIXELS), [1, 1, 28, 28]);
      const out = (await session.run({ x })).logits!;
      const row = out.data as Float32Array;
      logits.set(row, i * CLASSES);
      let best = 0;
      for (let c = 1; c < CLASSES; c++) if (row[c]! > row[best]!) best = c;
      predictions[i] = best;
      if (best === split.y[i]) correct++;
      x.dispose();
      out.dispose();
    }
  } finally {
    await session.release();
  }
  return { accuracy: correct / split.count, predictions, logits };
}

export interface FineTuneResult {
  /** The loss of every step of the run (the resumed trainer's after the checkpoint). */
  losses: number[];
  checkpointStep: number;
  /** The checkpointed trainer's and the resumed trainer's losses for compareSteps steps after the checkpoint. */
  original: number[];
  resumed: number[];
  /** Whether those are equal bit for bit, and the parameters after them too. */
  curveUnchanged: boolean;
  initialAccuracy: number;
  nodeAccuracy: number;
  webAccuracy: number;
  /** Test images whose predicted digit differs between onnxruntime-node and onnxruntime-web. */
  predictionDisagreements: number;
  maxLogitDifference: number;
  trainSeconds: number;
  exported: Uint8Array;
}

/** The trainer options: fixed-batch export trained at batchSize, biases without weight decay, cosine lr. */
function trainerOptions(config: FineTuneConfig, totalSteps: number) {
  const schedule: LearningRateSchedule = (step) =>
    0.5 * config.lr * (1 + Math.cos((Math.PI * Math.min(step, totalSteps)) / totalSteps));
  return {
    loss: 'softmax-cross-entropy' as const,
    batchSize: config.batchSize,
    hyperparams: { lr: schedule, kappa: config.kappa, xi: config.xi, weightDecay: config.weightDecay },
    groups: [{ params: '*.bias', weightDecay: 0 }],
    ort: ortNode,
  };
}

/**
 * Fine-tunes the exported conv net on MNIST with AccSGD through OnnxTrainer: every epoch's
 * shuffled batches, the last one partial (a train step built for its size, same parameters and
 * buffers). Halfway it checkpoints (exportModel + exportState), creates a fresh trainer from the
 * checkpoint, and checks that the checkpointed trainer and the resumed one take the next
 * compareSteps steps identically; the resumed trainer finishes the run. The exported model is
 * scored on onnxruntime-node and onnxruntime-web (wasm).
 */
export async function fineTune(
  data: { train: MnistSplit; test: MnistSplit },
  config: FineTuneConfig,
): Promise<FineTuneResult> {
  const log = config.log ?? (() => {});
  const model = exportedModel();
  const stepsPerEpoch = Math.ceil(config.trainCount / config.batchSize);
  const total = stepsPerEpoch * config.epochs;
  const checkpointStep = Math.floor(total / 2);
  const orders = Array.from({ length: config.epochs }, (_, e) =>
    permutation(config.trainCount, config.shuffleSeed + e),
  );
  const batch = (step: number) =>
    batchAt(data.train, orders[Math.floor(step / stepsPerEpoch)]!, config.batchSize, step % stepsPerEpoch);

  const initial = await score(ortNode, model, data.test);
  log(
    `exported model before fine-tuning: test accuracy ${initial.accuracy.toFixed(4)} (onnxruntime-node cpu)`,
  );

  const t0 = performance.now();
  const options = trainerOptions(config, total);
  let trainer = await OnnxTrainer.create(model, options);
  log(
    `OnnxTrainer: ${trainer.paramNames.length} parameters in groups ${trainer.groups.map((g) => `[${g.params.join(', ')}]`).join(' ')}, batch input ${trainer.trainStep.batchInputs.map((i) => `${i.name}[${i.shape}]`).join(', ')} (exported as batch 1)`,
  );
  const losses: number[] = [];
  const original: number[] = [];
  const resumed: number[] = [];
  let curveUnchanged = false;
  let exported: Uint8Array;
  try {
    for (let step = 0; step < total; step++) {
      if (step === checkpointStep) {
        const [checkpointModel, state] = [await trainer.exportModel(), await trainer.exportState()];
        log(
          `step ${step}: checkpoint (exportModel ${checkpointModel.length} bytes, exportState ${state.length} bytes)`,
        );
        const fresh = await OnnxTrainer.create(checkpointModel, options);
        await fresh.importState(state);
        const n = Math.min(config.compareSteps, total - step);
        for (let k = 0; k < n; k++) {
          const b = batch(step + k);
          original.push(await trainer.step({ x: b.x }, b.labels));
          resumed.push(await fresh.step({ x: b.x }, b.labels));
        }
        const [a, c] = [await trainer.read(), await fresh.read()];
        const same = (x: Float32Array | null | undefined, y: Float32Array | null | undefined) =>
          !!x && !!y && x.length === y.length && x.every((v, i) => Object.is(v, y[i]));
        curveUnchanged =
          original.every((l, k) => Object.is(l, resumed[k])) &&
          trainer.paramNames.every(
            (p) => same(a.params.get(p), c.params.get(p)) && same(a.buffers.get(p), c.buffers.get(p)),
          );
        log(
          `resumed in a fresh trainer: the next ${n} losses ${curveUnchanged ? 'equal' : 'DIFFER FROM'} the checkpointed trainer's bit for bit, and so do the parameters and buffers (${original[0]!.toFixed(6)} ... ${original.at(-1)!.toFixed(6)})`,
        );
        await trainer.dispose();
        trainer = fresh;
        losses.push(...resumed);
        step += n - 1;
        continue;
      }
      const b = batch(step);
      losses.push(await trainer.step({ x: b.x }, b.labels));
      if ((step + 1) % stepsPerEpoch === 0) {
        const epoch = (step + 1) / stepsPerEpoch;
        const recent = losses.slice(-stepsPerEpoch);
        log(
          `epoch ${epoch}: ${stepsPerEpoch} steps (last batch ${b.labels.length / CLASSES} images), mean loss ${(recent.reduce((s, l) => s + l, 0) / recent.length).toFixed(4)}, ${((performance.now() - t0) / 1000).toFixed(1)} s`,
        );
      }
    }
    exported = await trainer.exportModel();
  } finally {
    await trainer.dispose();
  }
  const trainSeconds = (performance.now() - t0) / 1000;
  const node = await score(ortNode, exported, data.test);
  ortWeb.env.wasm.numThreads = 1;
  const web = await score(ortWeb, exported, data.test);
  let predictionDisagreements = 0;
  for (let i = 0; i < data.test.count; i++)
    if (node.predictions[i] !== web.predictions[i]) predictionDisagreements++;
  let maxLogitDifference = 0;
  for (let i = 0; i < node.logits.length; i++)
    maxLogitDifference = Math.max(maxLogitDifference, Math.abs(node.logits[i]! - web.logits[i]!));
  log(
    `exported model: onnxruntime-node cpu ${node.accuracy.toFixed(4)}, onnxruntime-web wasm ${web.accuracy.toFixed(4)}; ${predictionDisagreements} of ${data.test.count} predictions differ, largest logit difference ${maxLogitDifference.toExponential(2)}`,
  );
  return {
    losses,
    checkpointStep,
    original,
    resumed,
    curveUnchanged,
    initialAccuracy: initial.accuracy,
    nodeAccuracy: node.accuracy,
    webAccuracy: web.accuracy,
    predictionDisagreements,
    maxLogitDifference,
    trainSeconds,
    exported,
  };
}
