import { describe, expect, it } from 'vitest';
import { BatchSchedule } from './data.js';
import { IMAGES_MAGIC, LABELS_MAGIC, loadMnist, parseIdxImages, parseIdxLabels } from './idx.js';
import { initialWeights, mlpForwardModel } from './model.js';
import { trainOnnx } from './onnx.js';
import { FULL_RUN, runExample, subset } from './run.js';
import { maxRelativeDifference, trainTfjs } from './tfjs-track.js';

function header(...words: number[]): Uint8Array {
  const bytes = new Uint8Array(words.length * 4);
  const view = new DataView(bytes.buffer);
  words.forEach((w, k) => view.setUint32(k * 4, w, false));
  return bytes;
}

function concat(a: Uint8Array, n: number): Uint8Array {
  const out = new Uint8Array(a.length + n);
  out.set(a);
  return out;
}

describe('IDX reader', () => {
  it('reads a well-formed file and rejects wrong magic, sizes and labels', () => {
    expect(parseIdxImages(concat(header(IMAGES_MAGIC, 2, 3, 4), 24))).toMatchObject({
      count: 2,
      rows: 3,
      cols: 4,
    });
    expect(() => parseIdxImages(concat(header(LABELS_MAGIC, 2, 3, 4), 24))).toThrow(/magic 2049/);
    expect(() => parseIdxImages(concat(header(IMAGES_MAGIC, 2, 3, 4), 23))).toThrow(/expected 40/);
    expect(() => parseIdxImages(concat(header(IMAGES_MAGIC, 2, 3, 4), 25))).toThrow(/expected 40/);
    expect(() => parseIdxImages(header(IMAGES_MAGIC, 2))).toThrow(/header/);
    expect(Array.from(parseIdxLabels(Uint8Array.from([...header(LABELS_MAGIC, 2), 7, 9])))).toEqual([7, 9]);
    expect(() => parseIdxLabels(Uint8Array.from([...header(LABELS_MAGIC, 2), 7, 10]))).toThrow(/label 10/);
    expect(() => parseIdxLabels(Uint8Array.from([...header(LABELS_MAGIC, 3), 7, 9]))).toThrow(/expected 11/);
    expect(() => parseIdxLabels(Uint8Array.from([...header(IMAGES_MAGIC, 2), 7, 9]))).toThrow(/magic 2051/);
  });
});

describe('MNIST with OnnxTrainer (short run)', () => {
  const data = loadMnist();

  it('loads the full MNIST', () => {
    expect([data.train.count, data.test.count]).toEqual([60_000, 10_000]);
    expect(data.train.x.length).toBe(60_000 * 784);
  });

  it('trains on 2,000 images for an epoch, the export reproduces on onnxruntime-web, tfjs tracks the losses', async () => {
    const result = await runExample(data, {
      ...FULL_RUN,
      trainCount: 2_000,
      batchSize: 32,
      maxEpochs: 1,
      targetAccuracy: undefined,
      compareSteps: 20,
      lossTolerance: 1e-5,
    });
    const { losses } = result;
    expect(losses.length).toBe(62);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(mean(losses.slice(-10))).toBeLessThan(0.5 * mean(losses.slice(0, 10)));
    expect(result.nodeAccuracy).toBeGreaterThan(0.8);
    expect(result.webAccuracy.toFixed(4)).toBe(result.nodeAccuracy.toFixed(4));
    expect(result.tfjsLosses.length).toBe(20);
    expect(result.lossAgreement.max).toBeLessThan(1e-5);
    console.log(
      `[onnx-mnist] accuracy ${result.nodeAccuracy} (web ${result.webAccuracy}), loss ${losses[0]} -> ${losses.at(-1)}, ONNX/tfjs max relative loss difference ${result.lossAgreement.max.toExponential(2)}`,
    );
  });

  it('the loss tolerance catches a 1% change of the learning rate', async () => {
    // A control for the tolerance: tfjs with lr 1% off parts from ONNX by far more than 1e-5 in 20 steps.
    const weights = initialWeights(FULL_RUN.weightSeed);
    const schedule = new BatchSchedule(subset(data.train, 2_000), 32, FULL_RUN.shuffleSeed);
    const onnx = await trainOnnx({
      forward: mlpForwardModel(weights),
      schedule,
      hyperparams: FULL_RUN.hyperparams,
      test: subset(data.test, 100),
      maxEpochs: 1,
      stepsPerEpoch: 20,
    });
    const hp = FULL_RUN.hyperparams;
    const off = await trainTfjs({ weights, schedule, hyperparams: { ...hp, lr: hp.lr * 1.01 }, steps: 20 });
    const parted = maxRelativeDifference(onnx.losses, off).max;
    console.log(
      `[onnx-mnist] lr x 1.01: max relative loss difference ${parted.toExponential(2)} in 20 steps`,
    );
    expect(parted).toBeGreaterThan(1e-3);
  });
});
