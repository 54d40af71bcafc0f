import { afterAll, describe, expect, it } from 'vitest';
import { type Case, checkAgainstFiniteDifferences } from '../../test-support/finite-differences.js';
import { positive, random } from '../../test-support/forward-models.js';
import { OP_MODULES } from './index.js';

/**
 * Every op module's backward rule (and its shape inference, through ONNX Runtime running the
 * forward graph) against central finite differences, with the harness rules.test.ts uses: float64
 * where ONNX Runtime's CPU has float64 kernels, float32 where it has only float (Conv,
 * ConvTranspose, the pools, whose gradients are ConvTransposes as well; HardSigmoid, HardSwish,
 * Elu and Softplus, with rules.test.ts's float32 step and tolerance).
 *
 * float32 cases are piecewise quadratic in every input under the mse loss (convolutions and pools
 * are linear, the max picks one input), so the central difference has no truncation error and a
 * large step h = 0.05 is exact up to rounding: float32's eps * |L| / h ~ 6e-8 * 10 / 0.05 ~ 1e-5
 * relative; a tolerance of 1e-3 leaves room for that (measured: 6.6e-5 at most); a wrong rule (a transposed kernel, a
 * window off by one, a missing group) is off by O(|gradient|) ~ 0.1-1. MaxPool's inputs are
 * distinct values at least 0.04 apart (`spread`), so a step of 0.01 never changes a window's max.
 */
const CONV_STEP = { h: 0.05, tolerance: 1e-3 };
const POOL_STEP = { h: 0.01, tolerance: 1e-3 };

/** n distinct values 0.04 apart in a seeded order, centred on 0 (no ties, no max flips at h 0.01). */
function spread(n: number, seed: number): number[] {
  const order = random(n, seed)
    .map((v, i) => [v, i] as const)
    .sort((a, b) => a[0] - b[0]);
  const values = new Array<number>(n);
  order.forEach(([, i], rank) => {
    values[i] = (rank - n / 2) * 0.04;
  });
  return values;
}
const away = (n: number, seed: number, scale = 1) =>
  random(n, seed, scale).map((v) => (v >= 0 ? v + 0.1 : v - 0.1));

const conv = (
  name: string,
  x: number[],
  w: number[],
  y: number[],
  attrs: Record<string, unknown>,
  bias = true,
): Case => ({
  name,
  spec: {
    inputs: { x, w, ...(bias ? { b: [w[0]!] } : {}) },
    nodes: [['Conv', bias ? ['x', 'w', 'b'] : ['x', 'w'], ['y'], attrs as never]],
    outputs: { y },
  },
  float32: true,
  step: CONV_STEP,
});

const pool = (name: string, op: string, x: number[], y: number[], attrs: Record<string, unknown>): Case => {
  const n = x.reduce((a, b) => a * b, 1);
  return {
    name,
    spec: { inputs: { x }, nodes: [[op, ['x'], ['y'], attrs as never]], outputs: { y } },
    values: { x: spread(n, n) },
    float32: true,
    step: POOL_STEP,
  };
};

const unary = (op: string, shape: number[], attrs?: Record<string, unknown>): Case['spec'] => ({
  inputs: { x: shape },
  nodes: [[op, ['x'], ['y'], attrs as never]],
  outputs: { y: shape },
});

const cases: Case[] = [
  // unary.ts (moved here with their rules from rules.ts)
  { name: 'Neg', spec: unary('Neg', [2, 3]) },
  { name: 'Relu (inputs away from 0)', spec: unary('Relu', [3, 4]), values: { x: away(12, 15) } },
  { name: 'Tanh', spec: unary('Tanh', [3, 4]) },
  { name: 'Sigmoid', spec: unary('Sigmoid', [3, 4]) },
  { name: 'Exp', spec: unary('Exp', [3, 4]) },
  { name: 'Log', spec: unary('Log', [3, 4]), values: { x: positive(12, 16) } },
  { name: 'Sqrt', spec: unary('Sqrt', [3, 4]), values: { x: positive(12, 17) } },
  {
    name: 'LeakyRelu alpha 0.2 (inputs away from 0)',
    spec: unary('LeakyRelu', [3, 4], { alpha: { float: 0.2 } } as never),
    values: { x: away(12, 21) },
  },
  { name: 'Erf (float32)', spec: unary('Erf', [3, 4]), float32: true },
  {
    name: 'Gelu (opset 20, exact; float32)',
    spec: { ...unary('Gelu', [3, 4]), opset: 20 },
    float32: true,
  },
  {
    name: "Gelu (opset 20, approximate 'tanh')",
    spec: { ...unary('Gelu', [3, 4], { approximate: 'tanh' } as never), opset: 20 },
  },
  conv('Conv 2-D, pads 1, bias', [2, 3, 5, 5], [4, 3, 3, 3], [2, 4, 5, 5], { pads: [1, 1, 1, 1] }),
  conv(
    'Conv 2-D, strides 2, dilations 2, asymmetric pads, no bias',
    [1, 2, 7, 8],
    [3, 2, 2, 3],
    [1, 3, 3, 4],
    { strides: [2, 2], dilations: [2, 2], pads: [0, 1, 1, 2] },
    false,
  ),
  conv('Conv 2-D, group 2, strides 2', [2, 4, 5, 5], [6, 2, 3, 3], [2, 6, 3, 3], {
    group: 2,
    strides: [2, 2],
    pads: [1, 1, 1, 1],
  }),
  conv(
    'Conv depthwise (group 3, multiplier 2), stride 2, rows the windows never reach',
    [1, 3, 6, 6],
    [6, 1, 3, 3],
    [1, 6, 2, 2],
    {
      group: 3,
      strides: [2, 2],
    },
  ),
  conv('Conv 1-D, stride 2, dilation 2, auto_pad SAME_UPPER', [2, 3, 9], [2, 3, 3], [2, 2, 5], {
    strides: [2],
    dilations: [2],
    auto_pad: 'SAME_UPPER',
  }),
  conv(
    'Conv 2-D, auto_pad SAME_LOWER, strides [2, 1], no attributes but those',
    [1, 2, 5, 4],
    [2, 2, 2, 3],
    [1, 2, 3, 4],
    {
      strides: [2, 1],
      auto_pad: 'SAME_LOWER',
    },
  ),
  conv('Conv 2-D, auto_pad VALID, 1x1 kernel', [2, 3, 3, 3], [2, 3, 1, 1], [2, 2, 3, 3], {
    auto_pad: 'VALID',
  }),
  {
    name: 'ConvTranspose, strides 2, output_padding 1, pads 1, bias',
    spec: {
      inputs: { x: [1, 3, 3, 3], w: [3, 2, 3, 3], b: [2] },
      nodes: [
        [
          'ConvTranspose',
          ['x', 'w', 'b'],
          ['y'],
          { strides: [2, 2], pads: [1, 1, 1, 1], output_padding: [1, 1] },
        ],
      ],
      outputs: { y: [1, 2, 6, 6] },
    },
    float32: true,
    step: CONV_STEP,
  },
  {
    name: 'ConvTranspose 1-D, group 2, dilation 2, no bias',
    spec: {
      inputs: { x: [2, 4, 5], w: [4, 3, 2] },
      nodes: [['ConvTranspose', ['x', 'w'], ['y'], { group: 2, dilations: [2] }]],
      outputs: { y: [2, 6, 7] },
    },
    float32: true,
    step: CONV_STEP,
  },
  pool('MaxPool 3x3, stride 2, pads 1 (resnet18)', 'MaxPool', [2, 2, 7, 7], [2, 2, 4, 4], {
    kernel_shape: [3, 3],
    strides: [2, 2],
    pads: [1, 1, 1, 1],
  }),
  pool('MaxPool 3x3, stride 2, ceil_mode (squeezenet)', 'MaxPool', [1, 2, 6, 6], [1, 2, 3, 3], {
    kernel_shape: [3, 3],
    strides: [2, 2],
    ceil_mode: 1,
  }),
  pool('MaxPool 1-D, kernel 2, dilation 2', 'MaxPool', [2, 3, 9], [2, 3, 7], {
    kernel_shape: [2],
    dilations: [2],
  }),
  pool('AveragePool 3x3, stride 2, pads 1, count_include_pad', 'AveragePool', [1, 2, 6, 6], [1, 2, 3, 3], {
    kernel_shape: [3, 3],
    strides: [2, 2],
    pads: [1, 1, 1, 1],
    count_include_pad: 1,
  }),
  pool(
    'AveragePool 3x3, stride 2, pads 1, ceil_mode, pads not counted',
    'AveragePool',
    [1, 2, 6, 6],
    [1, 2, 4, 4],
    {
      kernel_shape: [3, 3],
      strides: [2, 2],
      pads: [1, 1, 1, 1],
      ceil_mode: 1,
    },
  ),
  pool(
    'AveragePool 2x2, ceil_mode, count_include_pad (a window past the end)',
    'AveragePool',
    [1, 1, 5, 5],
    [1, 1, 3, 3],
    {
      kernel_shape: [2, 2],
      strides: [2, 2],
      ceil_mode: 1,
      count_include_pad: 1,
    },
  ),
  pool('GlobalAveragePool', 'GlobalAveragePool', [2, 3, 4, 5], [2, 3, 1, 1], {}),
  pool('GlobalMaxPool', 'GlobalMaxPool', [2, 3, 4, 5], [2, 3, 1, 1], {}),
  {
    name: 'BatchNormalization, inference form (every input differentiated)',
    spec: {
      inputs: { x: [2, 3, 2, 2], scale: [3], bias: [3], mean: [3], variance: [3] },
      nodes: [
        [
          'BatchNormalization',
          ['x', 'scale', 'bias', 'mean', 'variance'],
          ['y'],
          { epsilon: { float: 1e-3 } },
        ],
      ],
      outputs: { y: [2, 3, 2, 2] },
    },
    values: { variance: positive(3, 41) },
  },
  {
    name: 'BatchNormalization, training_mode=1 (batch statistics; running outputs computed, not differentiated)',
    spec: {
      inputs: { x: [3, 2, 2, 2], scale: [2], bias: [2], mean: [2], variance: [2] },
      nodes: [
        [
          'BatchNormalization',
          ['x', 'scale', 'bias', 'mean', 'variance'],
          ['y', 'running_mean', 'running_var'],
          { training_mode: 1, momentum: { float: 0.8 } },
        ],
      ],
      outputs: { y: [3, 2, 2, 2] },
    },
    values: { variance: positive(2, 42) },
  },
  {
    name: 'BatchNormalization, training_mode=1 on [N, C] (BatchNorm1d)',
    spec: {
      inputs: { x: [4, 3], scale: [3], bias: [3], mean: [3], variance: [3] },
      nodes: [
        ['BatchNormalization', ['x', 'scale', 'bias', 'mean', 'variance'], ['y'], { training_mode: 1 }],
      ],
      outputs: { y: [4, 3] },
    },
    values: { variance: positive(3, 43) },
  },
  {
    name: 'Clip with min and max inputs (both differentiated)',
    spec: {
      inputs: { x: [3, 4], lo: [], hi: [] },
      nodes: [['Clip', ['x', 'lo', 'hi'], ['y']]],
      outputs: { y: [3, 4] },
    },
    values: { x: random(12, 44, 2), lo: [-0.55], hi: [0.65] },
  },
  {
    name: 'Clip with a max only (ReLU6-like, min omitted)',
    spec: {
      inputs: { x: [3, 4] },
      params: { six: [[], [0.45]] },
      nodes: [['Clip', ['x', '', 'six'], ['y']]],
      outputs: { y: [3, 4] },
    },
  },
  {
    name: 'HardSigmoid alpha 0.3 beta 0.4',
    spec: unary('HardSigmoid', [3, 4], { alpha: { float: 0.3 }, beta: { float: 0.4 } }),
    // Away from the kinks at alpha x + beta = 0 and 1 (x = -4/3 and 2) by more than the step.
    values: { x: [-3, -2, -1.2, -0.5, 0, 0.4, 1, 1.5, 1.9, 2.3, 3, -1.5] },
    float32: true,
  },
  { name: 'HardSwish', spec: unary('HardSwish', [3, 5]), values: { x: random(15, 46, 5) }, float32: true },
  { name: 'Abs (inputs away from 0)', spec: unary('Abs', [3, 4]), values: { x: away(12, 47) } },
  { name: 'Reciprocal', spec: unary('Reciprocal', [3, 4]), values: { x: positive(12, 48) } },
  {
    name: 'Elu alpha 0.7 (inputs away from 0)',
    spec: unary('Elu', [3, 4], { alpha: { float: 0.7 } }),
    values: { x: away(12, 49, 2) },
    float32: true,
  },
  { name: 'Softplus', spec: unary('Softplus', [3, 4]), values: { x: random(12, 50, 3) }, float32: true },
  {
    name: 'Max of three, broadcast [2,3], [3], [2,1]',
    spec: {
      inputs: { a: [2, 3], b: [3], c: [2, 1] },
      nodes: [['Max', ['a', 'b', 'c'], ['y']]],
      outputs: { y: [2, 3] },
    },
  },
  {
    name: 'Min of two, broadcast [2,3] and [1,3]',
    spec: { inputs: { a: [2, 3], b: [1, 3] }, nodes: [['Min', ['a', 'b'], ['y']]], outputs: { y: [2, 3] } },
  },
  {
    name: 'ReduceMax axes [1] keepdims 0 (opset 17: axes attribute)',
    spec: {
      inputs: { x: [2, 4, 3] },
      nodes: [['ReduceMax', ['x'], ['y'], { axes: [1], keepdims: 0 }]],
      outputs: { y: [2, 3] },
    },
  },
  {
    name: 'ReduceMax over all axes, keepdims 1 (opset 18)',
    spec: { opset: 18, inputs: { x: [2, 3] }, nodes: [['ReduceMax', ['x'], ['y']]], outputs: { y: [1, 1] } },
  },
  {
    name: 'Pad constant with a differentiated constant_value, negative pads (a crop)',
    spec: {
      inputs: { x: [3, 4], v: [] },
      ints: { pads: [1, -1, 2, 1] },
      nodes: [['Pad', ['x', 'pads', 'v'], ['y']]],
      outputs: { y: [6, 4] },
    },
  },
  {
    name: 'Pad with axes [-1] (opset 18), default constant 0',
    spec: {
      opset: 18,
      inputs: { x: [2, 3] },
      ints: { pads: [2, 1], axes: [-1] },
      nodes: [['Pad', ['x', 'pads', '', 'axes'], ['y']]],
      outputs: { y: [2, 6] },
    },
  },
  {
    name: 'Split axis 1 into [2, 4] (both used: y = Concat(s0 * s0, s1))',
    spec: {
      inputs: { x: [2, 6] },
      ints: { split: [2, 4] },
      nodes: [
        ['Split', ['x', 'split'], ['s0', 's1'], { axis: 1 }],
        ['Mul', ['s0', 's0'], ['sq']],
        ['Concat', ['sq', 's1'], ['y'], { axis: 1 }],
      ],
      outputs: { y: [2, 6] },
    },
  },
  {
    name: 'Split in three equal parts, one unused',
    spec: {
      inputs: { x: [6, 2] },
      nodes: [
        ['Split', ['x'], ['s0', 's1', 's2']],
        ['Sub', ['s0', 's2'], ['y']],
      ],
      outputs: { y: [2, 2] },
    },
  },
  {
    name: 'Tile [2,1,3] by [1,2,2]',
    spec: {
      inputs: { x: [2, 1, 3] },
      ints: { repeats: [1, 2, 2] },
      nodes: [['Tile', ['x', 'repeats'], ['y']]],
      outputs: { y: [2, 2, 6] },
    },
  },
];

const worst: { name: string; error: number; type: string }[] = [];
afterAll(() => {
  for (const type of ['float64', 'float32, default step', 'float32, conv/pool step']) {
    const of = worst.filter((w) => w.type === type).sort((a, b) => b.error - a.error);
    console.log(
      `[op modules, finite differences, ${type}] worst error ${of[0]?.error.toExponential(2)} (${of[0]?.name}), ${of.length} cases`,
    );
  }
});

describe('op modules: backward rules against central finite differences (onnxruntime-node cpu)', () => {
  it('covers every op module', () => {
    const ops = new Set(cases.flatMap((c) => c.spec.nodes.map((n) => n[0])));
    for (const op of Object.keys(OP_MODULES)) expect(ops, op).toContain(op);
  });

  for (const [k, c] of cases.entries()) {
    it(c.name, async () => {
      const type = !c.float32 ? 'float64' : c.step ? 'float32, conv/pool step' : 'float32, default step';
      worst.push({ name: c.name, error: await checkAgainstFiniteDifferences(c, 500 + k), type });
    });
  }
});
