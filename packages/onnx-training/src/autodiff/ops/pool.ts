import { TensorProto_DataType } from 'onnx-buf';
import type { GraphBuilder, ShapeContext } from '../graph.js';
import { size } from '../graph.js';
import { intAttribute, intsAttribute } from '../proto.js';
import type { RuleContext } from '../rules.js';
import { hint, one, x, y, zero } from './helpers.js';
import type { OpFamily } from './op.js';
import { checkedWindow, scatterBack, span, type Window, windowOf } from './window.js';

function poolShapes(c: ShapeContext) {
  const xs = c.floatInput(0);
  if (xs.length < 3) c.fail(`has an input of shape [${xs}]; expected [N, C, ...spatial]`);
  const kernel = intsAttribute(c.node, 'kernel_shape');
  if (!kernel || kernel.length !== xs.length - 2 || kernel.some((k) => !Number.isInteger(k) || k < 1))
    c.fail(`has kernel_shape [${kernel ?? ''}]; expected ${xs.length - 2} positive sizes`);
  return { xs, window: windowOf(c, xs.slice(2), kernel) };
}

const poolWindow = (c: RuleContext) => {
  const xs = c.g.shape(x(c, 0));
  return { xs, w: checkedWindow(c.node, xs.slice(2), intsAttribute(c.node, 'kernel_shape')!) };
};

/** Every kernel offset in row-major order (the order in which ORT and PyTorch scan a window). */
function offsets(kernel: readonly number[]): number[][] {
  let all: number[][] = [[]];
  for (const k of kernel) all = all.flatMap((o) => Array.from({ length: k }, (_, i) => [...o, i]));
  return all;
}

/** Kernels [K, 1, ...kernel] where kernel q is one-hot at offset q. */
function oneHotKernels(g: GraphBuilder, kernel: readonly number[]): string {
  const k = size(kernel);
  const values = new Array<number>(k * k).fill(0);
  for (let q = 0; q < k; q++) values[q * k + q] = 1;
  return g.floatConstant(values, [k, 1, ...kernel]);
}

/**
 * Sends per-window values back to the input positions: t [N, C, K, ...out] with the channels
 * folded into the batch ([N * C, K, ...out]) through one ungrouped ConvTranspose with `kernels`
 * [K, 1, ...kernel] (window.ts scatterBack), then [N, C, ...in]. Ungrouped because ORT 1.30's
 * WebGPU ConvTranspose computes wrong values for groups of 2 or 4 input channels (measured off by
 * 1.6 against the CPU EP; 2x2 pooling has K = 4).
 */
function scatterWindows(
  g: GraphBuilder,
  t: string,
  kernels: string,
  xs: readonly number[],
  w: Window,
  name: string,
): string {
  const [n, channels] = [xs[0]!, xs[1]!];
  const k = g.shape(kernels)[0]!;
  const folded = g.reshape(t, [n * channels, k, ...w.out], name);
  const back = scatterBack(g, folded, kernels, 1, w, xs.slice(2), name);
  return g.reshape(back, [...xs], name);
}

const lowest = (g: GraphBuilder) =>
  g.floatType === TensorProto_DataType.DOUBLE ? -Number.MAX_VALUE : -3.4028234663852886e38;

/**
 * MaxPool's gradient: each window's dY goes to the first input equal to its max in row-major
 * order (as ONNX Runtime's and PyTorch's MaxPool pick their index). The input, padded with the
 * lowest float, is sliced once per kernel offset q (strided Slice: the q-th element of every
 * window); Equal with Y marks the max, a running "not yet taken" factor keeps only the first.
 * The K masked dY's, stacked as [N, C, K, ...], go back to their positions in one ConvTranspose
 * with one-hot kernels (scatterWindows). Standard ops that ORT's WebGPU EP
 * runs (MaxPool's Indices output and int64 ScatterND indices would not).
 */
function maxPoolGrad(c: RuleContext): string {
  const g = c.g;
  const h = hint(c, 0);
  const { xs, w } = poolWindow(c);
  const spatial = xs.slice(2);
  const axes = spatial.map((_, i) => i + 2);
  const reach = spatial.map((d, i) =>
    Math.max(w.padsEnd[i]!, (w.out[i]! - 1) * w.strides[i]! + span(w, i) - d - w.padsBegin[i]!),
  );
  const padded =
    w.padsBegin.some((p) => p > 0) || reach.some((p) => p > 0)
      ? g.op(
          'Pad',
          [x(c, 0), g.int64Constant([0, 0, ...w.padsBegin, 0, 0, ...reach]), g.floatConstant([lowest(g)])],
          h,
        )
      : x(c, 0);
  const kernelOffsets = offsets(w.kernel);
  let available = one(g);
  const parts: string[] = [];
  const [n, channels] = [xs[0]!, xs[1]!];
  kernelOffsets.forEach((q, j) => {
    const starts = q.map((k, i) => k * w.dilations[i]!);
    const patch = g.op(
      'Slice',
      [
        padded,
        g.int64Constant(starts),
        g.int64Constant(starts.map((s, i) => s + (w.out[i]! - 1) * w.strides[i]! + 1)),
        g.int64Constant(axes),
        g.int64Constant(w.strides),
      ],
      h,
    );
    const isMax = g.op('Equal', [patch, y(c)], `${h}_is_max`);
    const taken = g.op('Where', [isMax, available, zero(g)], `${h}_taken`);
    if (j < kernelOffsets.length - 1) available = g.op('Sub', [available, taken], `${h}_available`);
    parts.push(g.reshape(g.op('Mul', [c.dy, taken], h), [n, channels, 1, ...w.out], h));
  });
  const k = kernelOffsets.length;
  const stacked = k === 1 ? parts[0]! : g.op('Concat', parts, h, { axis: 2 });
  return scatterWindows(g, stacked, oneHotKernels(g, w.kernel), xs, w, h);
}

/**
 * AveragePool's divisor per output position (static): the window's positions inside the input,
 * or with count_include_pad inside the padded input (a ceil_mode window past the end padding
 * counts only up to it), as ONNX Runtime and PyTorch divide.
 */
function divisors(w: Window, spatial: readonly number[], includePad: boolean): number[] {
  const perAxis = spatial.map((d, i) =>
    Array.from({ length: w.out[i]! }, (_, o) => {
      let count = 0;
      for (let k = 0; k < w.kernel[i]!; k++) {
        const p = o * w.strides[i]! - w.padsBegin[i]! + k * w.dilations[i]!;
        if (includePad ? p < d + w.padsEnd[i]! : p >= 0 && p < d) count++;
      }
      return count;
    }),
  );
  let all = [1];
  for (const counts of perAxis) all = all.flatMap((a) => counts.map((b) => a * b));
  return all;
}

/** AveragePool's gradient: dY / divisor spread uniformly over each window (scatterWindows with ones). */
function averagePoolGrad(c: RuleContext): string {
  const g = c.g;
  const h = hint(c, 0);
  const { xs, w } = poolWindow(c);
  const spatial = xs.slice(2);
  const counts = divisors(w, spatial, intAttribute(c.node, 'count_include_pad', 0) === 1);
  const scaled = g.op(
    'Mul',
    [
      c.dy,
      g.floatConstant(
        counts.map((d) => 1 / d),
        w.out,
      ),
    ],
    h,
  );
  const ones = g.floatConstant(new Array<number>(size(w.kernel)).fill(1), [1, 1, ...w.kernel]);
  return scatterWindows(g, scaled, ones, xs, w, h);
}

const globalShape = (c: ShapeContext) => {
  const xs = c.floatInput(0);
  if (xs.length < 3) c.fail(`has an input of shape [${xs}]; expected [N, C, ...spatial]`);
  return [{ kind: 'float' as const, shape: [xs[0]!, xs[1]!, ...xs.slice(2).map(() => 1)] }];
};

/**
 * dY (kept dims) split evenly among the inputs equal to the max (a subgradient; PyTorch's amax
 * splits ties the same way). Shared by GlobalMaxPool and ReduceMax.
 */
export function maxGrad(c: RuleContext, dyKept: string, yKept: string, axes: readonly number[]): string {
  const g = c.g;
  const h = hint(c, 0);
  const mask = g.op('Where', [g.op('Equal', [x(c, 0), yKept], `${h}_is_max`), one(g), zero(g)], h);
  const count = g.reduce('ReduceSum', mask, axes, true, h);
  return g.op('Mul', [g.op('Div', [dyKept, count], h), mask], h);
}

export const POOL_OPS: OpFamily = {
  MaxPool: {
    infer: (c) => {
      const { xs, window } = poolShapes(c);
      if (intAttribute(c.node, 'storage_order', 0) !== 0 && c.node.output[1])
        c.fail('has storage_order 1 with an Indices output; only row-major indices are supported');
      const shape = [xs[0]!, xs[1]!, ...window.out];
      return [
        { kind: 'float', shape },
        { kind: 'int64', shape: [...shape] },
      ];
    },
    backward: (c) => [maxPoolGrad(c)],
  },
  AveragePool: {
    infer: (c) => {
      const { xs, window } = poolShapes(c);
      return [{ kind: 'float', shape: [xs[0]!, xs[1]!, ...window.out] }];
    },
    backward: (c) => [averagePoolGrad(c)],
  },
  GlobalAveragePool: {
    infer: globalShape,
    // dY / (spatial size), broadcast back over the spatial axes.
    backward: (c) => {
      const xs = c.g.shape(x(c, 0));
      const scaled = c.g.op('Mul', [c.dy, c.g.floatConstant([1 / size(xs.slice(2))])], hint(c, 0));
      return [c.g.op('Expand', [scaled, c.g.int64Constant(xs)], hint(c, 0))];
    },
  },
  GlobalMaxPool: {
    infer: globalShape,
    backward: (c) => {
      const rank = c.g.shape(x(c, 0)).length;
      return [
        maxGrad(
          c,
          c.dy,
          y(c),
          Array.from({ length: rank - 2 }, (_, i) => i + 2),
        ),
      ];
    },
  },
};
