import { AccSGDConfigError } from '@accsgd/core';
import { describeNode, type ShapeContext, size } from '../graph.js';
import { intAttribute, intsAttribute, stringAttribute } from '../proto.js';
import { addNamed, hint, x } from './helpers.js';
import type { OpFamily } from './op.js';

/** Pad's per-axis begin and end amounts (negative ones crop), over every axis of the input. */
function padAmounts(
  shape: readonly number[],
  pads: readonly number[],
  axes: readonly number[] | undefined,
  fail: (what: string) => never,
): { begin: number[]; end: number[] } {
  const rank = shape.length;
  const along = (axes ?? shape.map((_, i) => i)).map((a) => (a < 0 ? a + rank : a));
  if (pads.length !== 2 * along.length)
    fail(
      `has ${pads.length} pads for ${along.length} axes; expected ${2 * along.length} (begins, then ends)`,
    );
  if (along.some((a) => a < 0 || a >= rank) || new Set(along).size !== along.length)
    fail(`has axes [${axes}] out of range or repeated`);
  const begin = shape.map(() => 0);
  const end = shape.map(() => 0);
  along.forEach((a, i) => {
    begin[a] = pads[i]!;
    end[a] = pads[i + along.length]!;
  });
  return { begin, end };
}

function padShapes(c: ShapeContext) {
  const v = c.input(0);
  const amounts = padAmounts(v.shape, c.constant(1), c.optionalConstant(3), c.fail);
  const out = v.shape.map((d, i) => d + amounts.begin[i]! + amounts.end[i]!);
  if (out.some((d) => d < 0)) c.fail(`crops [${v.shape}] to [${out}]`);
  if (c.node.input[2] && size(c.input(2).shape) !== 1) c.fail('has a constant_value that is not a scalar');
  return { v, amounts, out };
}

/** Splits along `axis`: the split input (opset 13+), the attribute (earlier), num_outputs (18) or equal parts. */
function splitSizes(c: ShapeContext, d: number): number[] {
  const n = c.node.output.length;
  const given = c.optionalConstant(1) ?? intsAttribute(c.node, 'split');
  if (given) {
    if (given.length !== n || given.reduce((a, b) => a + b, 0) !== d || given.some((s) => s < 0))
      c.fail(`has split [${given}] for ${n} outputs of an axis of size ${d}`);
    return given;
  }
  const parts = intAttribute(c.node, 'num_outputs', n);
  if (parts !== n) c.fail(`has num_outputs ${parts} but ${n} outputs`);
  if (c.graph.opset >= 18) {
    const chunk = Math.ceil(d / n);
    return Array.from({ length: n }, (_, k) => Math.max(0, Math.min(chunk, d - k * chunk)));
  }
  if (d % n !== 0) c.fail(`splits an axis of size ${d} into ${n} equal parts`);
  return new Array<number>(n).fill(d / n);
}

function splitShapes(c: ShapeContext) {
  const v = c.input(0);
  const rank = v.shape.length;
  const raw = intAttribute(c.node, 'axis', 0);
  const axis = raw < 0 ? raw + rank : raw;
  if (axis < 0 || axis >= rank) c.fail(`has axis ${raw} out of range`);
  return { v, axis, sizes: splitSizes(c, v.shape[axis]!) };
}

function tileInts(values: number[], shape: number[], repeats: number[]): number[] {
  let data = values;
  const current = [...shape];
  // Axis by axis from the last: each block of the axis and everything after it is repeated.
  for (let a = shape.length - 1; a >= 0; a--) {
    const block = size(current.slice(a));
    const outer = size(current.slice(0, a));
    const next: number[] = [];
    for (let o = 0; o < outer; o++)
      for (let r = 0; r < repeats[a]!; r++) next.push(...data.slice(o * block, (o + 1) * block));
    data = next;
    current[a] = current[a]! * repeats[a]!;
  }
  return data;
}

export const LAYOUT_OPS: OpFamily = {
  /**
   * Constant-mode Pad (negative pads crop). dX is dY cut back to the input's region (Slice) and,
   * where the forward cropped, zero-padded; a float constant_value gets the sum of dY over the
   * padding. reflect, edge and wrap modes run forward only.
   */
  Pad: {
    infer: (c) => {
      const { v, out } = padShapes(c);
      return [{ kind: v.kind, shape: out }];
    },
    backward: (c) => {
      const g = c.g;
      const mode = stringAttribute(c.node, 'mode', 'constant');
      if (mode !== 'constant')
        throw new AccSGDConfigError(
          describeNode(c.node, c.index),
          mode,
          'a constant-mode Pad on the way to the loss',
          `has mode "${mode}", which has no backward rule`,
        );
      const shape = g.shape(x(c, 0));
      const pads = g.intConstants.get(x(c, 1))!;
      const axesName = c.node.input[3];
      const { begin, end } = padAmounts(
        shape,
        pads,
        axesName ? g.intConstants.get(axesName) : undefined,
        (what) => {
          throw new Error(`internal: ${what}`);
        },
      );
      const outShape = g.shape(c.dy);
      const h = hint(c, 0);
      const starts = begin.map((b) => Math.max(b, 0));
      const ends = shape.map((d, i) => Math.min(begin[i]! + d, outShape[i]!));
      const axes = shape.map((_, i) => i).filter((i) => starts[i] !== 0 || ends[i] !== outShape[i]);
      let dx = c.dy;
      if (axes.length > 0)
        dx = g.op(
          'Slice',
          [
            dx,
            g.int64Constant(axes.map((a) => starts[a]!)),
            g.int64Constant(axes.map((a) => ends[a]!)),
            g.int64Constant(axes),
          ],
          h,
        );
      const crop = [...begin.map((b) => Math.max(-b, 0)), ...end.map((e) => Math.max(-e, 0))];
      if (crop.some((p) => p > 0)) dx = g.op('Pad', [dx, g.int64Constant(crop)], h);
      const out: (string | undefined)[] = [c.needs(0) ? dx : undefined];
      if (c.node.input[2] && c.needs(2)) {
        const all = (v: string) =>
          g.reduce(
            'ReduceSum',
            v,
            g.shape(v).map((_, i) => i),
            false,
            hint(c, 2),
          );
        const padding = g.op('Sub', [all(c.dy), all(dx)], hint(c, 2));
        out[2] = g.reshape(padding, g.shape(x(c, 2)), hint(c, 2));
      }
      return out;
    },
  },
  /** Written as one Slice per output, whose rule (dY padded back) gives the gradient; int64 splits stay on the host. */
  Split: {
    infer: (c) => {
      const { v, axis, sizes } = splitShapes(c);
      return sizes.map((s) => ({ kind: v.kind, shape: v.shape.map((d, i) => (i === axis ? s : d)) }));
    },
    lower: (c) => {
      const { axis, sizes } = splitShapes(c);
      let start = 0;
      sizes.forEach((s, k) => {
        const output = c.node.output[k];
        if (output)
          addNamed(
            c.graph,
            c.index,
            'Slice',
            [
              c.node.input[0]!,
              c.graph.int64Constant([start]),
              c.graph.int64Constant([start + s]),
              c.graph.int64Constant([axis]),
            ],
            [output],
          );
        start += s;
      });
      return true;
    },
  },
  /** dY as [r0, d0, r1, d1, ...] summed over the repeats. */
  Tile: {
    infer: (c) => {
      const v = c.input(0);
      const repeats = c.constant(1);
      if (repeats.length !== v.shape.length || repeats.some((r) => !Number.isInteger(r) || r < 0))
        c.fail(`has repeats [${repeats}] for an input of rank ${v.shape.length}`);
      const out = v.shape.map((d, i) => d * repeats[i]!);
      if (v.kind !== 'int64') return [{ kind: v.kind, shape: out }];
      return c.computed('int64', out, [0], ([values]) => tileInts(values!, v.shape, repeats));
    },
    backward: (c) => {
      const g = c.g;
      const shape = g.shape(x(c, 0));
      const repeats = g.intConstants.get(x(c, 1))!;
      const h = hint(c, 0);
      const split = g.reshape(
        c.dy,
        shape.flatMap((d, i) => [repeats[i]!, d]),
        h,
      );
      const summed = g.reduce(
        'ReduceSum',
        split,
        shape.map((_, i) => 2 * i),
        false,
        h,
      );
      return [g.reshape(summed, shape, h)];
    },
  },
};
