import { AccSGD, AccSGDConfigError, AccSGDGradientError } from '@accsgd/core';
import * as ortNode from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { buildGradientModel } from '../autodiff/gradient.js';
import type { OrtModule } from '../runtime.js';
import { mlpModel, random } from '../test-support/forward-models.js';
import { OnnxTrainer } from './onnx-trainer.js';
import { buildTrainStepModel } from './train-step-model.js';

const ort: OrtModule = ortNode;
const BATCH = 32;
const IN = 4;
const CLASSES = 3;
const HIDDEN = 16;

/**
 * A separable dataset: three classes, each a Gaussian-ish blob around its own centre in 4-D
 * (centres 3 apart, noise in [-1, 1)), one-hot float labels.
 */
function dataset(
  batches: number,
  seed: number,
): { x: Float32Array; labels: Float32Array; classes: number[] }[] {
  const centres = [
    [3, 0, 0, 0],
    [0, 3, 0, 0],
    [0, 0, 3, 0],
  ];
  return Array.from({ length: batches }, (_, b) => {
    const noise = random(BATCH * IN, seed + b);
    const x = new Float32Array(BATCH * IN);
    const labels = new Float32Array(BATCH * CLASSES);
    const classes: number[] = [];
    for (let r = 0; r < BATCH; r++) {
      const c = (r + b) % CLASSES;
      classes.push(c);
      labels[r * CLASSES + c] = 1;
      for (let k = 0; k < IN; k++) x[r * IN + k] = centres[c]![k]! + noise[r * IN + k]!;
    }
    return { x, labels, classes };
  });
}

const model = () => mlpModel({ batch: 'batch', inF: IN, hidden: HIDDEN, classes: CLASSES, seed: 5 });
const hyperparams = { lr: 0.05, kappa: 100, xi: 10, smallConst: 0.7, weightDecay: 1e-4 };

describe('buildTrainStepModel', () => {
  it('has the batch, labels, parameters, buffers and six multipliers as inputs; loss, parameters and buffers as outputs', async () => {
    const t = buildTrainStepModel(model(), { loss: 'softmax-cross-entropy', dimensions: { batch: BATCH } });
    const session = await ort.InferenceSession.create(t.model);
    expect(session.inputNames).toEqual([
      'x',
      'labels',
      'W1',
      'W1.momentum_buffer',
      'b1',
      'b1.momentum_buffer',
      'W2',
      'W2.momentum_buffer',
      'b2',
      'b2.momentum_buffer',
      'group0_c0',
      'group0_c1',
      'group0_c2',
      'group0_c3',
      'group0_c4',
      'group0_c5',
    ]);
    expect(session.outputNames).toEqual([
      'loss',
      'W1.updated',
      'W1.momentum_buffer.updated',
      'b1.updated',
      'b1.momentum_buffer.updated',
      'W2.updated',
      'W2.momentum_buffer.updated',
      'b2.updated',
      'b2.momentum_buffer.updated',
    ]);
    expect(t.params.map((p) => [p.name, p.shape])).toEqual([
      ['W1', [IN, HIDDEN]],
      ['b1', [HIDDEN]],
      ['W2', [HIDDEN, CLASSES]],
      ['b2', [CLASSES]],
    ]);
    await session.release();
  });

  it('trains only the initializers named in trainable (the others stay initializers)', () => {
    const t = buildTrainStepModel(model(), {
      loss: 'mse',
      trainable: ['W2', 'b2'],
      dimensions: { batch: 2 },
    });
    expect(t.params.map((p) => p.name)).toEqual(['W2', 'b2']);
    expect(t.labels).toEqual({ name: 'labels', shape: [2, CLASSES] });
  });
});

describe('OnnxTrainer on onnxruntime-node cpu', () => {
  it('an MLP (MatMul, Add, Relu, MatMul, Add; softmax cross-entropy) learns a separable dataset in 50 steps', async () => {
    const data = dataset(50, 300);
    const trainer = await OnnxTrainer.create(model(), {
      loss: 'softmax-cross-entropy',
      dimensions: { batch: BATCH },
      hyperparams,
      ort,
    });
    const losses: number[] = [];
    for (const { x, labels } of data) losses.push(await trainer.step({ x }, labels));
    expect(trainer.stepCount).toBe(50);
    const first = losses.slice(0, 5).reduce((a, b) => a + b) / 5;
    const last = losses.slice(-5).reduce((a, b) => a + b) / 5;
    console.log(`[mlp] mean loss of steps 1-5 ${first.toFixed(4)}, of steps 46-50 ${last.toFixed(4)}`);
    // Three classes start near ln 3 = 1.0986 and the blobs are separable: the loss must fall to a
    // small fraction of it.
    expect(first).toBeGreaterThan(0.5);
    expect(last).toBeLessThan(0.1);
    expect(last).toBeLessThan(first / 10);

    // The exported inference model classifies a fresh batch correctly, with the trained weights.
    const exported = await trainer.exportModel();
    const inference = await ortNode.InferenceSession.create(exported);
    const test = dataset(1, 9000)[0]!;
    const { logits } = await inference.run({ x: new ortNode.Tensor('float32', test.x, [BATCH, IN]) });
    const z = logits!.data as Float32Array;
    let correct = 0;
    for (let r = 0; r < BATCH; r++) {
      const row = Array.from(z.subarray(r * CLASSES, (r + 1) * CLASSES));
      if (row.indexOf(Math.max(...row)) === test.classes[r]) correct++;
    }
    expect(correct).toBe(BATCH);
    await inference.release();
    await trainer.dispose();
  });

  it("each step's update equals the autodiff gradient fed to @accsgd/core's float32 AccSGD (first step: buf = p)", async () => {
    const forward = model();
    const data = dataset(4, 77);
    const trainer = await OnnxTrainer.create(forward, {
      loss: 'softmax-cross-entropy',
      dimensions: { batch: BATCH },
      hyperparams,
      ort,
    });
    const gm = buildGradientModel(forward, { loss: 'softmax-cross-entropy', dimensions: { batch: BATCH } });
    const gradients = await ortNode.InferenceSession.create(gm.model);
    const initial = await trainer.read();
    expect([...initial.buffers.values()]).toEqual([null, null, null, null]);
    const names = trainer.paramNames;
    const params = names.map((n) => Float32Array.from(initial.params.get(n)!));
    const core = new AccSGD([{ params, names }], hyperparams);
    let worst = 0;
    for (const [t, { x, labels }] of data.entries()) {
      if (t === 2) {
        trainer.setLearningRate(0.02);
        core.setLearningRate(0.02);
      }
      // The gradient at core's current parameters (equal to the trainer's within float32 rounding).
      const feeds: Record<string, ortNode.Tensor> = {
        x: new ortNode.Tensor('float32', x, [BATCH, IN]),
        labels: new ortNode.Tensor('float32', labels, [BATCH, CLASSES]),
      };
      names.forEach((n, i) => {
        feeds[n] = new ortNode.Tensor('float32', params[i]!, gm.params[i]!.shape);
      });
      const out = await gradients.run(feeds);
      const loss = await trainer.step({ x }, labels);
      expect(loss).toBeCloseTo((out.loss!.data as Float32Array)[0]!, 5);
      core.step(names.map((n) => out[gm.gradients.get(n)!]!.data as Float32Array));
      const read = await trainer.read();
      names.forEach((n, i) => {
        for (const [mine, theirs] of [
          [read.params.get(n)!, params[i]!],
          [read.buffers.get(n)!, core.buffer(n) as Float32Array],
        ] as const) {
          for (let k = 0; k < mine.length; k++) {
            const error = Math.abs(mine[k]! - theirs[k]!) / Math.max(1, Math.abs(theirs[k]!));
            worst = Math.max(worst, error);
          }
        }
      });
    }
    console.log(`[update vs core AccSGD] worst relative difference ${worst.toExponential(2)} over 4 steps`);
    // Both sides round each operation to float32; the two ORT graphs may fuse differently, so the
    // gradients may differ in their last bits, and the buffer amplifies g by bufFromGrad ~ 7.
    expect(worst).toBeLessThan(1e-5);
    await gradients.release();
    await trainer.dispose();
  });

  it("loss 'mse' and loss 'scalar' (the model computes the same MSE itself) train y = x W + b alike", async () => {
    const { forwardModel } = await import('../test-support/forward-models.js');
    const w = [0.5, -1, 2, 0.25];
    const xs = Float32Array.from(random(8 * 4, 3));
    const targets = Float32Array.from(
      { length: 8 },
      (_, r) => w.reduce((s, wk, k) => s + wk * xs[r * 4 + k]!, 0) + 0.3,
    );
    const params = {
      W: [
        [4, 1],
        [0, 0, 0, 0],
      ],
      b: [[1], [0]],
    } as const;
    const predict = [
      ['Gemm', ['x', 'W', 'b'], ['y2']],
      ['Reshape', ['y2', 'flat'], ['y']],
    ] as [string, string[], string[]][];
    const linear = forwardModel({
      inputs: { x: [8, 4] },
      params: params as never,
      ints: { flat: [8] },
      nodes: predict,
      outputs: { y: [8] },
    });
    const withLoss = forwardModel({
      inputs: { x: [8, 4], targets: [8] },
      params: params as never,
      ints: { flat: [8] },
      nodes: [
        ...predict,
        ['Sub', ['y', 'targets'], ['d']],
        ['Mul', ['d', 'd'], ['d2']],
        ['ReduceMean', ['d2'], ['mse'], { keepdims: 0 }],
      ],
      outputs: { mse: [] },
    });
    const mse = await OnnxTrainer.create(linear, { loss: 'mse', hyperparams: { lr: 0.1 }, ort });
    const scalar = await OnnxTrainer.create(withLoss, { loss: 'scalar', hyperparams: { lr: 0.1 }, ort });
    const a: number[] = [];
    const b: number[] = [];
    for (let t = 0; t < 150; t++) {
      a.push(await mse.step({ x: xs }, targets));
      b.push(await scalar.step({ x: xs, targets }));
    }
    for (let t = 0; t < a.length; t++) expect(b[t]).toBeCloseTo(a[t]!, 5);
    console.log(`[linear] mse loss ${a[0]!.toFixed(4)} -> ${a.at(-1)!.toExponential(2)}`);
    expect(a.at(-1)!).toBeLessThan(a[0]! / 1000);
    expect((await mse.read()).params.get('b')![0]).toBeCloseTo(0.3, 1); // within 0.05 after 150 steps
    await mse.dispose();
    await scalar.dispose();
  });

  it("a non-finite loss is an AccSGDGradientError and changes nothing (nonFiniteLoss 'error')", async () => {
    const trainer = await OnnxTrainer.create(model(), {
      loss: 'mse',
      dimensions: { batch: 2 },
      hyperparams,
      ort,
    });
    const before = await trainer.read();
    const x = new Float32Array(2 * IN).fill(Number.NaN);
    await expect(trainer.step({ x }, new Float32Array(2 * CLASSES))).rejects.toBeInstanceOf(
      AccSGDGradientError,
    );
    const after = await trainer.read();
    expect(after).toEqual(before);
    expect(trainer.stepCount).toBe(0);
    await trainer.dispose();
  });

  it('rejects a batch of the wrong size with AccSGDConfigError naming the input', async () => {
    const trainer = await OnnxTrainer.create(model(), {
      loss: 'mse',
      dimensions: { batch: 2 },
      hyperparams,
      ort,
    });
    await expect(trainer.step({ x: new Float32Array(3) }, new Float32Array(6))).rejects.toThrow(
      /batch\.x must be a Float32Array of 8 elements \(shape \[2,4\]\)/,
    );
    await expect(trainer.step({ x: new Float32Array(8) })).rejects.toBeInstanceOf(AccSGDConfigError);
    await trainer.dispose();
  });
});
