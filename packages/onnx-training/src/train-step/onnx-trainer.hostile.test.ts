import { AccSGDConfigError, AccSGDGradientError, AccSGDStateError } from '@accsgd/core';
import { TensorProto_DataType } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { type ForwardSpec, forwardModel } from '../test-support/forward-models.js';
import { OnnxTrainer } from './onnx-trainer.js';

// Issue 18, section 6: defects found by probing OnnxTrainer with hostile input. Each is a typed
// error (or the right result) and changes nothing.

const mlp: ForwardSpec = {
  inputs: { x: [2, 3] },
  params: {
    W: [
      [3, 2],
      [0.1, -0.2, 0.3, 0.4, -0.5, 0.6],
    ],
  },
  nodes: [['MatMul', ['x', 'W'], ['y']]],
  outputs: { y: [2, 2] },
};
const x = () => new Float32Array([1, 2, 3, -1, 0.5, 2]);
const labels = () => new Float32Array([1, 0, 0, 1]);
const create = (bytes: Uint8Array, options: Record<string, unknown> = {}) =>
  OnnxTrainer.create(bytes, { loss: 'mse', hyperparams: { lr: 0.1 }, ort, ...options });

describe('OnnxTrainer call ordering with dispose', () => {
  it('p = trainer.step(batch); trainer.dispose() applies the step already made', async () => {
    const trainer = await create(forwardModel(mlp));
    const step = trainer.step({ x: x() }, labels());
    const exported = trainer.exportState();
    const disposed = trainer.dispose();
    // Loss of the initial weights: y = x W = [[-0.8, 2.4], [-0.95, 1.6]] against [[1, 0], [0, 1]]:
    // (1.8^2 + 2.4^2 + 0.95^2 + 0.6^2) / 4 = 2.565625.
    expect(await step).toBeCloseTo(2.565625, 6);
    expect((await exported).length).toBeGreaterThan(0);
    await disposed;
    await expect(trainer.step({ x: x() }, labels())).rejects.toThrow(AccSGDStateError);
    await expect(trainer.read()).rejects.toThrow('this OnnxTrainer has been disposed');
  });
});

describe('OnnxTrainer batches in a SharedArrayBuffer', () => {
  it('trains on them as on the same values in an ordinary buffer (ORT refuses shared views)', async () => {
    const shared = new Float32Array(new SharedArrayBuffer(24));
    shared.set(x());
    const sharedLabels = new Float32Array(new SharedArrayBuffer(16));
    sharedLabels.set(labels());
    const [a, b] = [await create(forwardModel(mlp)), await create(forwardModel(mlp))];
    expect(await a.step({ x: shared }, sharedLabels)).toBe(await b.step({ x: x() }, labels()));
    expect(Array.from((await a.read()).params.get('W')!)).toEqual(
      Array.from((await b.read()).params.get('W')!),
    );
    await Promise.all([a.dispose(), b.dispose()]);
  });
});

describe('OnnxTrainer token ids that reach Gather through other nodes', () => {
  // E: a table of 5 rows; ids reach Gather through Identity, Reshape or Add(ids, 0).
  const lookup = (path: ForwardSpec['nodes']): ForwardSpec => ({
    inputs: {},
    intInputs: { ids: [2] },
    params: { E: [[5, 3], Array.from({ length: 15 }, (_, k) => k / 10)] },
    ints: { shape: [2], zero: [0] },
    nodes: [...path, ['Gather', ['E', 'rows'], ['y']]],
    outputs: { y: [2, 3] },
  });
  const paths: [string, ForwardSpec['nodes']][] = [
    ['Identity', [['Identity', ['ids'], ['rows']]]],
    ['Reshape', [['Reshape', ['ids', 'shape'], ['rows']]]],
    [
      'Add(ids, 0) after Identity',
      [
        ['Identity', ['ids'], ['i1']],
        ['Add', ['i1', 'zero'], ['rows']],
      ],
    ],
  ];
  for (const [name, path] of paths)
    it(`checks ids through ${name} against the table, before anything changes`, async () => {
      const trainer = await create(forwardModel(lookup(path)));
      const before = await trainer.read();
      const step = (ids: bigint[]) => trainer.step({ ids: BigInt64Array.from(ids) }, new Float32Array(6));
      for (const bad of [5n, -6n, 1000n]) {
        const error = await step([1n, bad]).catch((e: unknown) => e);
        expect(error, String(bad)).toBeInstanceOf(AccSGDConfigError);
        expect((error as AccSGDConfigError).field).toMatch(/\[1\]/);
        expect((error as AccSGDConfigError).expected).toBe(
          'an index in [-5, 4] (it selects from an axis of 5)',
        );
      }
      expect(trainer.stepCount).toBe(0);
      expect((await trainer.read()).params.get('E')).toEqual(before.params.get('E'));
      // In range (negative ids count from the end): the step runs.
      expect(Number.isFinite(await step([4n, -5n]))).toBe(true);
      expect(trainer.stepCount).toBe(1);
      await trainer.dispose();
    });

  it('refuses, at create, ids computed inside the model from a float input (a Cast)', async () => {
    const spec: ForwardSpec = {
      ...lookup([['Cast', ['f'], ['rows'], { to: TensorProto_DataType.INT64 }]]),
      inputs: { f: [2] },
      intInputs: {},
    };
    const error = await create(forwardModel(spec)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AccSGDConfigError);
    expect((error as Error).message).toMatch(
      /^graph.node\[1\] "node1_Gather" \(Gather\) has indices "rows" computed inside the model \(from float values, e.g. a Cast of a float input\), which cannot be checked against the table's 5 rows before a step/,
    );
  });
});

describe('OnnxTrainer parameters that a finite loss would make non-finite', () => {
  // loss = sum(sqrt(x * W)): at x = 0 the loss is 0 and dloss/dW = x / (2 sqrt(x W)) = 0 / 0 = NaN.
  const sqrtModel = forwardModel({
    inputs: { x: [3] },
    params: { W: [[3], [1, 2, 3]] },
    nodes: [
      ['Mul', ['x', 'W'], ['m']],
      ['Sqrt', ['m'], ['s']],
      ['ReduceSum', ['s'], ['y'], { keepdims: 0 }],
    ],
    outputs: { y: [] },
  });

  it("refuses the step by default (AccSGDGradientError naming W), changing nothing; 'allow' applies it", async () => {
    const trainer = await create(sqrtModel, { loss: 'scalar' });
    const error = await trainer.step({ x: new Float32Array(3) }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AccSGDGradientError);
    expect((error as AccSGDGradientError).param).toBe('W');
    expect((error as Error).message).toBe(
      `gradient for parameter "W": step 1 would make its parameter non-finite (element 0 is NaN) with a loss of 0; parameters and buffers are unchanged (nonFiniteLoss: 'allow' applies such steps)`,
    );
    const after = await trainer.read();
    expect(Array.from(after.params.get('W')!)).toEqual([1, 2, 3]);
    expect(after.buffers.get('W')).toBeNull();
    expect(trainer.stepCount).toBe(0);
    // A finite step still runs afterwards.
    expect(await trainer.step({ x: new Float32Array([1, 1, 1]) })).toBeCloseTo(
      1 + Math.SQRT2 + Math.sqrt(3),
      5,
    );
    await trainer.dispose();

    const allowing = await create(sqrtModel, { loss: 'scalar', nonFiniteLoss: 'allow' });
    expect(await allowing.step({ x: new Float32Array(3) })).toBe(0);
    expect(Number.isNaN((await allowing.read()).params.get('W')![0])).toBe(true);
    await allowing.dispose();
  });
});

describe("OnnxTrainer's loss of an int64 output", () => {
  it("refuses loss 'scalar' of an int64 value (ORT failed untyped)", async () => {
    const error = await create(
      forwardModel({
        inputs: { x: [1] },
        params: { W: [[1], [2]] },
        nodes: [
          ['Mul', ['x', 'W'], ['m']],
          ['Shape', ['m'], ['n']],
        ],
        outputs: { n: [1] },
      }),
      { loss: 'scalar' },
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AccSGDConfigError);
    expect(error).toMatchObject({ field: 'output', value: 'n' });
    expect((error as Error).message).toMatch(
      /"n" is int64; the loss \(and its gradient\) needs a float output/,
    );
  });
});
