import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { type ForwardSpec, forwardModel, positive, random } from '../test-support/forward-models.js';
import { type AutodiffOptions, buildGradientModel } from './gradient.js';
import { BACKWARD_RULES } from './rules.js';

/**
 * Every backward rule against central finite differences, in float64 on onnxruntime-node cpu: the
 * forward model is written in float64, buildGradientModel differentiates it (the same code that
 * builds float32 train steps), and the loss output of the same session is evaluated at x +- h.
 *
 * Step h = 1e-5: the central difference's truncation error is h^2/6 |f'''| ~ 2e-11 for these O(1)
 * functions and its rounding error eps |L| / h ~ 2e-16 * 10 / 1e-5 = 2e-10, so an error above
 * TOLERANCE = 1e-7 (relative to max(1, |gradient|)) means a wrong rule, not noise. A wrong rule is
 * off by O(|gradient|) (a missing broadcast sum, a transposed factor). Inputs of Relu are kept away
 * from 0 (|x| >= 0.1 >> h), of Log, Sqrt and Div's denominator in [0.5, 2].
 */
const H = 1e-5;
const TOLERANCE = 1e-7;

interface Case {
  name: string;
  spec: Omit<ForwardSpec, 'double'>;
  /** Inputs to differentiate (all float inputs by default) and their values (random by default). */
  values?: Record<string, number[]>;
  loss?: AutodiffOptions['loss'];
}

const away = (n: number, seed: number) => random(n, seed).map((v) => (v >= 0 ? v + 0.1 : v - 0.1));
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
  { name: 'Neg', spec: unary('Neg', [2, 3]) },
  { name: 'Relu (inputs away from 0)', spec: unary('Relu', [3, 4]), values: { a: away(12, 15) } },
  { name: 'Tanh', spec: unary('Tanh', [3, 4]) },
  { name: 'Sigmoid', spec: unary('Sigmoid', [3, 4]) },
  { name: 'Exp', spec: unary('Exp', [3, 4]) },
  { name: 'Log', spec: unary('Log', [3, 4]), values: { a: positive(12, 16) } },
  { name: 'Sqrt', spec: unary('Sqrt', [3, 4]), values: { a: positive(12, 17) } },
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
    `[finite differences] worst error ${worst[0]?.error.toExponential(2)} (${worst[0]?.name}); tolerance ${TOLERANCE}`,
  );
});

describe('backward rules against central finite differences (float64, onnxruntime-node cpu)', () => {
  it('covers every op with a backward rule', () => {
    const ops = new Set(cases.flatMap((c) => c.spec.nodes.map((n) => n[0])));
    for (const op of Object.keys(BACKWARD_RULES)) expect(ops, op).toContain(op);
  });

  for (const [k, c] of cases.entries()) {
    it(c.name, async () => {
      const bytes = forwardModel({ ...c.spec, double: true });
      const names = Object.keys(c.spec.inputs);
      const gm = buildGradientModel(bytes, { loss: c.loss ?? 'mse', inputs: names, trainable: [] });
      const session = await ort.InferenceSession.create(gm.model, { executionProviders: ['cpu'] });
      const values = new Map<string, Float64Array>();
      gm.inputs.forEach((input, j) => {
        const n = input.shape.reduce((a, b) => a * b, 1);
        const given = c.values?.[input.name];
        const data =
          input.name === gm.labels?.name && c.loss === 'softmax-cross-entropy'
            ? positive(n, 100 + k, 0, 1) // soft labels
            : (given ?? random(n, 1000 * k + j + 1));
        values.set(input.name, Float64Array.from(data));
      });
      const run = async () => {
        const feeds: Record<string, ort.Tensor> = {};
        for (const input of gm.inputs)
          feeds[input.name] = new ort.Tensor('float64', values.get(input.name)!, input.shape);
        return session.run(feeds);
      };
      const out = await run();
      let caseWorst = 0;
      for (const name of names) {
        const analytic = out[gm.gradients.get(name)!]!.data as Float64Array;
        const x = values.get(name)!;
        expect(analytic.length).toBe(x.length);
        for (let i = 0; i < x.length; i++) {
          const saved = x[i]!;
          x[i] = saved + H;
          const plus = ((await run())[gm.loss]!.data as Float64Array)[0]!;
          x[i] = saved - H;
          const minus = ((await run())[gm.loss]!.data as Float64Array)[0]!;
          x[i] = saved;
          const numeric = (plus - minus) / (2 * H);
          const error = Math.abs(analytic[i]! - numeric) / Math.max(1, Math.abs(analytic[i]!));
          caseWorst = Math.max(caseWorst, error);
          expect(
            error,
            `${name}[${i}]: autodiff ${analytic[i]} vs finite difference ${numeric}`,
          ).toBeLessThan(TOLERANCE);
        }
      }
      worst.push({ name: c.name, error: caseWorst });
      await session.release();
    });
  }
});
