import type { NodeProto } from 'onnx-buf';
import type { GraphBuilder, ShapeContext } from '../graph.js';
import { attribute, intAttribute, intsAttribute, stringAttribute } from '../proto.js';

/** A sliding window over the spatial axes (Conv, ConvTranspose, pools), every attribute resolved. */
export interface Window {
  kernel: number[];
  strides: number[];
  dilations: number[];
  padsBegin: number[];
  padsEnd: number[];
  /** Output spatial sizes. */
  out: number[];
}

/**
 * The window of a node whose attributes were checked at inference (a backward rule reading them
 * again cannot meet a bad one).
 */
export function checkedWindow(
  node: NodeProto,
  spatial: readonly number[],
  kernel: readonly number[],
): Window {
  return windowOf(
    {
      node,
      fail: (what) => {
        throw new Error(`internal: ${what}`);
      },
    },
    spatial,
    kernel,
  );
}

/** The span a dilated kernel covers: (k - 1) * d + 1. */
export const span = (w: Window, i: number) => (w.kernel[i]! - 1) * w.dilations[i]! + 1;

/**
 * Resolves a windowed op's strides, dilations, pads (auto_pad included) and output sizes over
 * `spatial` input sizes, as ONNX (and ONNX Runtime) define them; `ceil` is a pool's ceil_mode,
 * where a last window that would start in the end padding is dropped.
 */
export function windowOf(
  c: Pick<ShapeContext, 'node' | 'fail'>,
  spatial: readonly number[],
  kernel: readonly number[],
): Window {
  const r = spatial.length;
  const ints = (name: string, fallback: number) => {
    const v = intsAttribute(c.node, name) ?? new Array<number>(r).fill(fallback);
    if (v.length !== r) c.fail(`has ${name} [${v}] of length ${v.length}; the input has ${r} spatial axes`);
    if (v.some((d) => !Number.isInteger(d) || d < (name === 'pads' ? 0 : 1)))
      c.fail(`has ${name} [${v}]; expected ${name === 'pads' ? 'non-negative' : 'positive'} integers`);
    return v;
  };
  const strides = ints('strides', 1);
  const dilations = ints('dilations', 1);
  const ceil = intAttribute(c.node, 'ceil_mode', 0) === 1;
  const autoPad = stringAttribute(c.node, 'auto_pad', 'NOTSET');
  let padsBegin: number[];
  let padsEnd: number[];
  const w = { kernel: [...kernel], strides, dilations, padsBegin: [], padsEnd: [], out: [] } as Window;
  if (autoPad === 'NOTSET' || autoPad === 'VALID') {
    const pads = intsAttribute(c.node, 'pads') ?? new Array<number>(2 * r).fill(0);
    if (pads.length !== 2 * r) c.fail(`has pads [${pads}]; expected ${2 * r} values (begins, then ends)`);
    if (pads.some((p) => !Number.isInteger(p) || p < 0)) c.fail(`has pads [${pads}]; expected non-negative`);
    padsBegin = autoPad === 'VALID' ? new Array<number>(r).fill(0) : pads.slice(0, r);
    padsEnd = autoPad === 'VALID' ? new Array<number>(r).fill(0) : pads.slice(r);
  } else if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') {
    padsBegin = [];
    padsEnd = [];
    spatial.forEach((d, i) => {
      const out = Math.ceil(d / strides[i]!);
      const total = Math.max(0, (out - 1) * strides[i]! + span(w, i) - d);
      const small = Math.floor(total / 2);
      padsBegin.push(autoPad === 'SAME_UPPER' ? small : total - small);
      padsEnd.push(autoPad === 'SAME_UPPER' ? total - small : small);
    });
  } else c.fail(`has auto_pad "${autoPad}"; expected NOTSET, VALID, SAME_UPPER or SAME_LOWER`);
  w.padsBegin = padsBegin;
  w.padsEnd = padsEnd;
  w.out = spatial.map((d, i) => {
    const room = d + padsBegin[i]! + padsEnd[i]! - span(w, i);
    if (room < 0) c.fail(`has a window of span ${span(w, i)} larger than the padded input (${d} + pads)`);
    let out = (ceil ? Math.ceil(room / strides[i]!) : Math.floor(room / strides[i]!)) + 1;
    if (ceil && (out - 1) * strides[i]! >= d + padsBegin[i]!) out--;
    return out;
  });
  return w;
}

/**
 * Writes the window's attributes explicitly on the node (pads instead of auto_pad, strides and
 * dilations even when 1): ORT's JSEP Conv needs explicit dilations, and the backward rule reads
 * the same resolved values.
 */
export function writeExplicit(node: NodeProto, w: Window): void {
  const names = new Set(['auto_pad', 'pads', 'strides', 'dilations', 'kernel_shape']);
  node.attribute = [
    ...node.attribute.filter((a) => !names.has(a.name)),
    attribute('kernel_shape', w.kernel),
    attribute('strides', w.strides),
    attribute('dilations', w.dilations),
    attribute('pads', [...w.padsBegin, ...w.padsEnd]),
  ];
}

/** The window's attributes for a generated node (every one explicit). */
export const windowAttributes = (w: Window) => ({
  kernel_shape: w.kernel,
  strides: w.strides,
  dilations: w.dilations,
  pads: [...w.padsBegin, ...w.padsEnd],
});

/**
 * The adjoint of sliding `weight` over an input of spatial sizes `inSpatial` with window `w`:
 * ConvTranspose without pads (every attribute explicit) gives the gradient over the padded input,
 * which is then cut to [padsBegin, padsBegin + in) (zero-extended first where the windows never
 * reach the input's end). Conv's input gradient and the pools' gradients (one-hot or uniform
 * depthwise kernels) are this.
 */
export function scatterBack(
  g: GraphBuilder,
  t: string,
  weight: string,
  group: number,
  w: Window,
  inSpatial: readonly number[],
  name: string,
): string {
  const r = inSpatial.length;
  const full = g.op('ConvTranspose', [t, weight], name, {
    ...windowAttributes(w),
    pads: new Array<number>(2 * r).fill(0),
    group,
  });
  const fullShape = g.shape(full);
  const sizes = fullShape.slice(2);
  const short = inSpatial.map((d, i) => Math.max(0, w.padsBegin[i]! + d - sizes[i]!));
  let padded = full;
  if (short.some((s) => s > 0))
    padded = g.op('Pad', [full, g.int64Constant([0, 0, ...short.map(() => 0), 0, 0, ...short])], name);
  const cut = inSpatial.some((d, i) => w.padsBegin[i]! !== 0 || sizes[i]! + short[i]! !== d);
  if (!cut) return padded;
  const axes = inSpatial.map((_, i) => i + 2);
  return g.op(
    'Slice',
    [
      padded,
      g.int64Constant(w.padsBegin),
      g.int64Constant(inSpatial.map((d, i) => w.padsBegin[i]! + d)),
      g.int64Constant(axes),
    ],
    name,
  );
}
