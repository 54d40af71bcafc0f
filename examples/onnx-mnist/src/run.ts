import * as ortNode from 'onnxruntime-node';
import * as ortWeb from 'onnxruntime-web';
import { BatchSchedule } from './data.js';
import type { Mnist, MnistSplit } from './idx.js';
import { initialWeights, mlpForwardModel } from './model.js';
import { type AccSGDSettings, type EpochReport, type Evaluation, evaluate, trainOnnx } from './onnx.js';
import { maxRelativeDifference, trainTfjs } from './tfjs-track.js';

export interface ExampleConfig {
  /** Use the first `trainCount` training images (60,000: all). */
  trainCount: number;
  batchSize: number;
  hyperparams: AccSGDSettings;
  weightSeed: number;
  shuffleSeed: number;
  /** Train until the test accuracy reaches this, or maxEpochs. */
  targetAccuracy?: number;
  maxEpochs: number;
  /** Steps of epoch 1 to train again with @accsgd/tfjs on wasm and compare losses with. */
  compareSteps: number;
  /** The largest relative difference of a per-step loss between ONNX and tfjs that passes. */
  lossTolerance: number;
  log?: (line: string) => void;
}

/**
 * The choices of the full run. lr 0.2 is in the middle of the 0.1-0.3 range suggested for AccSGD's
 * lr (set as for plain SGD); kappa 1000 and xi 10 are @accsgd/core's defaults (the authors').
 */
export const FULL_RUN: ExampleConfig = {
  trainCount: 60_000,
  batchSize: 128,
  hyperparams: { lr: 0.2, kappa: 1000, xi: 10 },
  weightSeed: 1,
  shuffleSeed: 2,
  targetAccuracy: 0.97,
  maxEpochs: 10,
  compareSteps: 200,
  // Observed: under 1e-6 over 200 steps (float32 rounding of differently ordered sums; see README).
  lossTolerance: 1e-4,
};

export interface ExampleResult {
  epochs: EpochReport[];
  losses: number[];
  trainSeconds: number;
  /** The exported model on onnxruntime-node cpu (the accuracy of the last epoch). */
  nodeAccuracy: number;
  /** The same exported model on onnxruntime-web wasm, in Node. */
  webAccuracy: number;
  /** Test images whose predicted digit differs between the two runtimes. */
  predictionDisagreements: number;
  tfjsLosses: number[];
  lossAgreement: { max: number; step: number };
  exported: Uint8Array;
}

export function subset(split: MnistSplit, count: number): MnistSplit {
  if (count > split.count) throw new Error(`${count} images requested of ${split.count}`);
  return { count, x: split.x.subarray(0, count * 784), y: split.y.subarray(0, count) };
}

const fmt = (x: number) => x.toFixed(4);

/** Trains with OnnxTrainer, evaluates on both runtimes, and tracks the losses with @accsgd/tfjs. */
export async function runExample(data: Mnist, config: ExampleConfig): Promise<ExampleResult> {
  const log = config.log ?? (() => undefined);
  const train = subset(data.train, config.trainCount);
  const weights = initialWeights(config.weightSeed);
  const forward = mlpForwardModel(weights);
  const schedule = new BatchSchedule(train, config.batchSize, config.shuffleSeed);
  const hp = config.hyperparams;
  log(
    `onnxruntime-node cpu: ${train.count} training images, batch ${config.batchSize} (${schedule.stepsPerEpoch} steps an epoch), AccSGD lr ${hp.lr} kappa ${hp.kappa} xi ${hp.xi}`,
  );
  const onnx = await trainOnnx({
    forward,
    schedule,
    hyperparams: hp,
    test: data.test,
    maxEpochs: config.maxEpochs,
    ...(config.targetAccuracy !== undefined ? { targetAccuracy: config.targetAccuracy } : {}),
    onEpoch: (e) =>
      log(
        `epoch ${e.epoch}: mean loss ${e.meanLoss.toFixed(4)}, test accuracy ${fmt(e.testAccuracy)} (${e.seconds.toFixed(1)} s)`,
      ),
  });
  const last = onnx.epochs.at(-1)!;
  log(`trained ${onnx.epochs.length} epoch(s), ${onnx.losses.length} steps in ${onnx.seconds.toFixed(1)} s`);

  // The exported inference model on onnxruntime-web (wasm) in Node, against onnxruntime-node cpu.
  ortWeb.env.wasm.numThreads = 1;
  const node: Evaluation = await evaluate(ortNode, onnx.exported, data.test);
  const web: Evaluation = await evaluate(ortWeb, onnx.exported, data.test);
  let disagreements = 0;
  for (let i = 0; i < node.predictions.length; i++)
    if (node.predictions[i] !== web.predictions[i]) disagreements++;
  log(
    `exported model: onnxruntime-node cpu ${fmt(node.accuracy)}, onnxruntime-web wasm ${fmt(web.accuracy)} (${disagreements} of ${data.test.count} predictions differ)`,
  );
  if (fmt(node.accuracy) !== fmt(last.testAccuracy))
    throw new Error(`the exported model scores ${node.accuracy}, the last epoch ${last.testAccuracy}`);
  if (fmt(web.accuracy) !== fmt(node.accuracy))
    throw new Error(`onnxruntime-web scores ${web.accuracy}, onnxruntime-node ${node.accuracy}`);

  // The same first steps with @accsgd/tfjs on the tfjs wasm backend.
  const steps = Math.min(config.compareSteps, onnx.losses.length);
  const t0 = performance.now();
  const tfjsLosses = await trainTfjs({ weights, schedule, hyperparams: hp, steps });
  const agreement = maxRelativeDifference(onnx.losses.slice(0, steps), tfjsLosses);
  log(
    `tfjs wasm (@accsgd/tfjs), ${steps} steps in ${((performance.now() - t0) / 1000).toFixed(1)} s: max relative loss difference ${agreement.max.toExponential(2)} (step ${agreement.step}); tolerance ${config.lossTolerance.toExponential(0)}`,
  );
  if (!(agreement.max <= config.lossTolerance))
    throw new Error(
      `ONNX and tfjs losses part by ${agreement.max} at step ${agreement.step} (tolerance ${config.lossTolerance})`,
    );
  return {
    epochs: onnx.epochs,
    losses: onnx.losses,
    trainSeconds: onnx.seconds,
    nodeAccuracy: node.accuracy,
    webAccuracy: web.accuracy,
    predictionDisagreements: disagreements,
    tfjsLosses,
    lossAgreement: agreement,
    exported: onnx.exported,
  };
}
