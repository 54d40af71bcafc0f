import type { ShapeContext } from '../graph.js';
import { findAttribute, floatAttributeValue } from '../proto.js';
import type { RuleContext } from '../rules.js';
import { hint, reduceTo, select, x, y, zero } from './helpers.js';
import type { OpFamily, OpModule } from './op.js';

const sameShape = (c: ShapeContext) => [{ kind: 'float' as const, shape: [...c.floatInput(0)] }];
const mul = (c: RuleContext, a: string, b: string) => c.g.op('Mul', [a, b], hint(c, 0));
const constant = (c: RuleContext, v: number) => c.g.floatConstant([v]);

/** An elementwise op of one float input whose gradient is a function of the rule context. */
const unary = (backward: (c: RuleContext) => string, floatAttributes?: string[]): OpModule => ({
  infer: sameShape,
  backward: (c) => [backward(c)],
  ...(floatAttributes ? { floatAttributes } : {}),
});

/** Clip's bound k (1: min, 2: max) as an input name, from the input or the (opset < 11) attribute. */
function clipBound(c: RuleContext, k: 1 | 2): string | undefined {
  if (c.node.input[k]) return x(c, k);
  const a = findAttribute(c.node, k === 1 ? 'min' : 'max');
  return a ? constant(c, a.f) : undefined;
}

export const ACTIVATION_OPS: OpFamily = {
  /**
   * min(max(x, min), max). dX = dY where min <= x <= max (PyTorch's clamp passes the boundary);
   * a float min or max input (a trainable bound) gets the sum of dY where x is below or above it.
   */
  Clip: {
    floatAttributes: ['min', 'max'],
    infer: (c) => {
      const shape = c.floatInput(0);
      for (const k of [1, 2]) {
        if (!c.node.input[k]) continue;
        const b = c.floatInput(k);
        if (b.length > 1 || (b.length === 1 && b[0] !== 1))
          c.fail(`has a ${k === 1 ? 'min' : 'max'} of shape [${b}]; expected a scalar`);
      }
      return [{ kind: 'float', shape: [...shape] }];
    },
    backward: (c) => {
      const g = c.g;
      const lo = clipBound(c, 1);
      const hi = clipBound(c, 2);
      const h = hint(c, 0);
      const out: (string | undefined)[] = [];
      if (c.needs(0)) {
        let dx = c.dy;
        if (hi) dx = select(c, 'Greater', x(c, 0), hi, zero(g), dx, h);
        if (lo) dx = select(c, 'Less', x(c, 0), lo, zero(g), dx, h);
        out[0] = dx;
      }
      if (c.needs(1) && lo)
        out[1] = reduceTo(c, 1, select(c, 'Less', x(c, 0), lo, c.dy, zero(g), hint(c, 1)));
      if (c.needs(2) && hi)
        out[2] = reduceTo(c, 2, select(c, 'Greater', x(c, 0), hi, c.dy, zero(g), hint(c, 2)));
      return out;
    },
  },
  // max(0, min(1, alpha x + beta)): dY * alpha where 0 < alpha x + beta < 1 (PyTorch's strict bounds).
  HardSigmoid: unary(
    (c) => {
      const alpha = floatAttributeValue(c.node, 'alpha', 0.2);
      const beta = floatAttributeValue(c.node, 'beta', 0.5);
      const t = c.g.op('Add', [mul(c, x(c, 0), constant(c, alpha)), constant(c, beta)], hint(c, 0));
      const inside = select(
        c,
        'GreaterOrEqual',
        t,
        constant(c, 1),
        zero(c.g),
        mul(c, c.dy, constant(c, alpha)),
        hint(c, 0),
      );
      return select(c, 'LessOrEqual', t, zero(c.g), zero(c.g), inside, hint(c, 0));
    },
    ['alpha', 'beta'],
  ),
  // x * HardSigmoid(x; 1/6, 1/2): 0 below -3, dY above 3, dY * (x / 3 + 1/2) between (PyTorch's hardswish_backward).
  HardSwish: unary((c) => {
    const slope = c.g.op('Add', [mul(c, x(c, 0), constant(c, 1 / 3)), constant(c, 0.5)], hint(c, 0));
    const middle = select(c, 'Greater', x(c, 0), constant(c, 3), c.dy, mul(c, c.dy, slope), hint(c, 0));
    return select(c, 'Less', x(c, 0), constant(c, -3), zero(c.g), middle, hint(c, 0));
  }),
  // dY * sign(x) (0 at 0).
  Abs: unary((c) => {
    const negative = select(
      c,
      'Less',
      x(c, 0),
      zero(c.g),
      c.g.op('Neg', [c.dy], hint(c, 0)),
      zero(c.g),
      hint(c, 0),
    );
    return select(c, 'Greater', x(c, 0), zero(c.g), c.dy, negative, hint(c, 0));
  }),
  // -dY / x^2 = -dY * y * y
  Reciprocal: unary((c) => c.g.op('Neg', [mul(c, mul(c, c.dy, y(c)), y(c))], hint(c, 0))),
  // dY for x > 0, dY * (y + alpha) elsewhere (y = alpha (e^x - 1) there).
  Elu: unary(
    (c) => {
      const alpha = floatAttributeValue(c.node, 'alpha', 1);
      const below = mul(c, c.dy, c.g.op('Add', [y(c), constant(c, alpha)], hint(c, 0)));
      return select(c, 'Greater', x(c, 0), zero(c.g), c.dy, below, hint(c, 0));
    },
    ['alpha'],
  ),
  // log(1 + e^x): dY * sigmoid(x)
  Softplus: unary((c) => mul(c, c.dy, c.g.op('Sigmoid', [x(c, 0)], hint(c, 0)))),
};
