import { AccSGDConfigError } from '@accsgd/core';
import { describeNode, type ShapeContext, size } from '../graph.js';
import { attribute, intAttribute, intsAttribute, stringAttribute } from '../proto.js';
import type { RuleContext } from '../rules.js';
import { hint, x } from './helpers.js';
import type { OpFamily } from './op.js';
import { checkedWindow, scatterBack, type Window, windowOf, writeExplicit } from './window.js';

/**
 * A Conv the backward pass writes, its pads applied first as zero blocks joined on with Concat:
 * ORT 1.30's WebGPU Conv computes wrong values when a kernel spans the whole input with a zero
 * begin pad and a non-zero end pad (the weight gradient's Conv under auto_pad SAME_UPPER; measured
 * off by 4.4 against the CPU EP), and ORT fuses a Pad node back into the Conv's pads.
 */
function generatedConv(
  c: RuleContext,
  input: string,
  filters: string,
  name: string,
  attrs: { kernel_shape: number[]; strides: number[]; dilations: number[]; pads: number[]; group: number },
): string {
  const g = c.g;
  const r = attrs.pads.length / 2;
  let padded = input;
  for (let i = 0; i < r; i++) {
    const [before, after] = [attrs.pads[i]!, attrs.pads[i + r]!];
    if (before === 0 && after === 0) continue;
    const shape = g.shape(padded);
    const zeros = (n: number) => {
      const block = shape.map((d, a) => (a === i + 2 ? n : d));
      return g.floatConstant(new Array<number>(size(block)).fill(0), block);
    };
    padded = g.op(
      'Concat',
      [...(before > 0 ? [zeros(before)] : []), padded, ...(after > 0 ? [zeros(after)] : [])],
      name,
      { axis: i + 2 },
    );
  }
  return g.op('Conv', [padded, filters], name, { ...attrs, pads: attrs.pads.map(() => 0) });
}

/** Conv's shapes: X [N, C, ...spatial], W [M, C/group, ...kernel], B [M]; the window resolved. */
function convShapes(c: ShapeContext) {
  const xs = c.floatInput(0);
  const ws = c.floatInput(1);
  if (xs.length < 3) c.fail(`has an input of shape [${xs}]; expected [N, C, ...spatial] with a spatial axis`);
  if (ws.length !== xs.length) c.fail(`has weights of shape [${ws}] for an input of shape [${xs}]`);
  const group = intAttribute(c.node, 'group', 1);
  const kernel = ws.slice(2);
  const given = intsAttribute(c.node, 'kernel_shape');
  if (given && given.join() !== kernel.join())
    c.fail(`has kernel_shape [${given}] but weights of shape [${ws}]`);
  if (group < 1 || xs[1]! !== ws[1]! * group || ws[0]! % group !== 0)
    c.fail(
      `has group ${group}, input channels ${xs[1]} and weights [${ws}]; expected C = W[1] * group and W[0] divisible by group`,
    );
  if (c.node.input[2]) {
    const b = c.floatInput(2);
    if (b.length !== 1 || b[0] !== ws[0]) c.fail(`has a bias of shape [${b}]; expected [${ws[0]}]`);
  }
  return { xs, ws, group, window: windowOf(c, xs.slice(2), kernel) };
}

/**
 * Conv's weight gradient as one Conv: dW[m, c, k] = sum over n and output positions o of
 * dY[n, m, o] * Xpad[n, c, o * stride + k * dilation], a correlation of X with dY in which the batch
 * is the contracted channel axis, the forward dilation is the stride and the forward stride the
 * dilation. Groups: X as [C/group, group * N, ...] and dY as [M, N, ...] with group `group`, so
 * group j's filters see only group j's channels. The result [C/group, M, ...] is transposed to
 * [M, C/group, ...] and cut to the kernel (a trailing pad the forward windows never reached makes
 * it longer).
 */
function weightGrad(c: RuleContext, xs: number[], ws: number[], group: number, w: Window): string {
  const g = c.g;
  const h = hint(c, 1);
  const [n, channels] = [xs[0]!, xs[1]!];
  const spatial = xs.slice(2);
  const rest = spatial.map((_, i) => i + 3);
  const perGroup = channels / group;
  const grouped = g.reshape(x(c, 0), [n, group, perGroup, ...spatial], h);
  const asBatch = g.op('Transpose', [grouped], h, { perm: [2, 1, 0, ...rest] });
  const input = g.reshape(asBatch, [perGroup, group * n, ...spatial], h);
  const filters = g.op('Transpose', [c.dy], h, { perm: [1, 0, ...spatial.map((_, i) => i + 2)] });
  const out = g.shape(c.dy).slice(2);
  const corr = generatedConv(c, input, filters, h, {
    kernel_shape: out,
    strides: w.dilations,
    dilations: w.strides,
    pads: [...w.padsBegin, ...w.padsEnd],
    group,
  });
  let dw = g.op('Transpose', [corr], h, { perm: [1, 0, ...spatial.map((_, i) => i + 2)] });
  const got = g.shape(dw).slice(2);
  if (got.some((d, i) => d !== ws[i + 2]))
    dw = g.op(
      'Slice',
      [
        dw,
        g.int64Constant(spatial.map(() => 0)),
        g.int64Constant(ws.slice(2)),
        g.int64Constant(spatial.map((_, i) => i + 2)),
      ],
      h,
    );
  return dw;
}

/**
 * ConvTranspose is the adjoint of Conv in X, so dX = Conv(dY, W) with the same strides, pads,
 * dilations and group (output_padding only adds rows that Conv's floor drops again). dW[c, m, k] =
 * sum over n and input positions i of X[n, c, i] * dY[n, m, i * stride + k * dilation - pad]: a
 * Conv of dY (batch as channels, [M/group, group * N, ...]) with X as filters ([C, N, ...]), the
 * forward dilation as its stride and the forward stride as its dilation, transposed and cut to
 * the kernel. Pads from output_shape or auto_pad SAME_* are refused: ORT resolves them itself.
 */
function convTransposeGrads(c: RuleContext): (string | undefined)[] {
  const g = c.g;
  const xs = g.shape(x(c, 0));
  const ws = g.shape(x(c, 1));
  const r = xs.length - 2;
  const autoPad = stringAttribute(c.node, 'auto_pad', 'NOTSET');
  if (intsAttribute(c.node, 'output_shape') || (autoPad !== 'NOTSET' && autoPad !== 'VALID'))
    throw new AccSGDConfigError(
      describeNode(c.node, c.index),
      c.node.opType,
      'a ConvTranspose with explicit pads on the way to the loss',
      'sets output_shape or auto_pad SAME_*; write its pads explicitly to differentiate it',
    );
  const group = intAttribute(c.node, 'group', 1);
  const strides = intsAttribute(c.node, 'strides')!;
  const dilations = intsAttribute(c.node, 'dilations')!;
  const pads =
    autoPad === 'VALID'
      ? new Array<number>(2 * r).fill(0)
      : (intsAttribute(c.node, 'pads') ?? new Array<number>(2 * r).fill(0));
  const spatialAxes = xs.slice(2).map((_, i) => i + 2);
  const out: (string | undefined)[] = [];
  if (c.needs(0))
    out[0] = generatedConv(c, c.dy, x(c, 1), hint(c, 0), {
      kernel_shape: ws.slice(2),
      strides,
      dilations,
      pads,
      group,
    });
  if (c.needs(1)) {
    const h = hint(c, 1);
    const ys = g.shape(c.dy);
    const [n, m] = [ys[0]!, ys[1]!];
    const grouped = g.reshape(c.dy, [n, group, m / group, ...ys.slice(2)], h);
    const asBatch = g.op('Transpose', [grouped], h, { perm: [2, 1, 0, ...spatialAxes.map((a) => a + 1)] });
    const input = g.reshape(asBatch, [m / group, group * n, ...ys.slice(2)], h);
    const filters = g.op('Transpose', [x(c, 0)], h, { perm: [1, 0, ...spatialAxes] });
    const corr = generatedConv(c, input, filters, h, {
      kernel_shape: xs.slice(2),
      strides: dilations,
      dilations: strides,
      pads,
      group,
    });
    let dw = g.op('Transpose', [corr], h, { perm: [1, 0, ...spatialAxes] });
    if (
      g
        .shape(dw)
        .slice(2)
        .some((d, i) => d !== ws[i + 2])
    )
      dw = g.op(
        'Slice',
        [
          dw,
          g.int64Constant(spatialAxes.map(() => 0)),
          g.int64Constant(ws.slice(2)),
          g.int64Constant(spatialAxes),
        ],
        h,
      );
    out[1] = dw;
  }
  if (c.node.input[2] && c.needs(2))
    out[2] = g.reduce('ReduceSum', c.dy, [0, ...spatialAxes], false, hint(c, 2));
  return out;
}

/**
 * Conv's input gradient: ConvTranspose(dY, W) cut to X (window.ts scatterBack). With groups of
 * more than one filter, one ungrouped ConvTranspose per group, joined with Concat: ORT 1.30's
 * WebGPU ConvTranspose computes wrong values for groups of 2 or 4 input channels (measured off by
 * 1.6 against the CPU EP). Depthwise convolutions (one filter per group) keep the grouped op.
 */
function inputGrad(c: RuleContext, ws: number[], group: number, w: Window, spatial: number[]): string {
  const g = c.g;
  const h = hint(c, 0);
  const perGroup = ws[0]! / group;
  if (group === 1 || perGroup === 1) return scatterBack(g, c.dy, x(c, 1), group, w, spatial, h);
  const parts = Array.from({ length: group }, (_, j) => {
    const bounds = (axis: number) => [
      g.int64Constant([j * perGroup]),
      g.int64Constant([(j + 1) * perGroup]),
      g.int64Constant([axis]),
    ];
    const dy = g.op('Slice', [c.dy, ...bounds(1)], h);
    const filters = g.op('Slice', [x(c, 1), ...bounds(0)], h);
    return scatterBack(g, dy, filters, 1, w, spatial, h);
  });
  return g.op('Concat', parts, h, { axis: 1 });
}

export const CONV_OPS: OpFamily = {
  /**
   * Y = X (*) W + B over 1, 2 or 3 spatial axes, with group (depthwise included), strides, pads,
   * auto_pad and dilations. dX = ConvTranspose(dY, W) cut to X (window.ts scatterBack); dW is a
   * Conv (weightGrad); dB sums dY over every axis but the channels.
   */
  Conv: {
    infer: (c) => {
      const { xs, ws, window } = convShapes(c);
      writeExplicit(c.node, window);
      return [{ kind: 'float', shape: [xs[0]!, ws[0]!, ...window.out] }];
    },
    backward: (c) => {
      const xs = c.g.shape(x(c, 0));
      const ws = c.g.shape(x(c, 1));
      const group = intAttribute(c.node, 'group', 1);
      // The node's attributes were written explicitly at inference (writeExplicit).
      const w = checkedWindow(c.node, xs.slice(2), ws.slice(2));
      return [
        c.needs(0) ? inputGrad(c, ws, group, w, xs.slice(2)) : undefined,
        c.needs(1) ? weightGrad(c, xs, ws, group, w) : undefined,
        c.node.input[2] && c.needs(2)
          ? c.g.reduce('ReduceSum', c.dy, [0, ...xs.slice(2).map((_, i) => i + 2)], false, hint(c, 2))
          : undefined,
      ];
    },
  },
  /**
   * Y [N, W[1] * group, ...] from X [N, C, ...] and W [C, M/group, ...kernel]: stride * (in - 1) +
   * output_padding + (kernel - 1) * dilation + 1 - pads, or output_shape when given, or
   * in * stride for auto_pad SAME_*. Strides, dilations and kernel_shape are written explicitly
   * (JSEP needs explicit dilations). Backward (explicit pads only): convTransposeGrads.
   */
  ConvTranspose: {
    backward: (c) => convTransposeGrads(c),
    infer: (c) => {
      const xs = c.floatInput(0);
      const ws = c.floatInput(1);
      if (xs.length < 3 || ws.length !== xs.length)
        c.fail(
          `has input [${xs}] and weights [${ws}]; expected [N, C, ...spatial] and [C, M/group, ...kernel]`,
        );
      const group = intAttribute(c.node, 'group', 1);
      if (group < 1 || ws[0] !== xs[1] || xs[1]! % group !== 0)
        c.fail(
          `has group ${group}, input channels ${xs[1]} and weights [${ws}]; expected W[0] = C, divisible by group`,
        );
      const r = xs.length - 2;
      const spatial = xs.slice(2);
      const kernel = ws.slice(2);
      const given = intsAttribute(c.node, 'kernel_shape');
      if (given && given.join() !== kernel.join())
        c.fail(`has kernel_shape [${given}] but weights of shape [${ws}]`);
      const ints = (name: string, fallback: number) =>
        intsAttribute(c.node, name) ?? new Array<number>(r).fill(fallback);
      const strides = ints('strides', 1);
      const dilations = ints('dilations', 1);
      const outputPadding = ints('output_padding', 0);
      const pads = intsAttribute(c.node, 'pads') ?? new Array<number>(2 * r).fill(0);
      if ([strides, dilations, outputPadding].some((v) => v.length !== r) || pads.length !== 2 * r)
        c.fail('has strides, dilations, output_padding or pads of the wrong length');
      const auto = stringAttribute(c.node, 'auto_pad', 'NOTSET');
      const outputShape = intsAttribute(c.node, 'output_shape');
      let out: number[];
      if (outputShape) {
        out = outputShape.slice(-r);
        if (out.length !== r) c.fail(`has output_shape [${outputShape}] for ${r} spatial axes`);
      } else if (auto === 'SAME_UPPER' || auto === 'SAME_LOWER') out = spatial.map((d, i) => d * strides[i]!);
      else
        out = spatial.map(
          (d, i) =>
            strides[i]! * (d - 1) +
            outputPadding[i]! +
            (kernel[i]! - 1) * dilations[i]! +
            1 -
            (auto === 'VALID' ? 0 : pads[i]! + pads[i + r]!),
        );
      if (out.some((d) => d < 1)) c.fail(`has an output of spatial sizes [${out}]`);
      if (c.node.input[2]) {
        const b = c.floatInput(2);
        if (b.length !== 1 || b[0] !== ws[1]! * group)
          c.fail(`has a bias of shape [${b}]; expected [${ws[1]! * group}]`);
      }
      const explicit = new Set(['strides', 'dilations', 'kernel_shape']);
      c.node.attribute = [
        ...c.node.attribute.filter((a) => !explicit.has(a.name)),
        attribute('kernel_shape', kernel),
        attribute('strides', strides),
        attribute('dilations', dilations),
      ];
      return [{ kind: 'float', shape: [xs[0]!, ws[1]! * group, ...out] }];
    },
  },
};
