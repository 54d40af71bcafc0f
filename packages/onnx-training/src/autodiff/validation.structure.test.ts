import { AccSGDConfigError } from '@accsgd/core';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import {
  type ModelProto,
  ModelProtoSchema,
  StringStringEntryProtoSchema,
  TensorProto_DataLocation,
  TensorProto_DataType,
  TensorProtoSchema,
} from 'onnx-buf';
import { describe, expect, it } from 'vitest';
import { encodeModel, floatInitializer, int64Initializer, node, valueInfo } from '../model-builder.js';
import type { OrtModule } from '../runtime.js';
import { type ForwardSpec, forwardModel } from '../test-support/forward-models.js';
import { OnnxTrainer } from '../train-step/onnx-trainer.js';
import { int64Tensor } from './proto.js';

// Issue 18, sections 5 and 6: model bytes that crashed the builder or reached ONNX Runtime, and a
// schema mistake blamed on the node after it. Each is refused with AccSGDConfigError naming the
// thing at fault, before any session exists.

/** An ORT whose sessions cannot be created: proves the checks run before ORT sees the model. */
const noSessions = {
  Tensor: class {},
  InferenceSession: {
    create: () => {
      throw new Error('a session was created before the model was checked');
    },
  },
} as unknown as OrtModule;

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

const base: ForwardSpec = {
  inputs: { x: [2, 3] },
  params: { W: [[3, 3], new Array(9).fill(0.1)] },
  nodes: [
    ['MatMul', ['x', 'W'], ['h']],
    ['Relu', ['h'], ['y']],
  ],
  outputs: { y: [2, 3] },
};

/** The model of `spec` with `change` applied to its decoded proto. */
function edited(spec: ForwardSpec, change: (m: ModelProto) => void): Uint8Array {
  const model = fromBinary(ModelProtoSchema, forwardModel(spec));
  change(model);
  return toBinary(ModelProtoSchema, model);
}

describe('each node is checked against its op schema at the model opset, naming the node at fault', () => {
  // The model of the issue: a ReduceMean with axes as an input at opset 17 (invalid before 18),
  // which OnnxTrainer blamed on the next node: 'graph.node[2] "logits" (Gemm) has an operand that is not 2-D'.
  const reduceMeanModel = (opset: number) =>
    forwardModel({
      inputs: { x: [2, 4, 3] },
      params: { W: [[3, 2], new Array(6).fill(0.1)] },
      ints: { axes: [1] },
      nodes: [
        ['ReduceMean', ['x', 'axes'], ['pooled'], { keepdims: 0 }],
        ['Identity', ['pooled'], ['p']],
        ['Gemm', ['p', 'W'], ['logits']],
      ],
      outputs: { logits: [2, 2] },
      opset,
    });

  it('ReduceMean with axes as an input at opset 17 names the ReduceMean, and says since when', async () => {
    const e = await rejection(reduceMeanModel(17));
    expect(e.field).toBe('graph.node[0] "node0_ReduceMean" (ReduceMean)');
    expect(e.message).toBe(
      'graph.node[0] "node0_ReduceMean" (ReduceMean) has 2 input(s); ReduceMean at opset 17 takes 1 (ReduceMean takes axes as an attribute before opset 18 (as an input from 18)); got "2 inputs"',
    );
    // The same model at opset 18 is valid, and the builder refuses it as OnnxTrainer does.
    await expect(
      OnnxTrainer.create(reduceMeanModel(18), { loss: 'mse', hyperparams: { lr: 0.1 }, ort: noSessions }),
    ).rejects.toThrow('a session was created before the model was checked');
    const build = (opset: number, axes: 'input' | 'attribute') =>
      encodeModel({
        name: 'pool',
        nodes: [
          axes === 'input'
            ? node('ReduceMean', ['x', 'axes'], ['pooled'], { keepdims: 0 })
            : node('ReduceMean', ['x'], ['pooled'], { keepdims: 0, axes: [1] }),
          node('Gemm', ['pooled', 'W'], ['logits']),
        ],
        inputs: [valueInfo('x', [2, 4, 3])],
        outputs: [valueInfo('logits', [2, 2])],
        initializers: [
          floatInitializer('W', [3, 2], new Array(6).fill(0.1)),
          int64Initializer('axes', [1], [1]),
        ],
        opset,
      });
    expect(() => build(17, 'input')).toThrow(/^graph.node\[0\] "pooled" \(ReduceMean\) has 2 input\(s\)/);
    expect(() => build(18, 'attribute')).toThrow(
      /^graph.node\[0\] "pooled" \(ReduceMean\) has attribute axes, which ReduceMean at opset 18 does not define \(it has keepdims, noop_with_empty_axes\); ReduceMean takes axes as an input from opset 18/,
    );
    expect(build(17, 'attribute')).toBeInstanceOf(Uint8Array);
    expect(build(18, 'input')).toBeInstanceOf(Uint8Array);
  });

  it('refuses an unknown attribute, an attribute of the wrong type, a missing required one, too many outputs, an op newer than the opset', async () => {
    const one = (spec: ForwardSpec['nodes'][number], opset = 17) =>
      rejection(forwardModel({ ...base, nodes: [base.nodes[0]!, spec], opset }));
    expect((await one(['Relu', ['h'], ['y'], { alpha: 1 }])).message).toMatch(
      /^graph.node\[1\] "node1_Relu" \(Relu\) has attribute alpha, which Relu at opset 17 does not define \(it has none\)/,
    );
    expect((await one(['Softmax', ['h'], ['y'], { axis: { float: 1.5 } }])).message).toMatch(
      /^graph.node\[1\] "node1_Softmax" \(Softmax\) has attribute axis of type FLOAT; ONNX declares it INT/,
    );
    expect((await one(['Cast', ['h'], ['y']])).message).toMatch(/\(Cast\) lacks its required attribute to/);
    expect((await one(['Relu', ['h'], ['y', 'z']])).message).toMatch(
      /\(Relu\) has 2 output\(s\); Relu at opset 17 has 1/,
    );
    expect((await one(['Gelu', ['h'], ['y']])).message).toMatch(
      /\(Gelu\) uses Gelu, which ai.onnx defines from opset 20; the model declares opset 17/,
    );
  });
});

describe('tensors in the model bytes', () => {
  const floatRaw = (name: string, dims: bigint[], bytes: number) =>
    create(TensorProtoSchema, {
      name,
      dataType: TensorProto_DataType.FLOAT,
      dims,
      rawData: new Uint8Array(bytes) as Uint8Array<ArrayBuffer>,
    });

  it('an initializer whose raw_data does not match its dims, and dims of 2^40 (a RangeError before)', async () => {
    const short = await rejection(forwardModel({ ...base, params: {}, raw: [floatRaw('W', [3n, 3n], 20)] }));
    expect(short.message).toBe(
      'initializer "W" raw_data must be 36 bytes (9 FLOAT values for dims [3,3]); got "20 bytes"',
    );
    const huge = await rejection(forwardModel({ ...base, params: {}, raw: [floatRaw('W', [2n ** 40n], 4)] }));
    expect(huge.field).toBe('initializer "W" dims');
    expect(huge.message).toMatch(/hold 1099511627776 elements, more than the 1073741824/);
    const negative = await rejection(
      forwardModel({ ...base, params: {}, raw: [floatRaw('W', [-3n, -3n], 36)] }),
    );
    expect(negative.field).toBe('initializer "W" dims[0]');
  });

  const constantOfShape = (shape: number[], value = int64Tensor('v', [1], [1])) =>
    forwardModel({
      ...base,
      ints: { shape },
      nodes: [
        ['ConstantOfShape', ['shape'], ['c'], { value }],
        ['MatMul', ['x', 'W'], ['h0']],
        ['Add', ['h0', 'c'], ['h']],
        ['Relu', ['h'], ['y']],
      ],
    });

  it('ConstantOfShape of [1e5, 1e5] or [-5], int64 or float (40 GB), is refused before anything is allocated', async () => {
    for (const shape of [[1e5, 1e5], [-5]]) {
      const e = await rejection(constantOfShape(shape));
      expect(e.field).toBe('graph.node[0] "node0_ConstantOfShape" (ConstantOfShape)');
    }
    expect((await rejection(constantOfShape([-5]))).message).toMatch(
      /has a shape \[-5\] whose dimension 0 is not a size >= 0/,
    );
    expect((await rejection(constantOfShape([1e5, 1e5]))).message).toMatch(
      /has a shape \[100000,100000\] of 10000000000 elements, more than the 16777216 allowed/,
    );
    const float40GB = await rejection(
      constantOfShape(
        [1e5, 1e5],
        create(TensorProtoSchema, { dataType: TensorProto_DataType.FLOAT, dims: [1n], floatData: [0] }),
      ),
    );
    expect(float40GB.message).toMatch(/of 10000000000 elements, more than the 1073741824 allowed/);
  });

  it('a Constant whose value has dims of 2^40, or raw_data that does not match, names the node', async () => {
    const withConstant = (value: ReturnType<typeof floatRaw>) =>
      forwardModel({ ...base, nodes: [['Constant', [], ['k'], { value }], ...base.nodes] });
    const huge = await rejection(withConstant(floatRaw('', [2n ** 40n], 4)));
    expect(huge.field).toBe('graph.node[0] "node0_Constant" (Constant) attribute value dims');
    const short = await rejection(withConstant(floatRaw('', [4n], 8)));
    expect(short.message).toMatch(
      /^graph.node\[0\] "node0_Constant" \(Constant\) attribute value raw_data must be 16 bytes/,
    );
  });

  it('external data in a Constant (or any attribute) is refused before ORT stats the path', async () => {
    const passwd = create(TensorProtoSchema, {
      dataType: TensorProto_DataType.FLOAT,
      dims: [3n],
      dataLocation: TensorProto_DataLocation.EXTERNAL,
      externalData: [
        create(StringStringEntryProtoSchema, { key: 'location', value: '../../../../etc/passwd' }),
      ],
    });
    const model = forwardModel({
      ...base,
      nodes: [['Constant', [], ['k'], { value: passwd }], ...base.nodes],
    });
    const e = await rejection(model);
    expect(e.message).toBe(
      'graph.node[0] "node0_Constant" (Constant) attribute value uses external data; save the model with its tensors inside it (external files are never read); got "external data at \\"../../../../etc/passwd\\""',
    );
  });
});

describe('names and structure', () => {
  it('an initializer named __proto__ (every step threw a TypeError)', async () => {
    const e = await rejection(
      forwardModel({
        ...base,
        params: { ['__proto__']: [[3, 3], new Array(9).fill(0.1)] } as never,
        nodes: [
          ['MatMul', ['x', '__proto__'], ['h']],
          ['Relu', ['h'], ['y']],
        ],
      }),
    );
    expect(e.field).toBe('initializer "__proto__"');
  });

  it('duplicate node outputs, duplicate graph inputs, duplicate initializers, IR version 99', async () => {
    const twice = await rejection(
      forwardModel({
        ...base,
        nodes: [
          ['MatMul', ['x', 'W'], ['h']],
          ['Relu', ['h'], ['h']],
          ['Relu', ['h'], ['y']],
        ],
      }),
    );
    expect(twice.message).toMatch(
      /^graph.node\[1\] "node1_Relu" \(Relu\) writes "h", which another node writes/,
    );
    const input = await rejection(edited(base, (m) => m.graph!.input.push(m.graph!.input[0]!)));
    expect(input.message).toMatch(/^input "x" is listed twice/);
    const init = await rejection(edited(base, (m) => m.graph!.initializer.push(m.graph!.initializer[0]!)));
    expect(init.message).toMatch(/^initializer "W" is defined twice/);
    const overwrite = await rejection(
      forwardModel({
        ...base,
        nodes: [
          ['MatMul', ['x', 'W'], ['W']],
          ['Relu', ['W'], ['y']],
        ],
      }),
    );
    expect(overwrite.message).toMatch(/writes "W", which is an initializer/);
    const ir = await rejection(edited(base, (m) => (m.irVersion = 99n)));
    expect(ir).toMatchObject({ field: 'model.ir_version', value: 99n });
  });
});

describe('the generated graphs pass the same checks', () => {
  it('train steps of an MLP and a BERT-shaped encoder: every node valid at the emitted opset', async () => {
    const { buildTrainStepModel } = await import('../train-step/train-step-model.js');
    const { checkModelStructure } = await import('./validation.js');
    const { encoderModel, mlpModel } = await import('../test-support/forward-models.js');
    const models: [string, Uint8Array, Record<string, unknown>][] = [
      ['mlp', mlpModel({ batch: 4, inF: 5, hidden: 6, classes: 3 }), { loss: 'softmax-cross-entropy' }],
      ['encoder', encoderModel({ batch: 2, seq: 4 }), { loss: 'softmax-cross-entropy' }],
    ];
    for (const [name, bytes, options] of models) {
      const step = fromBinary(ModelProtoSchema, buildTrainStepModel(bytes, options as never).model);
      const opset = Number(step.opsetImport.find((o) => o.domain === '')!.version);
      expect(() => checkModelStructure(step, opset), name).not.toThrow();
      expect(step.graph!.node.length, name).toBeGreaterThan(10);
    }
  });

  it('a value whose inferred size cannot be allocated (an Expand to [1e5, 1e5, 2, 3]) names its node', async () => {
    const e = await rejection(
      forwardModel({
        ...base,
        ints: { big: [1e5, 1e5, 1, 1] },
        nodes: [
          ['MatMul', ['x', 'W'], ['h0']],
          ['Expand', ['h0', 'big'], ['h1']],
          ['ReduceMean', ['h1'], ['h'], { axes: [0, 1], keepdims: 0 }],
          ['Relu', ['h'], ['y']],
        ],
      }),
    );
    expect(e.message).toMatch(
      /^graph.node\[1\] "node1_Expand" \(Expand\) computes "h1" of shape \[100000,100000,2,3\], more than the 1073741824 elements allowed for one value/,
    );
  });
});
