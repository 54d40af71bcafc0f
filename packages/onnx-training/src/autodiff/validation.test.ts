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
    const e = await rejection(
      forwardModel({ ...base, nodes: [base.nodes[0]!, ['LogSoftmax', ['h'], ['y']]] }),
    );
    expect(e.field).toBe('graph.node[1] "node1_LogSoftmax" (LogSoftmax)');
    expect(e.message).toMatch(
      /uses op LogSoftmax, which has no backward rule; supported: Add, Constant, Div, Exp/,
    );
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

  it('an opset outside 13-18, a shape rule violation, an unknown loss or trainable name', async () => {
    expect((await rejection(forwardModel({ ...base, opset: 12 }))).field).toBe('model.opset_import');
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

  it('buildTrainStepModel throws the same errors synchronously', () => {
    expect(() =>
      buildTrainStepModel(forwardModel({ ...base, nodes: [['Erf', ['x'], ['y']]] }), { loss: 'mse' }),
    ).toThrow(AccSGDConfigError);
    expect(() => buildTrainStepModel(new Uint8Array([1, 2, 3]), { loss: 'mse' })).toThrow(AccSGDConfigError);
  });
});
