import { broadcastInts, broadcastShapes, reduceAxes, type ShapeContext, type ValueShape } from '../graph.js';
import { intAttribute } from '../proto.js';
import type { RuleContext } from '../rules.js';
import { hint, reduceTo, x, y, zero } from './helpers.js';
import type { OpFamily, OpModule } from './op.js';
import { maxGrad } from './pool.js';

/** Variadic Max / Min with numpy broadcasting; int64 operands (shape arithmetic) are computed on the host. */
function extremumShapes(c: ShapeContext): ValueShape[] {
  const all = c.node.input.map((_, k) => c.input(k));
  if (all.length === 0) c.fail('has no inputs');
  const kind = all[0]!.kind;
  if (kind === 'bool' || all.some((v) => v.kind !== kind))
    c.fail(`has inputs of kinds ${all.map((v) => v.kind).join(', ')}`);
  let out: number[] | undefined = [];
  for (const v of all) out = out && broadcastShapes(out, v.shape);
  if (!out)
    c.fail(`has inputs of shapes ${all.map((v) => `[${v.shape}]`).join(', ')}, which do not broadcast`);
  const shape = out;
  if (kind === 'float') return [{ kind, shape }];
  return c.computed(
    'int64',
    shape,
    all.map((_, k) => k),
    (values) => {
      let acc = values[0]!;
      let accShape = all[0]!.shape;
      for (let k = 1; k < values.length; k++) {
        const next = broadcastShapes(accShape, all[k]!.shape)!;
        acc = broadcastInts(c.node.opType, acc, accShape, values[k]!, all[k]!.shape, next);
        accShape = next;
      }
      return acc;
    },
  );
}

/**
 * Each element's dY goes to the first input (in input order) equal to the result, as a running
 * "not yet taken" factor keeps it to one; then summed over the axes that input was broadcast along.
 */
function extremumGrads(c: RuleContext): (string | undefined)[] {
  const g = c.g;
  let available = g.floatConstant([1]);
  const last = c.node.input.length - 1;
  return c.node.input.map((_, k) => {
    const h = hint(c, k);
    const taken = g.op(
      'Where',
      [g.op('Equal', [x(c, k), y(c)], `${h}_is_result`), available, zero(g)],
      `${h}_taken`,
    );
    if (k < last) available = g.op('Sub', [available, taken], `${h}_available`);
    return c.needs(k) ? reduceTo(c, k, g.op('Mul', [c.dy, taken], h)) : undefined;
  });
}

const extremum: OpModule = { infer: extremumShapes, backward: extremumGrads };

export const EXTREMUM_OPS: OpFamily = {
  Max: extremum,
  Min: extremum,
  /** dY (kept dims) split evenly among the inputs equal to the max (pool.ts maxGrad). */
  ReduceMax: {
    infer: (c) => {
      const shape = c.floatInput(0);
      const axes = reduceAxes(c.node, c.index, c.graph);
      if (axes === 'none') return [{ kind: 'float', shape: [...shape] }];
      if (axes !== 'all' && axes.some((a) => a < 0 || a >= shape.length)) c.fail('has an axis out of range');
      const keep = intAttribute(c.node, 'keepdims', 1) === 1;
      const reduced = (i: number) => axes === 'all' || axes.includes(i);
      const out = keep ? shape.map((d, i) => (reduced(i) ? 1 : d)) : shape.filter((_, i) => !reduced(i));
      return [{ kind: 'float', shape: out }];
    },
    backward: (c) => {
      const shape = c.g.shape(x(c, 0));
      const axes = reduceAxes(c.node, c.index, c.g);
      if (axes === 'none') return [c.dy];
      const list = axes === 'all' ? shape.map((_, i) => i) : axes;
      const kept = shape.map((d, i) => (list.includes(i) ? 1 : d));
      const dy = c.g.reshape(c.dy, kept, `${c.dy}_kept`);
      const yKept = c.g.reshape(y(c), kept, `${y(c)}_kept`);
      return [maxGrad(c, dy, yKept, list)];
    },
  },
};
