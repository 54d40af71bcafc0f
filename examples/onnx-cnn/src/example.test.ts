import { describe, expect, it } from 'vitest';
import { loadMnist, subset } from './mnist.js';
import { FULL_RUN, fineTune } from './run.js';

describe('fine-tuning the torch.onnx-exported conv net (short run)', () => {
  const data = loadMnist();

  it('trains 500 images at batch 64 (7 full batches and one of 52), resumes from a checkpoint bit for bit, and onnxruntime-web predicts as onnxruntime-node', async () => {
    const result = await fineTune(
      { train: subset(data.train, 500), test: subset(data.test, 200) },
      { ...FULL_RUN, trainCount: 500, testCount: 200, epochs: 1, compareSteps: 2 },
    );
    expect(result.losses.length).toBe(8);
    expect(result.checkpointStep).toBe(4);
    expect(result.original.length).toBe(2);
    expect(result.curveUnchanged).toBe(true);
    expect(result.losses.every(Number.isFinite)).toBe(true);
    expect(result.predictionDisagreements).toBe(0);
    expect(result.webAccuracy).toBe(result.nodeAccuracy);
    // The export was pretrained on 6,000 images: it already classifies most digits.
    expect(result.initialAccuracy).toBeGreaterThan(0.8);
    expect(result.nodeAccuracy).toBeGreaterThan(0.8);
  });
});
