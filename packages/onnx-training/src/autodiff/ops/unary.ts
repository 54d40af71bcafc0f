import type { ShapeContext } from '../graph.js';
import { floatAttributeValue, stringAttribute } from '../proto.js';
import type { RuleContext } from '../rules.js';
import { hint, one, x, y, zero } from './helpers.js';
import type { OpFamily } from './op.js';

/** x > 0 as a bool mask (for Where: a NaN or Inf in the unselected branch does not leak). */
const positiveMask = (c: RuleContext) => c.g.op('Greater', [x(c, 0), zero(c.g)], `${x(c, 0)}_positive`);
const mul = (c: RuleContext, a: string, b: string) => c.g.op('Mul', [a, b], hint(c, 0));
const scaled = (c: RuleContext, a: string, k: number) => mul(c, a, c.g.floatConstant([k]));
const sameShape = (c: ShapeContext) => [{ kind: 'float' as const, shape: [...c.floatInput(0)] }];

/** Elementwise ops of one float input (the first family moved out of rules.ts and graph.ts). */
export const UNARY_OPS: OpFamily = {
  Neg: {
    infer: sameShape,
    backward: (c) => [c.g.op('Neg', [c.dy], hint(c, 0))],
  },
  // dy where x > 0, else 0 (Where, not a multiply by a mask: a NaN/Inf elsewhere does not leak)
  Relu: {
    infer: sameShape,
    backward: (c) => [c.g.op('Where', [positiveMask(c), c.dy, zero(c.g)], hint(c, 0))],
  },
  // dy where x > 0, alpha * dy elsewhere
  LeakyRelu: {
    floatAttributes: ['alpha'],
    infer: sameShape,
    backward: (c) => [
      c.g.op(
        'Where',
        [positiveMask(c), c.dy, scaled(c, c.dy, floatAttributeValue(c.node, 'alpha', 0.01))],
        hint(c, 0),
      ),
    ],
  },
  // dy * 2/sqrt(pi) * exp(-x^2)
  Erf: {
    infer: sameShape,
    backward: (c) => {
      const gauss = c.g.op('Exp', [c.g.op('Neg', [mul(c, x(c, 0), x(c, 0))], hint(c, 0))], hint(c, 0));
      return [mul(c, c.dy, scaled(c, gauss, 2 / Math.sqrt(Math.PI)))];
    },
  },
  // 'none': dy * (Phi(x) + x phi(x)); 'tanh': the derivative of 0.5 x (1 + tanh(k (x + 0.044715 x^3)))
  Gelu: {
    infer: sameShape,
    backward: (c) => {
      const g = c.g;
      const v = x(c, 0);
      const half = g.floatConstant([0.5]);
      const x2 = mul(c, v, v);
      if (stringAttribute(c.node, 'approximate', 'none') === 'tanh') {
        const k = Math.sqrt(2 / Math.PI);
        const inner = mul(c, v, g.op('Add', [one(g), scaled(c, x2, 0.044715)], hint(c, 0)));
        const t = g.op('Tanh', [scaled(c, inner, k)], hint(c, 0));
        const dInner = scaled(c, g.op('Add', [one(g), scaled(c, x2, 3 * 0.044715)], hint(c, 0)), k);
        const outer = mul(c, half, g.op('Add', [one(g), t], hint(c, 0)));
        const sech2 = g.op('Sub', [one(g), mul(c, t, t)], hint(c, 0));
        const slope = g.op('Add', [outer, mul(c, mul(c, half, v), mul(c, sech2, dInner))], hint(c, 0));
        return [mul(c, c.dy, slope)];
      }
      const cdf = mul(
        c,
        half,
        g.op('Add', [one(g), g.op('Erf', [scaled(c, v, Math.SQRT1_2)], hint(c, 0))], hint(c, 0)),
      );
      const pdf = scaled(c, g.op('Exp', [scaled(c, x2, -0.5)], hint(c, 0)), 1 / Math.sqrt(2 * Math.PI));
      return [mul(c, c.dy, g.op('Add', [cdf, mul(c, v, pdf)], hint(c, 0)))];
    },
  },
  // dy * (1 - y^2)
  Tanh: {
    infer: sameShape,
    backward: (c) => [
      c.g.op(
        'Mul',
        [c.dy, c.g.op('Sub', [one(c.g), c.g.op('Mul', [y(c), y(c)], hint(c, 0))], hint(c, 0))],
        hint(c, 0),
      ),
    ],
  },
  // dy * y * (1 - y)
  Sigmoid: {
    infer: sameShape,
    backward: (c) => [
      c.g.op(
        'Mul',
        [c.g.op('Mul', [c.dy, y(c)], hint(c, 0)), c.g.op('Sub', [one(c.g), y(c)], hint(c, 0))],
        hint(c, 0),
      ),
    ],
  },
  Exp: {
    infer: sameShape,
    backward: (c) => [c.g.op('Mul', [c.dy, y(c)], hint(c, 0))],
  },
  Log: {
    infer: sameShape,
    backward: (c) => [c.g.op('Div', [c.dy, x(c, 0)], hint(c, 0))],
  },
  // dy / (2 y)
  Sqrt: {
    infer: sameShape,
    backward: (c) => [c.g.op('Div', [c.dy, c.g.op('Add', [y(c), y(c)], hint(c, 0))], hint(c, 0))],
  },
};
