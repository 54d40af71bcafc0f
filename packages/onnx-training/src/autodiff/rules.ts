import { AccSGDConfigError } from '@accsgd/core';
import type { NodeProto } from 'onnx-buf';
import { describeNode, type GraphBuilder, reduceAxes, sameShape, size, sliceOf } from './graph.js';
import { OP_MODULES } from './ops/index.js';
import { floatAttributeValue, intAttribute, intsAttribute } from './proto.js';

/** What a backward rule is given: the node, its output's gradient, and which inputs need one. */
export interface RuleContext {
  node: NodeProto;
  index: number | undefined;
  g: GraphBuilder;
  /** The gradient of the node's (only) output. */
  dy: string;
  /** Whether input k needs a gradient (is float and depends on something differentiated). */
  needs: (k: number) => boolean;
}

/** A backward rule: the gradient of each input (undefined where none is needed or defined). */
export type BackwardRule = (ctx: RuleContext) => (string | undefined)[];

const x = (c: RuleContext, k: number) => c.node.input[k]!;
const y = (c: RuleContext) => c.node.output[0]!;
const hint = (c: RuleContext, k: number) => `${x(c, k)}_grad`;

/** Swaps the last two axes. */
function transposeLast2(g: GraphBuilder, v: string, name: string): string {
  const rank = g.shape(v).length;
  const perm = [...Array(rank).keys()];
  [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1]!, perm[rank - 2]!];
  return g.op('Transpose', [v], name, { perm });
}

/** dY broadcast back: the gradient of an elementwise op with respect to input k is sumToShape(term). */
const reduceTo = (c: RuleContext, k: number, term: string) =>
  c.g.sumToShape(term, c.g.shape(x(c, k)), hint(c, k));

/** The zero of the graph's float type, for masks. */
const zero = (g: GraphBuilder) => g.floatConstant([0]);
const one = (g: GraphBuilder) => g.floatConstant([1]);

const axisOf = (c: RuleContext, fallback: number) => {
  const rank = c.g.shape(x(c, 0)).length;
  const a = intAttribute(c.node, 'axis', fallback);
  return a < 0 ? a + rank : a;
};

const mul = (c: RuleContext, a: string, b: string) => c.g.op('Mul', [a, b], hint(c, 0));

function unsupported(c: RuleContext, what: string): never {
  throw new AccSGDConfigError(
    describeNode(c.node, c.index),
    c.node.opType,
    'a node the autodiff can differentiate',
    what,
  );
}

/**
 * Backward rules (reverse mode) in standard ai.onnx ops. The maths follows the usual identities
 * (as in ONNX Runtime's training gradient builder); broadcasting is undone by summing the gradient
 * over the broadcast axes (GraphBuilder.sumToShape).
 */
export const BACKWARD_RULES: Record<string, BackwardRule> = {
  Identity: (c) => [c.dy],
  Add: (c) => [c.needs(0) ? reduceTo(c, 0, c.dy) : undefined, c.needs(1) ? reduceTo(c, 1, c.dy) : undefined],
  Sub: (c) => [
    c.needs(0) ? reduceTo(c, 0, c.dy) : undefined,
    c.needs(1) ? reduceTo(c, 1, c.g.op('Neg', [c.dy], hint(c, 1))) : undefined,
  ],
  // d(a*b) = dy*b, dy*a
  Mul: (c) => [
    c.needs(0) ? reduceTo(c, 0, c.g.op('Mul', [c.dy, x(c, 1)], hint(c, 0))) : undefined,
    c.needs(1) ? reduceTo(c, 1, c.g.op('Mul', [c.dy, x(c, 0)], hint(c, 1))) : undefined,
  ],
  // d(a/b) = dy/b, -dy*(a/b)/b = -dy*y/b
  Div: (c) => {
    const da = c.needs(0) || c.needs(1) ? c.g.op('Div', [c.dy, x(c, 1)], hint(c, 0)) : undefined;
    return [
      c.needs(0) ? reduceTo(c, 0, da!) : undefined,
      c.needs(1)
        ? reduceTo(c, 1, c.g.op('Neg', [c.g.op('Mul', [da!, y(c)], hint(c, 1))], hint(c, 1)))
        : undefined,
    ];
  },
  // d(a^b) = dy * b * a^(b-1), dy * y * ln(a)
  Pow: (c) => {
    const g = c.g;
    const intExponent = g.values.get(x(c, 1))?.kind === 'int64';
    const b = intExponent ? g.op('Cast', [x(c, 1)], hint(c, 1), { to: g.floatType }) : x(c, 1);
    const da = c.needs(0)
      ? reduceTo(
          c,
          0,
          mul(c, mul(c, c.dy, b), g.op('Pow', [x(c, 0), g.op('Sub', [b, one(g)], hint(c, 0))], hint(c, 0))),
        )
      : undefined;
    const db = c.needs(1)
      ? reduceTo(c, 1, g.op('Mul', [mul(c, c.dy, y(c)), g.op('Log', [x(c, 0)], hint(c, 1))], hint(c, 1)))
      : undefined;
    return [da, db];
  },
  // Cast to the model's own float type (the only float cast a model may hold) passes the gradient on.
  Cast: (c) => [c.dy],
  // y * (dy - sum(dy * y, axis))
  Softmax: (c) => {
    const rank = c.g.shape(y(c)).length;
    const a = intAttribute(c.node, 'axis', -1);
    const axis = a < 0 ? a + rank : a;
    const dot = c.g.reduce('ReduceSum', c.g.op('Mul', [c.dy, y(c)], hint(c, 0)), [axis], true, hint(c, 0));
    return [c.g.op('Mul', [y(c), c.g.op('Sub', [c.dy, dot], hint(c, 0))], hint(c, 0))];
  },
  // dy - exp(y) * sum(dy, axis)
  LogSoftmax: (c) => {
    const total = c.g.reduce('ReduceSum', c.dy, [axisOf(c, -1)], true, hint(c, 0));
    const soft = c.g.op('Exp', [y(c)], hint(c, 0));
    return [c.g.op('Sub', [c.dy, mul(c, soft, total)], hint(c, 0))];
  },
  // dy (kept dims) * softmax(x) over the axes = dy * exp(x - y)
  ReduceLogSumExp: (c) => {
    const dy = keptDims(c);
    const yKept = keptDims(c, y(c));
    const soft = c.g.op('Exp', [c.g.op('Sub', [x(c, 0), yKept], hint(c, 0))], hint(c, 0));
    return [c.g.op('Mul', [dy, soft], hint(c, 0))];
  },
  ReduceSum: (c) => [expandTo(c, keptDims(c))],
  ReduceMean: (c) => {
    const inShape = c.g.shape(x(c, 0));
    const count = size(inShape) / size(c.g.shape(y(c)));
    const scaled = c.g.op('Mul', [keptDims(c), c.g.floatConstant([1 / count])], hint(c, 0));
    return [expandTo(c, scaled)];
  },
  Reshape: (c) => [c.g.reshape(c.dy, c.g.shape(x(c, 0)), hint(c, 0))],
  Flatten: (c) => [c.g.reshape(c.dy, c.g.shape(x(c, 0)), hint(c, 0))],
  Squeeze: (c) => [c.g.reshape(c.dy, c.g.shape(x(c, 0)), hint(c, 0))],
  Unsqueeze: (c) => [c.g.reshape(c.dy, c.g.shape(x(c, 0)), hint(c, 0))],
  // Each input's part of dy, sliced back out along the axis.
  Concat: (c) => {
    const axis = axisOf(c, 0);
    let offset = 0;
    return c.node.input.map((name, k) => {
      const start = offset;
      offset += c.g.shape(name)[axis]!;
      if (!c.needs(k)) return undefined;
      const bounds = [c.g.int64Constant([start]), c.g.int64Constant([offset]), c.g.int64Constant([axis])];
      return c.g.op('Slice', [c.dy, ...bounds], hint(c, k));
    });
  },
  // dy padded with zeros back to the input's shape (unit steps only).
  Slice: (c) => {
    const inShape = c.g.shape(x(c, 0));
    const s = sliceOf(c.node, c.index, inShape, c.g);
    if (s.steps.some((step) => step !== 1))
      unsupported(c, 'has steps other than 1, which have no backward rule here');
    const before = s.starts;
    const after = inShape.map((d, i) => d - s.starts[i]! - s.shape[i]!);
    return [c.g.op('Pad', [c.dy, c.g.int64Constant([...before, ...after]), zero(c.g)], hint(c, 0))];
  },
  // The selected branch gets dy, the other 0; the bool condition has no gradient.
  Where: (c) => [
    undefined,
    c.needs(1) ? reduceTo(c, 1, c.g.op('Where', [x(c, 0), c.dy, zero(c.g)], hint(c, 1))) : undefined,
    c.needs(2) ? reduceTo(c, 2, c.g.op('Where', [x(c, 0), zero(c.g), c.dy], hint(c, 2))) : undefined,
  ],
  Gather: (c) => [gatherGrad(c)],
  LayerNormalization: (c) => layerNormGrads(c),
  Expand: (c) => [reduceTo(c, 0, c.dy)],
  Transpose: (c) => {
    const rank = c.g.shape(x(c, 0)).length;
    const perm = intsAttribute(c.node, 'perm') ?? [...Array(rank).keys()].reverse();
    const inverse = new Array<number>(rank);
    perm.forEach((p, i) => {
      inverse[p] = i;
    });
    return [c.g.op('Transpose', [c.dy], hint(c, 0), { perm: inverse })];
  },
  MatMul: (c) => matMulGrads(c, x(c, 0), x(c, 1), c.dy, 0, 1),
  // Y = alpha * A' B' + beta * C, A' = transA ? A^T : A, B' likewise
  Gemm: (c) => {
    const g = c.g;
    const alpha = floatAttributeValue(c.node, 'alpha', 1);
    const beta = floatAttributeValue(c.node, 'beta', 1);
    const transA = intAttribute(c.node, 'transA', 0) === 1;
    const transB = intAttribute(c.node, 'transB', 0) === 1;
    const scaled = alpha === 1 ? c.dy : g.op('Mul', [c.dy, g.floatConstant([alpha])], hint(c, 0));
    let da: string | undefined;
    let db: string | undefined;
    if (c.needs(0)) {
      // dA' = dY B'^T; dA = transA ? (dA')^T = B' dY^T : dA'
      da = transA
        ? g.op('MatMul', [maybeT(g, x(c, 1), transB), transposeLast2(g, scaled, hint(c, 0))], hint(c, 0))
        : g.op('MatMul', [scaled, maybeT(g, x(c, 1), !transB)], hint(c, 0));
    }
    if (c.needs(1)) {
      // dB' = A'^T dY; dB = transB ? dY^T A' : dB'
      db = transB
        ? g.op('MatMul', [transposeLast2(g, scaled, hint(c, 1)), maybeT(g, x(c, 0), transA)], hint(c, 1))
        : g.op('MatMul', [maybeT(g, x(c, 0), !transA), scaled], hint(c, 1));
    }
    let dc: string | undefined;
    if (c.node.input[2] && c.needs(2)) {
      const term = beta === 1 ? c.dy : g.op('Mul', [c.dy, g.floatConstant([beta])], hint(c, 2));
      dc = reduceTo(c, 2, term);
    }
    return [da, db, dc];
  },
};

/**
 * Gather's gradient with respect to its data: dy's rows added into zeros at the gathered indices
 * with ScatterND(reduction='add') (correct with repeated indices on cpu, wasm and WebGPU; OneHot,
 * ScatterElements-add and int64 Equal would run on the CPU under WebGPU). For axis > 0 the axis is
 * moved to the front and back with Transposes. Indices are used as they are: negative ones count
 * from the end, as ScatterND allows.
 */
function gatherGrad(c: RuleContext): string {
  const g = c.g;
  const dataShape = g.shape(x(c, 0));
  const indexShape = g.shape(x(c, 1));
  const axis = axisOf(c, 0);
  const rank = dataShape.length;
  const r = indexShape.length;
  const count = size(indexShape);
  const rest = [...dataShape.slice(0, axis), ...dataShape.slice(axis + 1)];
  let updates = c.dy;
  if (axis > 0 && r > 0) {
    const perm = [
      ...Array.from({ length: r }, (_, i) => axis + i),
      ...Array.from({ length: axis }, (_, i) => i),
      ...Array.from({ length: rank - 1 - axis }, (_, i) => axis + r + i),
    ];
    updates = g.op('Transpose', [updates], hint(c, 0), { perm });
  }
  updates = g.reshape(updates, [count, ...rest], hint(c, 0));
  const indices = g.reshape(x(c, 1), [count, 1], `${x(c, 1)}_rows`);
  const front = [dataShape[axis]!, ...rest];
  const zeros = g.op('Expand', [zero(g), g.int64Constant(front)], hint(c, 0));
  const summed = g.op('ScatterND', [zeros, indices, updates], hint(c, 0), { reduction: 'add' });
  if (axis === 0) return summed;
  const back = [
    ...Array.from({ length: axis }, (_, i) => i + 1),
    0,
    ...Array.from({ length: rank - 1 - axis }, (_, i) => axis + 1 + i),
  ];
  return g.op('Transpose', [summed], hint(c, 0), { perm: back });
}

/**
 * LayerNormalization's gradients, with the statistics recomputed in the graph (xhat = (x - mean) *
 * rstd over the normalised axes): dScale = sum(dy * xhat), dB = sum(dy) over the other axes, and
 * dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) with dxhat = dy * Scale.
 */
function layerNormGrads(c: RuleContext): (string | undefined)[] {
  const g = c.g;
  const v = x(c, 0);
  const rank = g.shape(v).length;
  const axes = Array.from({ length: rank - axisOf(c, -1) }, (_, i) => axisOf(c, -1) + i);
  const h = hint(c, 0);
  const mean = g.reduce('ReduceMean', v, axes, true, h);
  const centred = g.op('Sub', [v, mean], h);
  const variance = g.reduce('ReduceMean', mul(c, centred, centred), axes, true, h);
  const epsilon = g.floatConstant([floatAttributeValue(c.node, 'epsilon', 1e-5)]);
  const rstd = g.op('Div', [one(g), g.op('Sqrt', [g.op('Add', [variance, epsilon], h)], h)], h);
  const xhat = mul(c, centred, rstd);
  const out: (string | undefined)[] = [];
  if (c.needs(1)) out[1] = reduceTo(c, 1, g.op('Mul', [c.dy, xhat], hint(c, 1)));
  if (c.node.input[2] && c.needs(2)) out[2] = reduceTo(c, 2, c.dy);
  if (c.needs(0)) {
    const dxhat = mul(c, c.dy, x(c, 1));
    const m1 = g.reduce('ReduceMean', dxhat, axes, true, h);
    const m2 = g.reduce('ReduceMean', mul(c, dxhat, xhat), axes, true, h);
    const inner = g.op('Sub', [g.op('Sub', [dxhat, m1], h), mul(c, xhat, m2)], h);
    out[0] = mul(c, rstd, inner);
  }
  return out;
}

function maybeT(g: GraphBuilder, v: string, transpose: boolean): string {
  return transpose ? transposeLast2(g, v, `${v}_T`) : v;
}

/**
 * Gradients of Y = A @ B (numpy semantics: 1-D operands are promoted, batch dimensions broadcast):
 * dA = dY @ B^T and dB = A^T @ dY, in the promoted shapes, then summed over broadcast batch axes.
 */
function matMulGrads(
  c: RuleContext,
  a: string,
  b: string,
  dy: string,
  ka: number,
  kb: number,
): (string | undefined)[] {
  const g = c.g;
  const aShape = g.shape(a);
  const bShape = g.shape(b);
  const a2 = aShape.length === 1 ? g.reshape(a, [1, aShape[0]!], `${a}_2d`) : a;
  const b2 = bShape.length === 1 ? g.reshape(b, [bShape[0]!, 1], `${b}_2d`) : b;
  const a2s = g.shape(a2);
  const b2s = g.shape(b2);
  const batch = g.shape(dy).slice(0, Math.max(a2s.length, b2s.length) - 2);
  const dy2 = g.reshape(dy, [...batch, a2s.at(-2)!, b2s.at(-1)!], `${dy}_2d`);
  const out: (string | undefined)[] = [];
  if (c.needs(ka)) {
    const da = g.op('MatMul', [dy2, transposeLast2(g, b2, `${b}_T`)], hint(c, ka));
    out[ka] = g.reshape(g.sumToShape(da, a2s, hint(c, ka)), aShape, hint(c, ka));
  }
  if (c.needs(kb)) {
    const db = g.op('MatMul', [transposeLast2(g, a2, `${a}_T`), dy2], hint(c, kb));
    out[kb] = g.reshape(g.sumToShape(db, b2s, hint(c, kb)), bShape, hint(c, kb));
  }
  return out;
}

/** The output gradient (or `v`) reshaped to the input's rank with the reduced axes kept as 1. */
function keptDims(c: RuleContext, v: string = c.dy): string {
  const inShape = c.g.shape(x(c, 0));
  const axes = reduceAxes(c.node, c.index, c.g);
  if (axes === 'none') return v;
  const kept = inShape.map((d, i) => (axes === 'all' || axes.includes(i) ? 1 : d));
  return c.g.reshape(v, kept, `${v}_kept`);
}

/** Broadcasts a kept-dims gradient to the input's shape. */
function expandTo(c: RuleContext, v: string): string {
  const inShape = c.g.shape(x(c, 0));
  if (sameShape(c.g.shape(v), inShape)) return v;
  return c.g.op('Expand', [v, c.g.int64Constant(inShape)], hint(c, 0));
}

// The op modules' rules (./ops/: Conv, pools, BatchNormalization, ...), registered in one table.
for (const [op, module] of Object.entries(OP_MODULES))
  if (module.backward) BACKWARD_RULES[op] = module.backward;

/**
 * The ops with a backward rule, or written as ops that have one (an op module's `lower`): the
 * forward models this package differentiates use only these (and Constant).
 */
export const DIFFERENTIABLE_OPS = [
  ...new Set([
    ...Object.keys(BACKWARD_RULES),
    ...Object.entries(OP_MODULES)
      .filter(([, m]) => m.lower)
      .map(([op]) => op),
  ]),
].sort();
