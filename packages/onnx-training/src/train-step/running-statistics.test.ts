import { AccSGDConfigError, AccSGDGradientError, decodeState } from '@accsgd/core';
import { fromBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { tensorValues } from '../autodiff/proto.js';
import { type ForwardSpec, forwardModel, positive, random } from '../test-support/forward-models.js';
import { OnnxTrainer } from './onnx-trainer.js';

/**
 * BatchNormalization's running statistics in a training-mode export (training_mode=1): buffers, as
 * in PyTorch, never parameters; each step writes BatchNormalization's own running_mean and
 * running_var outputs back (ONNX: running = momentum * running + (1 - momentum) * batch statistic,
 * the variance biased); exportModel carries them, the state file does not, and a rejected step
 * leaves them unchanged.
 */

const N = 4;
const C = 3;
const HW = 4; // 2x2
const MOMENTUM = 0.9;
const values = {
  'conv.weight': random(C * 2, 71, 0.8),
  'conv.bias': random(C, 72, 0.3),
  'bn.weight': positive(C, 73),
  'bn.bias': random(C, 74, 0.2),
  'bn.running_mean': random(C, 75, 0.5),
  'bn.running_var': positive(C, 76),
  'fc.weight': random(4 * C, 77, 0.7),
  'fc.bias': random(4, 78, 0.1),
};
const spec = (batch: number): ForwardSpec => ({
  inputs: { x: [batch, 2, 2, 2] },
  params: {
    'conv.weight': [[C, 2, 1, 1], values['conv.weight']],
    'conv.bias': [[C], values['conv.bias']],
    'bn.weight': [[C], values['bn.weight']],
    'bn.bias': [[C], values['bn.bias']],
    'bn.running_mean': [[C], values['bn.running_mean']],
    'bn.running_var': [[C], values['bn.running_var']],
    'fc.weight': [[4, C], values['fc.weight']],
    'fc.bias': [[4], values['fc.bias']],
  },
  nodes: [
    ['Conv', ['x', 'conv.weight', 'conv.bias'], ['c']],
    [
      'BatchNormalization',
      ['c', 'bn.weight', 'bn.bias', 'bn.running_mean', 'bn.running_var'],
      ['b', 'bn_running_mean_out', 'bn_running_var_out'],
      { training_mode: 1, momentum: { float: MOMENTUM } },
    ],
    ['Relu', ['b'], ['r']],
    ['GlobalAveragePool', ['r'], ['p']],
    ['Flatten', ['p'], ['f']],
    ['Gemm', ['f', 'fc.weight', 'fc.bias'], ['logits'], { transB: 1 }],
  ],
  outputs: { logits: [batch, 4] },
});
const model = forwardModel(spec(N));
const batchOf = (rows: number, seed: number) => ({ x: Float32Array.from(random(rows * 2 * HW, seed, 2)) });
const labelsOf = (rows: number) => {
  const l = new Float32Array(rows * 4);
  for (let r = 0; r < rows; r++) l[r * 4 + (r % 4)] = 1;
  return l;
};
const STATS = ['bn.running_mean', 'bn.running_var'];
const create = (options: Record<string, unknown> = {}) =>
  OnnxTrainer.create(model, {
    loss: 'softmax-cross-entropy',
    hyperparams: { lr: 0.05, weightDecay: 0.5 },
    ort,
    ...options,
  });

/** The 1x1 convolution's per-channel batch mean and biased variance, in float64. */
function batchStatistics(x: Float32Array, weight: ArrayLike<number>, bias: ArrayLike<number>) {
  const rows = x.length / (2 * HW);
  const mean = new Array<number>(C).fill(0);
  const variance = new Array<number>(C).fill(0);
  for (let o = 0; o < C; o++) {
    const v: number[] = [];
    for (let n = 0; n < rows; n++)
      for (let k = 0; k < HW; k++)
        v.push(
          bias[o]! +
            weight[o * 2]! * x[(n * 2 + 0) * HW + k]! +
            weight[o * 2 + 1]! * x[(n * 2 + 1) * HW + k]!,
        );
    mean[o] = v.reduce((a, b) => a + b, 0) / v.length;
    variance[o] = v.reduce((a, b) => a + (b - mean[o]!) ** 2, 0) / v.length;
  }
  return { mean, variance };
}

const closeTo = (actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance: number) => {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++)
    expect(Math.abs(actual[i]! - expected[i]!), `element ${i}: ${actual[i]} vs ${expected[i]}`).toBeLessThan(
      tolerance * Math.max(1, Math.abs(expected[i]!)),
    );
};

describe('OnnxTrainer and BatchNormalization running statistics (training_mode=1)', () => {
  it('are buffers by default: not trained, named apart from the parameters', async () => {
    const trainer = await create();
    expect(trainer.paramNames).toEqual([
      'conv.weight',
      'conv.bias',
      'bn.weight',
      'bn.bias',
      'fc.weight',
      'fc.bias',
    ]);
    expect(trainer.runningStatisticNames).toEqual(STATS);
    await trainer.dispose();
    // A pattern that would match them skips them.
    const all = await create({ trainable: '*' });
    expect(all.paramNames).not.toContain('bn.running_mean');
    expect(all.runningStatisticNames).toEqual(STATS);
    await all.dispose();
  });

  it('naming one as trainable, or a pattern matching only them, is refused with AccSGDConfigError', async () => {
    await expect(create({ trainable: ['fc.weight', 'bn.running_var'] })).rejects.toThrow(AccSGDConfigError);
    await expect(create({ trainable: 'bn.running_mean' })).rejects.toThrow(
      /running mean or variance of a BatchNormalization with training_mode=1/,
    );
    await expect(create({ trainable: /running/ })).rejects.toThrow(
      /selects only bn\.running_mean, bn\.running_var: the running mean or variance/,
    );
  });

  it("each step writes ONNX's update back (momentum 0.9, biased variance), from the current weights", async () => {
    const trainer = await create();
    let mean = values['bn.running_mean'].slice();
    let variance = values['bn.running_var'].slice();
    for (const seed of [81, 82]) {
      const before = await trainer.read();
      const batch = batchOf(N, seed);
      // The step's batch statistics come from the convolution's weights before it.
      const stats = batchStatistics(
        batch.x,
        before.params.get('conv.weight')!,
        before.params.get('conv.bias')!,
      );
      await trainer.step(batch, labelsOf(N));
      mean = mean.map((m, c) => MOMENTUM * m + (1 - MOMENTUM) * stats.mean[c]!);
      variance = variance.map((v, c) => MOMENTUM * v + (1 - MOMENTUM) * stats.variance[c]!);
      const after = await trainer.read();
      // float32 rounding of the attribute (0.9 -> 0.89999998) and of the sums: ~1e-7 relative.
      closeTo(after.statistics.get('bn.running_mean')!, mean, 2e-6);
      closeTo(after.statistics.get('bn.running_var')!, variance, 2e-6);
      expect([...after.buffers.keys()]).not.toContain('bn.running_mean');
    }
    // A last partial batch (3 rows: another train step) updates the same statistics.
    const before = await trainer.read();
    const partial = batchOf(3, 83);
    const stats = batchStatistics(
      partial.x,
      before.params.get('conv.weight')!,
      before.params.get('conv.bias')!,
    );
    await trainer.step(partial, labelsOf(3));
    const after = await trainer.read();
    closeTo(
      after.statistics.get('bn.running_mean')!,
      mean.map((m, c) => MOMENTUM * m + (1 - MOMENTUM) * stats.mean[c]!),
      2e-6,
    );
    await trainer.dispose();
  });

  it("runningVariance: 'unbiased' moves running_var towards PyTorch's Bessel-corrected variance", async () => {
    const trainer = await create({ runningVariance: 'unbiased' });
    const before = await trainer.read();
    const batch = batchOf(N, 91);
    const stats = batchStatistics(
      batch.x,
      before.params.get('conv.weight')!,
      before.params.get('conv.bias')!,
    );
    await trainer.step(batch, labelsOf(N));
    const n = N * HW;
    const { statistics } = await trainer.read();
    closeTo(
      statistics.get('bn.running_var')!,
      values['bn.running_var'].map(
        (v, c) => MOMENTUM * v + ((1 - MOMENTUM) * stats.variance[c]! * n) / (n - 1),
      ),
      2e-6,
    );
    closeTo(
      statistics.get('bn.running_mean')!,
      values['bn.running_mean'].map((m, c) => MOMENTUM * m + (1 - MOMENTUM) * stats.mean[c]!),
      2e-6,
    );
    await trainer.dispose();
    await expect(create({ runningVariance: 'bessel' })).rejects.toThrow(AccSGDConfigError);
    // One value per channel (a [1, C] batch) has no unbiased variance.
    const single = forwardModel({
      inputs: { x: [1, 2] },
      params: {
        g: [[2], [1, 1]],
        b: [[2], [0, 0]],
        m: [[2], [0, 0]],
        v: [[2], [1, 1]],
        W: [
          [2, 2],
          [1, 0, 0, 1],
        ],
      },
      nodes: [
        ['MatMul', ['x', 'W'], ['h']],
        ['BatchNormalization', ['h', 'g', 'b', 'm', 'v'], ['y', 'rm', 'rv'], { training_mode: 1 }],
      ],
      outputs: { y: [1, 2] },
    });
    await expect(
      OnnxTrainer.create(single, { loss: 'mse', runningVariance: 'unbiased', hyperparams: { lr: 0.1 }, ort }),
    ).rejects.toThrow(/1 value per channel/);
  });

  it('exportModel holds the updated statistics; the state file does not', async () => {
    const trainer = await create();
    await trainer.step(batchOf(N, 84), labelsOf(N));
    const { statistics } = await trainer.read();
    const exported = fromBinary(ModelProtoSchema, await trainer.exportModel());
    const initializers = new Map(exported.graph!.initializer.map((t) => [t.name, tensorValues(t)!]));
    for (const name of STATS) {
      expect(Array.from(initializers.get(name)!)).toEqual(Array.from(statistics.get(name)!));
      expect(Array.from(statistics.get(name)!)).not.toEqual(
        Array.from(Float32Array.from(values[name as keyof typeof values])),
      );
    }
    const state = decodeState(await trainer.exportState());
    expect([...state.buffers.keys()].filter((k) => k.includes('running'))).toEqual([]);
    expect(state.groups.flatMap((g) => g.params)).not.toContain('bn.running_var');
    // A trainer resumed from the exported model starts from the updated statistics.
    const resumed = await OnnxTrainer.create(await trainer.exportModel(), {
      loss: 'softmax-cross-entropy',
      hyperparams: { lr: 0.05 },
      ort,
    });
    expect((await resumed.read()).statistics).toEqual(statistics);
    await resumed.dispose();
    await trainer.dispose();
  });

  it('exportModel({ inference: true }) normalises with the running statistics (PyTorch eval()): a row predicts alone', async () => {
    const trainer = await create();
    await trainer.step(batchOf(N, 87), labelsOf(N));
    await trainer.step(batchOf(N, 88), labelsOf(N));
    const { params, statistics } = await trainer.read();
    const inference = await trainer.exportModel({ inference: true });
    const bn = fromBinary(ModelProtoSchema, inference).graph!.node.find(
      (n) => n.opType === 'BatchNormalization',
    )!;
    expect(bn.output).toEqual(['b']);
    expect(bn.attribute.map((a) => a.name)).not.toContain('training_mode');
    // Two batches that share row 0 only.
    const x = batchOf(N, 89).x;
    const other = batchOf(N, 90).x;
    other.set(x.subarray(0, 2 * HW));
    const logits = async (bytes: Uint8Array, input: Float32Array) => {
      const session = await ort.InferenceSession.create(bytes);
      const out = await session.run({ x: new ort.Tensor('float32', input, [N, 2, 2, 2]) });
      await session.release();
      return Array.from(out.logits!.data as Float32Array).slice(0, 4);
    };
    // Row 0 on the host, in float64: conv 1x1, BatchNormalization with the running statistics
    // (epsilon 1e-5), Relu, mean over the 2x2 pixels, Gemm.
    const p = (name: string) => (name.startsWith('bn.running') ? statistics : params).get(name)!;
    const pooled = Array.from({ length: C }, (_, o) => {
      let sum = 0;
      for (let k = 0; k < HW; k++) {
        const c =
          p('conv.bias')[o]! + p('conv.weight')[o * 2]! * x[k]! + p('conv.weight')[o * 2 + 1]! * x[HW + k]!;
        const normal =
          ((c - p('bn.running_mean')[o]!) / Math.sqrt(p('bn.running_var')[o]! + 1e-5)) * p('bn.weight')[o]! +
          p('bn.bias')[o]!;
        sum += Math.max(0, normal);
      }
      return sum / HW;
    });
    const expected = Array.from(
      { length: 4 },
      (_, j) => p('fc.bias')[j]! + pooled.reduce((a, v, o) => a + v * p('fc.weight')[j * C + o]!, 0),
    );
    closeTo(await logits(inference, x), expected, 1e-5);
    closeTo(await logits(inference, other), expected, 1e-5);
    // As exported for training, ONNX Runtime normalises with the batch's statistics: row 0 moves.
    const training = await trainer.exportModel();
    expect(await logits(training, x)).not.toEqual(await logits(training, other));
    await expect(trainer.exportModel({ bogus: 1 } as never)).rejects.toThrow(AccSGDConfigError);
    await expect(trainer.exportModel({ inference: 'yes' } as never)).rejects.toThrow(AccSGDConfigError);
    await trainer.dispose();
  });

  it('exportModel({ inference: true }) refuses a model that reads a running-statistics output', async () => {
    const bytes = forwardModel({
      inputs: { x: [4, 2] },
      params: { g: [[2], [1, 1]], b: [[2], [0, 0]], m: [[2], [0, 0]], v: [[2], [1, 1]] },
      nodes: [['BatchNormalization', ['x', 'g', 'b', 'm', 'v'], ['y', 'rm', 'rv'], { training_mode: 1 }]],
      outputs: { y: [4, 2], rv: [2] },
    });
    const trainer = await OnnxTrainer.create(bytes, {
      loss: 'mse',
      output: 'y',
      hyperparams: { lr: 0.1 },
      ort,
    });
    expect(trainer.runningStatisticNames).toEqual(['m', 'v']);
    await expect(trainer.exportModel({ inference: true })).rejects.toThrow(
      /has its running-statistics output "rv" read by the model/,
    );
    expect((await trainer.exportModel()).length).toBeGreaterThan(0);
    await trainer.dispose();
  });

  it('a rejected step (non-finite loss) leaves the statistics unchanged', async () => {
    const trainer = await create();
    await trainer.step(batchOf(N, 85), labelsOf(N));
    const before = await trainer.read();
    const bad = batchOf(N, 86);
    bad.x[5] = Number.NaN;
    await expect(trainer.step(bad, labelsOf(N))).rejects.toThrow(AccSGDGradientError);
    await expect(trainer.step(bad, labelsOf(N))).rejects.toThrow(
      /parameters, buffers and running statistics are unchanged/,
    );
    const after = await trainer.read();
    expect(after.statistics).toEqual(before.statistics);
    expect(after.params).toEqual(before.params);
    await trainer.dispose();
  });

  it('a step that would make a running statistic non-finite (a finite loss) is refused, naming it', async () => {
    // Activations of 1e20: the batch variance overflows float32, the normalised output is 0, the
    // loss and every parameter stay finite; only running_var would become Infinity.
    const bytes = forwardModel({
      inputs: { x: [4, 2] },
      params: {
        W: [
          [2, 2],
          [1, 0, 0, 1],
        ],
        g: [[2], [1, 1]],
        b: [[2], [0, 0]],
        m: [[2], [0, 0]],
        v: [[2], [1, 1]],
      },
      nodes: [
        ['MatMul', ['x', 'W'], ['h']],
        ['BatchNormalization', ['h', 'g', 'b', 'm', 'v'], ['y', 'rm', 'rv'], { training_mode: 1 }],
      ],
      outputs: { y: [4, 2] },
    });
    const trainer = await OnnxTrainer.create(bytes, { loss: 'mse', hyperparams: { lr: 0.1 }, ort });
    const x = new Float32Array([1e20, 1, -1e20, 2, 1e20, 3, -1e20, 4]);
    const error = await trainer.step({ x }, new Float32Array(8)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AccSGDGradientError);
    expect((error as Error).message).toMatch(
      /would make its running statistic "v" non-finite \(element 0 is Infinity\) with a loss of 0\.49/,
    );
    expect((await trainer.read()).statistics.get('v')).toEqual(new Float32Array([1, 1]));
    expect(trainer.stepCount).toBe(0);
    await trainer.dispose();
  });
});
