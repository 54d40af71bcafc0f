import { AccSGDConfigError } from '@accsgd/core';
import { create } from '@bufbuild/protobuf';
import {
  StringStringEntryProtoSchema,
  TensorProto_DataLocation,
  TensorProto_DataType,
  TensorProtoSchema,
} from 'onnx-buf';
import { describe, expect, it } from 'vitest';
import type { OrtModule } from '../runtime.js';
import { type ForwardSpec, forwardModel, mlpModel } from '../test-support/forward-models.js';
import { OnnxTrainer } from '../train-step/onnx-trainer.js';
import { buildTrainStepModel } from '../train-step/train-step-model.js';

/** An ORT whose sessions cannot be created: proves the checks run before anything does. */
const noSessions = {
  Tensor: class {},
  InferenceSession: {
    create: () => {
      throw new Error('a session was created before the model was checked');
    },
  },
} as unknown as OrtModule;

const base: ForwardSpec = {
  inputs: { x: [2, 3] },
  params: { W: [[3, 3], new Array(9).fill(0.1)] },
  nodes: [
    ['MatMul', ['x', 'W'], ['h']],
    ['Relu', ['h'], ['y']],
  ],
  outputs: { y: [2, 3] },
};

async function rejection(
  bytes: Uint8Array,
  options: Record<string, unknown> = {},
): Promise<AccSGDConfigError> {
  const error = await OnnxTrainer.create(bytes, {
    loss: 'mse',
    hyperparams: { lr: 0.1 },
    ort: noSessions,
    ...options,
  }).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(AccSGDConfigError);
  return error as AccSGDConfigError;
}

describe('models the train step rejects, with AccSGDConfigError, before any session exists', () => {
  it('an op without a backward rule, naming the op and the node', async () => {
    const e = await rejection(forwardModel({ ...base, nodes: [base.nodes[0]!, ['Sin', ['h'], ['y']]] }));
    expect(e.field).toBe('graph.node[1] "node1_Sin" (Sin)');
    expect(e.message).toMatch(/uses op Sin, which has no backward rule; supported: Abs, Add, And, /);
  });

  it('a com.microsoft op, naming the domain, op and node', async () => {
    const e = await rejection(
      forwardModel({ ...base, nodes: [base.nodes[0]!, ['Gelu', ['h'], ['y']]], domain: 'com.microsoft' }),
    );
    expect(e.field).toBe('graph.node[1] "node1_Gelu" (com.microsoft.Gelu)');
    expect(e.message).toMatch(/uses op Gelu of domain "com.microsoft"; only standard ai.onnx ops/);
  });

  it('an initializer with external data', async () => {
    const external = create(TensorProtoSchema, {
      name: 'W',
      dataType: TensorProto_DataType.FLOAT,
      dims: [3n, 3n],
      dataLocation: TensorProto_DataLocation.EXTERNAL,
      externalData: [create(StringStringEntryProtoSchema, { key: 'location', value: 'weights.bin' })],
    });
    const e = await rejection(forwardModel({ ...base, params: {}, raw: [external] }));
    expect(e.message).toMatch(/^initializer "W" uses external data/);
  });

  it('quantized and half-precision initializers', async () => {
    const int8 = create(TensorProtoSchema, {
      name: 'W',
      dataType: TensorProto_DataType.INT8,
      dims: [9n],
      int32Data: new Array(9).fill(1),
    });
    expect((await rejection(forwardModel({ ...base, params: {}, raw: [int8] }))).message).toMatch(
      /^initializer "W" is quantized \(INT8\); quantized models cannot be trained/,
    );
    const half = create(TensorProtoSchema, {
      name: 'W',
      dataType: TensorProto_DataType.FLOAT16,
      dims: [9n],
      int32Data: new Array(9).fill(0),
    });
    expect((await rejection(forwardModel({ ...base, params: {}, raw: [half] }))).message).toMatch(
      /^initializer "W" is FLOAT16; only float32/,
    );
  });

  it('a symbolic dimension without a size, and an unknown one', async () => {
    const e = await rejection(mlpModel({ batch: 'batch', inF: 2, hidden: 3, classes: 2 }), {
      loss: 'softmax-cross-entropy',
    });
    expect(e.message).toMatch(
      /^input "x" has the symbolic dimension "batch" \(axis 0\); fix it with the dimensions option/,
    );
    await expect(
      OnnxTrainer.create(mlpModel({ batch: 'batch', inF: 2, hidden: 3, classes: 2 }), {
        loss: 'softmax-cross-entropy',
        dimensions: { batch: 0 },
        hyperparams: { lr: 0.1 },
        ort: noSessions,
      }),
    ).rejects.toThrow(/dimensions.batch must be a positive integer/);
  });

  it('an opset outside 13-20, a shape rule violation, an unknown loss or trainable name', async () => {
    expect((await rejection(forwardModel({ ...base, opset: 12 }))).field).toBe('model.opset_import');
    expect((await rejection(forwardModel({ ...base, opset: 21 }))).message).toMatch(
      /an ai.onnx opset from 13 to 20/,
    );
    const bad = await rejection(
      forwardModel({
        ...base,
        nodes: [
          ['MatMul', ['x', 'x'], ['h']],
          ['Relu', ['h'], ['y']],
        ],
      }),
    );
    expect(bad.message).toMatch(
      /^graph.node\[0\] "node0_MatMul" \(MatMul\) multiplies \[2,3\] by \[2,3\]: inner dimensions differ/,
    );
    expect((await rejection(forwardModel(base), { loss: 'hinge' })).field).toBe('loss');
    expect((await rejection(forwardModel(base), { trainable: ['V'] })).field).toBe('trainable');
    expect((await rejection(forwardModel(base), { loss: 'scalar' })).message).toMatch(
      /output "y" has shape \[2,3\]/,
    );
  });

  it('training-mode Dropout, a used Dropout mask, a strided Slice, an index out of range, a LayerNormalization statistic on the way to the loss, a cast to int32', async () => {
    const training = await rejection(
      forwardModel({
        ...base,
        ints: { on: [1] },
        nodes: [base.nodes[0]!, ['Dropout', ['h', '', 'on'], ['y']]],
      }),
    );
    expect(training.message).toMatch(/Dropout whose training_mode is not a constant false/);
    const mask = await rejection(
      forwardModel({
        ...base,
        nodes: [
          base.nodes[0]!,
          ['Dropout', ['h'], ['d', 'm']],
          ['Cast', ['m'], ['mf'], { to: 1 }],
          ['Mul', ['d', 'mf'], ['y']],
        ],
      }),
    );
    expect(mask.message).toMatch(/a Dropout whose mask output is unused/);
    const strided = await rejection(
      forwardModel({
        ...base,
        outputs: { y: [1, 3] },
        ints: { s: [0], e: [2], a: [0], st: [2] },
        nodes: [base.nodes[0]!, ['Slice', ['h', 's', 'e', 'a', 'st'], ['y']]],
      }),
    );
    expect(strided.message).toMatch(/\(Slice\) has steps other than 1, which have no backward rule/);
    const range = await rejection(
      forwardModel({
        ...base,
        outputs: { y: [1, 3] },
        ints: { ids: [2] },
        nodes: [base.nodes[0]!, ['Gather', ['h', 'ids'], ['y']]],
      }),
    );
    expect(range.message).toMatch(/has an index out of range for axis 0 of size 2/);
    const statistic = await rejection(
      forwardModel({
        ...base,
        outputs: { y: [2, 1] },
        nodes: [base.nodes[0]!, ['LayerNormalization', ['h', 'S'], ['n', 'y']]],
        params: { ...base.params, S: [[3], [1, 1, 1]] },
      }),
    );
    expect(statistic.message).toMatch(
      /has its output "y" used on the way to the loss; only the first output/,
    );
    const int32 = await rejection(
      forwardModel({ ...base, nodes: [base.nodes[0]!, ['Cast', ['h'], ['y'], { to: 6 }]] }),
    );
    expect(int32.message).toMatch(/casts to data type 6; only the model's float type, int64 and bool/);
  });

  it('accepts inference-mode Dropout with training_mode a constant false: a bool initializer, a bool Constant, a Cast of int 0', () => {
    const off = create(TensorProtoSchema, {
      name: 'off',
      dataType: TensorProto_DataType.BOOL,
      dims: [],
      int32Data: [0],
    });
    const models = [
      forwardModel({ ...base, raw: [off], nodes: [base.nodes[0]!, ['Dropout', ['h', '', 'off'], ['y']]] }),
      forwardModel({
        ...base,
        nodes: [
          base.nodes[0]!,
          ['Constant', [], ['off'], { value: { ...off, name: '' } }],
          ['Dropout', ['h', '', 'off'], ['y']],
        ],
      }),
      forwardModel({
        ...base,
        nodes: [
          base.nodes[0]!,
          ['Constant', [], ['zero'], { value_int: 0 }],
          ['Cast', ['zero'], ['off'], { to: TensorProto_DataType.BOOL }],
          ['Dropout', ['h', '', 'off'], ['y']],
        ],
      }),
    ];
    for (const model of models) {
      const step = buildTrainStepModel(model, { loss: 'mse' });
      expect(step.params.map((p) => p.name)).toEqual(['W']);
    }
  });

  it("rejects a float attribute written as INT (Gemm's alpha: 2), which ORT would refuse at session creation", async () => {
    const e = await rejection(forwardModel({ ...base, nodes: [['Gemm', ['x', 'W'], ['y'], { alpha: 2 }]] }));
    expect(e.message).toMatch(
      /\(Gemm\) has attribute alpha of type INT; ONNX declares it FLOAT \(model-builder: \{ float: 2 \}\)/,
    );
  });

  it('rejects a dimensions key that names no symbolic dimension', async () => {
    const symbolic = { ...base, inputs: { x: ['batch', 3] }, outputs: { y: ['batch', 3] } };
    const e = await rejection(forwardModel(symbolic), { dimensions: { batch: 2, batch_size: 4 } });
    expect(e.message).toMatch(
      /dimensions.batch_size must be a symbolic dimension of the model's inputs \(batch\)/,
    );
  });

  it('buildTrainStepModel throws the same errors synchronously', () => {
    expect(() =>
      buildTrainStepModel(forwardModel({ ...base, nodes: [['Conv', ['x', 'W'], ['y']]] }), { loss: 'mse' }),
    ).toThrow(AccSGDConfigError);
    expect(() => buildTrainStepModel(new Uint8Array([1, 2, 3]), { loss: 'mse' })).toThrow(AccSGDConfigError);
  });
});
