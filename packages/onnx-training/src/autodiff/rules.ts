import type { NodeProto } from 'onnx-buf';
import { type GraphBuilder, reduceAxes, sameShape, size } from './graph.js';
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
  Neg: (c) => [c.g.op('Neg', [c.dy], hint(c, 0))],
  // dy where x > 0, else 0 (Where, not a multiply by a mask: a NaN/Inf elsewhere does not leak)
  Relu: (c) => [
    c.g.op(
      'Where',
      [c.g.op('Greater', [x(c, 0), zero(c.g)], `${x(c, 0)}_positive`), c.dy, zero(c.g)],
      hint(c, 0),
    ),
  ],
  // dy * (1 - y^2)
  Tanh: (c) => [
    c.g.op(
      'Mul',
      [c.dy, c.g.op('Sub', [one(c.g), c.g.op('Mul', [y(c), y(c)], hint(c, 0))], hint(c, 0))],
      hint(c, 0),
    ),
  ],
  // dy * y * (1 - y)
  Sigmoid: (c) => [
    c.g.op(
      'Mul',
      [c.g.op('Mul', [c.dy, y(c)], hint(c, 0)), c.g.op('Sub', [one(c.g), y(c)], hint(c, 0))],
      hint(c, 0),
    ),
  ],
  Exp: (c) => [c.g.op('Mul', [c.dy, y(c)], hint(c, 0))],
  Log: (c) => [c.g.op('Div', [c.dy, x(c, 0)], hint(c, 0))],
  // dy / (2 y)
  Sqrt: (c) => [c.g.op('Div', [c.dy, c.g.op('Add', [y(c), y(c)], hint(c, 0))], hint(c, 0))],
  // y * (dy - sum(dy * y, axis))
  Softmax: (c) => {
    const rank = c.g.shape(y(c)).length;
    const a = intAttribute(c.node, 'axis', -1);
    const axis = a < 0 ? a + rank : a;
    const dot = c.g.reduce('ReduceSum', c.g.op('Mul', [c.dy, y(c)], hint(c, 0)), [axis], true, hint(c, 0));
    return [c.g.op('Mul', [y(c), c.g.op('Sub', [c.dy, dot], hint(c, 0))], hint(c, 0))];
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

/** The ops with a backward rule: the forward models this package differentiates use only these (and Constant). */
export const DIFFERENTIABLE_OPS = Object.keys(BACKWARD_RULES).sort();
