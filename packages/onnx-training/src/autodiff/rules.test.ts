import { TensorProto_DataType } from 'onnx-buf';
import { afterAll, describe, expect, it } from 'vitest';
import { type Case, checkAgainstFiniteDifferences, TOLERANCE } from '../test-support/finite-differences.js';
import { positive, random } from '../test-support/forward-models.js';
import { OP_MODULES } from './ops/index.js';
import { BACKWARD_RULES } from './rules.js';

const unary = (op: string, shape: number[], attrs?: Record<string, number>): Case['spec'] => ({
  inputs: { a: shape },
  nodes: [[op, ['a'], ['y'], attrs]],
  outputs: { y: shape },
});
const binary = (op: string, a: number[], b: number[], y: number[]): Case['spec'] => ({
  inputs: { a, b },
  nodes: [[op, ['a', 'b'], ['y']]],
  outputs: { y },
});

const cases: Case[] = [
  { name: 'MatMul 2-D', spec: binary('MatMul', [3, 4], [4, 5], [3, 5]) },
  {
    name: 'MatMul batched A, 2-D B (B broadcast over the batch)',
    spec: binary('MatMul', [2, 3, 4], [4, 5], [2, 3, 5]),
  },
  {
    name: 'MatMul both batched, broadcast [2,1] x [3]',
    spec: binary('MatMul', [2, 1, 3, 4], [3, 4, 2], [2, 3, 3, 2]),
  },
  { name: 'MatMul 1-D x 2-D', spec: binary('MatMul', [4], [4, 5], [5]) },
  { name: 'MatMul 2-D x 1-D', spec: binary('MatMul', [3, 4], [4], [3]) },
  {
    name: 'Gemm alpha, beta, C [5]',
    spec: {
      inputs: { a: [3, 4], b: [4, 5], c: [5] },
      nodes: [['Gemm', ['a', 'b', 'c'], ['y'], { alpha: { float: 0.7 }, beta: { float: -1.3 } }]],
      outputs: { y: [3, 5] },
    },
  },
  {
    name: 'Gemm transA, C [3,1]',
    spec: {
      inputs: { a: [4, 3], b: [4, 5], c: [3, 1] },
      nodes: [['Gemm', ['a', 'b', 'c'], ['y'], { transA: 1, alpha: { float: 1.5 } }]],
      outputs: { y: [3, 5] },
    },
  },
  {
    name: 'Gemm transB, no C',
    spec: {
      inputs: { a: [3, 4], b: [5, 4] },
      nodes: [['Gemm', ['a', 'b'], ['y'], { transB: 1 }]],
      outputs: { y: [3, 5] },
    },
  },
  {
    name: 'Gemm transA transB, C [1,5]',
    spec: {
      inputs: { a: [4, 3], b: [5, 4], c: [1, 5] },
      nodes: [['Gemm', ['a', 'b', 'c'], ['y'], { transA: 1, transB: 1, beta: { float: 0.5 } }]],
      outputs: { y: [3, 5] },
    },
  },
  { name: 'Add broadcast [2,3,4] + [3,1]', spec: binary('Add', [2, 3, 4], [3, 1], [2, 3, 4]) },
  { name: 'Add broadcast [4] + [2,3,4]', spec: binary('Add', [4], [2, 3, 4], [2, 3, 4]) },
  { name: 'Sub broadcast [2,3,4] - [1,3,1]', spec: binary('Sub', [2, 3, 4], [1, 3, 1], [2, 3, 4]) },
  { name: 'Sub broadcast [] - [2,3]', spec: binary('Sub', [], [2, 3], [2, 3]) },
  { name: 'Mul broadcast [2,1,4] * [3,1]', spec: binary('Mul', [2, 1, 4], [3, 1], [2, 3, 4]) },
  { name: 'Mul broadcast [2,3] * []', spec: binary('Mul', [2, 3], [], [2, 3]) },
  {
    name: 'Div broadcast [2,3,4] / [4]',
    spec: binary('Div', [2, 3, 4], [4], [2, 3, 4]),
    values: { a: random(24, 11), b: positive(4, 12) },
  },
  {
    name: 'Div broadcast [3,1] / [2,3,4]',
    spec: binary('Div', [3, 1], [2, 3, 4], [2, 3, 4]),
    values: { a: random(3, 13), b: positive(24, 14) },
  },
  { name: 'Softmax (default axis -1)', spec: unary('Softmax', [2, 3, 4]) },
  { name: 'Softmax axis 1', spec: unary('Softmax', [2, 3, 4], { axis: 1 }) },
  {
    name: 'ReduceSum axes [1] keepdims 0 (opset 17: axes input)',
    spec: {
      inputs: { a: [2, 3, 4] },
      ints: { axes: [1] },
      nodes: [['ReduceSum', ['a', 'axes'], ['y'], { keepdims: 0 }]],
      outputs: { y: [2, 4] },
    },
  },
  {
    name: 'ReduceSum all axes, keepdims 1',
    spec: { inputs: { a: [2, 3, 4] }, nodes: [['ReduceSum', ['a'], ['y']]], outputs: { y: [1, 1, 1] } },
  },
  {
    name: 'ReduceMean axes [0, -1] keepdims 0 (opset 17: axes attribute)',
    spec: {
      inputs: { a: [2, 3, 4] },
      nodes: [['ReduceMean', ['a'], ['y'], { axes: [0, -1], keepdims: 0 }]],
      outputs: { y: [3] },
    },
  },
  {
    name: 'ReduceMean axes [1] keepdims 1 (opset 18: axes input)',
    spec: {
      opset: 18,
      inputs: { a: [2, 3, 4] },
      ints: { axes: [1] },
      nodes: [['ReduceMean', ['a', 'axes'], ['y']]],
      outputs: { y: [2, 1, 4] },
    },
  },
  {
    name: 'ReduceLogSumExp axes [2]',
    spec: {
      inputs: { a: [2, 3, 4] },
      nodes: [['ReduceLogSumExp', ['a'], ['y'], { axes: [2], keepdims: 0 }]],
      outputs: { y: [2, 3] },
    },
  },
  {
    name: 'Reshape with 0 and -1',
    spec: {
      inputs: { a: [2, 3, 4] },
      ints: { shape: [0, -1] },
      nodes: [['Reshape', ['a', 'shape'], ['y']]],
      outputs: { y: [2, 12] },
    },
  },
  {
    name: 'Transpose perm [2,0,1]',
    spec: {
      inputs: { a: [2, 3, 4] },
      nodes: [['Transpose', ['a'], ['y'], { perm: [2, 0, 1] }]],
      outputs: { y: [4, 2, 3] },
    },
  },
  {
    name: 'Transpose default (reverse)',
    spec: { inputs: { a: [2, 3, 4] }, nodes: [['Transpose', ['a'], ['y']]], outputs: { y: [4, 3, 2] } },
  },
  {
    name: 'Flatten axis 2',
    spec: {
      inputs: { a: [2, 3, 4, 2] },
      nodes: [['Flatten', ['a'], ['y'], { axis: 2 }]],
      outputs: { y: [6, 8] },
    },
  },
  { name: 'Identity', spec: unary('Identity', [2, 3]) },
  {
    name: 'Expand [3,1] to [2,3,4]',
    spec: {
      inputs: { a: [3, 1] },
      ints: { shape: [2, 3, 4] },
      nodes: [['Expand', ['a', 'shape'], ['y']]],
      outputs: { y: [2, 3, 4] },
    },
  },
  {
    name: 'Pow broadcast [3,4] ^ [4] (both differentiated)',
    spec: binary('Pow', [3, 4], [4], [3, 4]),
    values: { a: positive(12, 22), b: random(4, 23, 2) },
  },
  {
    name: 'Pow with an int64 exponent 3',
    spec: {
      inputs: { a: [3, 4] },
      intTensors: { three: [[], [3]] },
      nodes: [['Pow', ['a', 'three'], ['y']]],
      outputs: { y: [3, 4] },
    },
  },
  { name: 'LogSoftmax axis 1', spec: unary('LogSoftmax', [2, 3, 4], { axis: 1 }) },
  {
    name: 'Squeeze axes [1] and Unsqueeze axes [0, 3]',
    spec: {
      inputs: { a: [2, 1, 3] },
      ints: { one: [1], outer: [0, 3] },
      nodes: [
        ['Squeeze', ['a', 'one'], ['s']],
        ['Unsqueeze', ['s', 'outer'], ['y']],
      ],
      outputs: { y: [1, 2, 3, 1] },
    },
  },
  {
    name: 'Concat axis 1 of [2,3] and [2,2] and [2,3] (a used twice)',
    spec: {
      inputs: { a: [2, 3], b: [2, 2] },
      nodes: [['Concat', ['a', 'b', 'a'], ['y'], { axis: 1 }]],
      outputs: { y: [2, 8] },
    },
  },
  {
    name: 'Slice starts [1, -3] ends [big, -1] axes [0, 2]',
    spec: {
      inputs: { a: [3, 2, 5] },
      ints: { starts: [1, -3], ends: [1000, -1], axes: [0, 2] },
      nodes: [['Slice', ['a', 'starts', 'ends', 'axes'], ['y']]],
      outputs: { y: [2, 2, 2] },
    },
  },
  {
    name: 'Cast to the model float type',
    spec: unary('Cast', [2, 3], { to: TensorProto_DataType.DOUBLE }),
  },
  {
    name: 'Where(a > b, a, b) with b broadcast [4]',
    spec: {
      inputs: { a: [3, 4], b: [4] },
      nodes: [
        ['Greater', ['a', 'b'], ['c']],
        ['Where', ['c', 'a', 'b'], ['y']],
      ],
      outputs: { y: [3, 4] },
    },
  },
  {
    name: 'Gather axis 0 (an embedding) with repeated indices [2,3]',
    spec: {
      inputs: { a: [5, 3] },
      intTensors: {
        ids: [
          [2, 3],
          [4, 0, 4, 1, 4, 0],
        ],
      },
      nodes: [['Gather', ['a', 'ids'], ['y']]],
      outputs: { y: [2, 3, 3] },
    },
  },
  {
    name: 'Gather axis 1 with indices [2] (one negative)',
    spec: {
      inputs: { a: [2, 4, 3] },
      intTensors: { ids: [[2], [-1, 1]] },
      nodes: [['Gather', ['a', 'ids'], ['y'], { axis: 1 }]],
      outputs: { y: [2, 2, 3] },
    },
  },
  {
    name: 'Gather axis 1 with a scalar index (first-token pooling)',
    spec: {
      inputs: { a: [2, 4, 3] },
      intTensors: { first: [[], [0]] },
      nodes: [['Gather', ['a', 'first'], ['y'], { axis: 1 }]],
      outputs: { y: [2, 3] },
    },
  },
  {
    name: 'LayerNormalization axis -1 with Scale and B',
    spec: {
      inputs: { a: [2, 3, 4], scale: [4], bias: [4] },
      nodes: [['LayerNormalization', ['a', 'scale', 'bias'], ['y'], { epsilon: { float: 1e-5 } }]],
      outputs: { y: [2, 3, 4] },
    },
  },
  {
    name: 'LayerNormalization axis 1 over [3,4], Scale [3,4], no B',
    spec: {
      inputs: { a: [2, 3, 4], scale: [3, 4] },
      nodes: [['LayerNormalization', ['a', 'scale'], ['y'], { axis: 1 }]],
      outputs: { y: [2, 3, 4] },
    },
  },
  {
    name: 'Dropout in inference mode (the identity) and a shape computed by Shape/Gather/Unsqueeze/Concat',
    spec: {
      inputs: { a: [2, 3, 4] },
      ints: { zero: [0], minus: [-1] },
      intTensors: { first: [[], [0]] },
      nodes: [
        ['Dropout', ['a'], ['d']],
        ['Shape', ['d'], ['s']],
        ['Gather', ['s', 'first'], ['n']],
        ['Unsqueeze', ['n', 'zero'], ['n1']],
        ['Concat', ['n1', 'minus'], ['target'], { axis: 0 }],
        ['Reshape', ['d', 'target'], ['y']],
      ],
      outputs: { y: [2, 12] },
    },
  },
  {
    name: 'a value used three times: y = a * tanh(a) + a (gradients accumulate)',
    spec: {
      inputs: { a: [3, 4] },
      nodes: [
        ['Tanh', ['a'], ['t']],
        ['Mul', ['a', 't'], ['m']],
        ['Add', ['m', 'a'], ['y']],
      ],
      outputs: { y: [3, 4] },
    },
  },
  {
    name: "loss 'scalar': y = ReduceSum(a * b) (keepdims 0)",
    spec: {
      inputs: { a: [3, 4], b: [4] },
      nodes: [
        ['Mul', ['a', 'b'], ['m']],
        ['ReduceSum', ['m'], ['y'], { keepdims: 0 }],
      ],
      outputs: { y: [] },
    },
    loss: 'scalar',
  },
  {
    name: "loss 'softmax-cross-entropy' over logits a @ b (labels soft)",
    spec: binary('MatMul', [5, 3], [3, 4], [5, 4]),
    loss: 'softmax-cross-entropy',
  },
];

const worst: { name: string; error: number }[] = [];
afterAll(() => {
  worst.sort((a, b) => b.error - a.error);
  console.log(
    `[finite differences, float64] worst error ${worst[0]?.error.toExponential(2)} (${worst[0]?.name}); tolerance ${TOLERANCE}`,
  );
});

describe('backward rules against central finite differences (float64, onnxruntime-node cpu)', () => {
  it('covers every op with a backward rule', () => {
    const ops = new Set(cases.flatMap((c) => c.spec.nodes.map((n) => n[0])));
    // The op modules' rules are checked beside them (ops/ops.test.ts).
    for (const op of Object.keys(BACKWARD_RULES)) if (!(op in OP_MODULES)) expect(ops, op).toContain(op);
  });

  for (const [k, c] of cases.entries()) {
    it(c.name, async () => {
      const caseWorst = await checkAgainstFiniteDifferences(c, k);
      worst.push({ name: c.name, error: caseWorst });
    });
  }
});
