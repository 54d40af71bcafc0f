import { encodeModel, node, tensorInfo } from './onnx-proto.js';

/**
 * One parameter of an update graph. Tensors are flat ([size] elements, row-major); the optimizer
 * keeps the logical shape. `initialise` marks the parameter's first step: its buffer is taken to be
 * a copy of the parameter, so the graph has no buffer input for it (SPEC §2.1, first step).
 */
export interface UpdateGraphParam {
  /** Index used in the graph's value names (p_<index>, g_<index>, ...): unique within a graph. */
  index: number;
  size: number;
  /** The group whose coefficient inputs this parameter uses. */
  group: number;
  initialise: boolean;
}

/** Value names of the update graph, so that feeds and fetches are spelt in one place. */
export const updateGraphNames = {
  param: (i: number) => `p_${i}`,
  grad: (i: number) => `g_${i}`,
  buffer: (i: number) => `buf_${i}`,
  newParam: (i: number) => `p_${i}_out`,
  newBuffer: (i: number) => `buf_${i}_out`,
  /** The six multipliers [c0..c5] of group `g` (SPEC §2.1 order), float32 scalars. */
  coefficient: (g: number, k: number) => `group${g}_c${k}`,
  /** The first step's multiplier of p in buf' (bufFromBuf + bufFromParam, rounded once). */
  firstStepCoefficient: (g: number) => `group${g}_c1_first`,
  /** In a scaled graph (see buildUpdateGraph), the scale of coefficient k of group `g`. */
  scale: (g: number, k: number) => `group${g}_s${k}`,
  firstStepScale: (g: number) => `group${g}_s1_first`,
} as const;

/**
 * A float32 multiplier as a scaled graph takes it: [coefficient, scale] with coefficient * scale
 * equal to `value`; a subnormal one is fed times 2^64 with a scale of 2^-64 (both exact), so that a
 * device that flushes subnormal inputs to zero (ORT's WebGPU EP on SwiftShader does) keeps it.
 */
export function scaledMultiplier(value: number): [number, number] {
  return value !== 0 && Math.abs(value) < 2 ** -126 ? [value * 2 ** 64, 2 ** -64] : [value, 1];
}

/** The ops the update graph uses: standard ai.onnx only. */
export const UPDATE_GRAPH_OPS = ['Mul', 'Add'] as const;

/**
 * A function appending the nodes of out = coefficient * x to `nodes`. `scaled`: as
 * (coefficient * x) * scale, with scale an input (scaledMultiplier), for multipliers that are
 * subnormal in float32 on a device that flushes them.
 */
export function productNodes(
  nodes: ReturnType<typeof node>[],
  scaled: boolean,
): (coefficient: string, scale: string, x: string, out: string) => void {
  return (coefficient, scale, x, out) => {
    if (!scaled) {
      nodes.push(node('Mul', [coefficient, x], [out]));
      return;
    }
    nodes.push(node('Mul', [coefficient, x], [`${out}_unscaled`]));
    nodes.push(node('Mul', [`${out}_unscaled`, scale], [out]));
  };
}

/**
 * The ONNX model of one AccSGD step over `params`, in float32, with the fused form of SPEC §2.1 in
 * the same operation order as @accsgd/core's float32 fusedUpdate:
 *
 *   buf' = (c0 * buf + c1 * p) + c2 * g           first step: buf' = c1first * p + c2 * g
 *   p'   = (c3 * p + c4 * g) + c5 * buf'
 *
 * Each product and sum is its own node, so each is rounded to float32 once, as core rounds it. The
 * multipliers are graph inputs (0-d float32 tensors, one set per group): a learning-rate change
 * feeds new numbers to the same session. Parameters without a gradient this step are simply not in
 * the graph (the optimizer builds one graph per pattern of present / first-step parameters), so
 * their values and buffers are untouched bit for bit.
 */
export function buildUpdateGraph(
  params: readonly UpdateGraphParam[],
  options: { scaled?: boolean } = {},
): Uint8Array {
  const n = updateGraphNames;
  const scaled = options.scaled === true;
  const nodes: ReturnType<typeof node>[] = [];
  const inputs = [];
  const outputs = [];
  const product = productNodes(nodes, scaled);
  const groups = new Map<number, { first: boolean; later: boolean }>();
  for (const p of params) {
    const use = groups.get(p.group) ?? { first: false, later: false };
    if (p.initialise) use.first = true;
    else use.later = true;
    groups.set(p.group, use);
  }
  for (const [g, use] of [...groups].sort((a, b) => a[0] - b[0])) {
    for (let k = 0; k < 6; k++) {
      if ((k === 0 || k === 1) && !use.later) continue;
      inputs.push(tensorInfo(n.coefficient(g, k), []));
      if (scaled) inputs.push(tensorInfo(n.scale(g, k), []));
    }
    if (use.first) inputs.push(tensorInfo(n.firstStepCoefficient(g), []));
    if (use.first && scaled) inputs.push(tensorInfo(n.firstStepScale(g), []));
  }
  for (const p of params) {
    const i = p.index;
    const c = (k: number) => n.coefficient(p.group, k);
    const s = (k: number) => n.scale(p.group, k);
    const t = (what: string) => `t${i}_${what}`;
    inputs.push(tensorInfo(n.param(i), [p.size]), tensorInfo(n.grad(i), [p.size]));
    if (p.initialise) {
      product(n.firstStepCoefficient(p.group), n.firstStepScale(p.group), n.param(i), t('c1p'));
      product(c(2), s(2), n.grad(i), t('c2g'));
      nodes.push(node('Add', [t('c1p'), t('c2g')], [n.newBuffer(i)]));
    } else {
      inputs.push(tensorInfo(n.buffer(i), [p.size]));
      product(c(0), s(0), n.buffer(i), t('c0b'));
      product(c(1), s(1), n.param(i), t('c1p'));
      nodes.push(node('Add', [t('c0b'), t('c1p')], [t('head')]));
      product(c(2), s(2), n.grad(i), t('c2g'));
      nodes.push(node('Add', [t('head'), t('c2g')], [n.newBuffer(i)]));
    }
    product(c(3), s(3), n.param(i), t('c3p'));
    product(c(4), s(4), n.grad(i), t('c4g'));
    nodes.push(node('Add', [t('c3p'), t('c4g')], [t('pg')]));
    product(c(5), s(5), n.newBuffer(i), t('c5b'));
    nodes.push(node('Add', [t('pg'), t('c5b')], [n.newParam(i)]));
    outputs.push(tensorInfo(n.newParam(i), [p.size]), tensorInfo(n.newBuffer(i), [p.size]));
  }
  return encodeModel({
    name: 'accsgd_update',
    nodes,
    inputs,
    outputs,
    docString: 'One AccSGD step (SPEC §2.1, fused form) in float32; multipliers are inputs.',
  });
}

export interface UpdateModelParam {
  name: string;
  shape: readonly number[];
  /** Group index (default 0). */
  group?: number;
  /** Build the first-step form for this parameter (no buffer input). Default false. */
  initialise?: boolean;
}

/**
 * The update model for named parameters: value names use each parameter's position in `params`
 * (p_0, g_0, buf_0 -> p_0_out, buf_0_out; coefficients group0_c0..group0_c5, group0_c1_first).
 * Tensors are flat: feed each parameter as a 1-D tensor of its element count.
 */
export function buildAccSGDUpdateModel(options: { params: readonly UpdateModelParam[] }): Uint8Array {
  return buildUpdateGraph(
    options.params.map((p, index) => ({
      index,
      size: p.shape.reduce((a, b) => a * b, 1),
      group: p.group ?? 0,
      initialise: p.initialise ?? false,
    })),
  );
}
