import { TensorProto_DataType } from 'onnx-buf';
import { encodeModel, node, tensorInfo } from './onnx-proto.js';
import { productNodes } from './update-graph.js';

/**
 * Which elements of a group's flat tensors a step updates, and how:
 * - 'later': every member has a gradient and a buffer (the steady state);
 * - 'first': every member has a gradient and none has a buffer yet (the first step);
 * - 'masked': anything else: boolean inputs `present` and `first` (one per element) select, per
 *   element, whether it changes and which buffer formula applies.
 */
export type FlatUpdateMode = 'later' | 'first' | 'masked';

/** Value names of the flat update graph (one group's parameters concatenated, float32). */
export const flatUpdateNames = {
  param: 'p',
  grad: 'g',
  buffer: 'buf',
  present: 'present',
  first: 'first',
  newParam: 'p_out',
  newBuffer: 'buf_out',
  /** The six multipliers [c0..c5] (SPEC §2.1 order), float32 scalars. */
  coefficient: (k: number) => `c${k}`,
  /** The first step's multiplier of p in buf' (bufFromBuf + bufFromParam, rounded once). */
  firstStepCoefficient: 'c1_first',
  scale: (k: number) => `s${k}`,
  firstStepScale: 's1_first',
} as const;

/**
 * One AccSGD step over a group's flat tensors of any length `n` (a symbolic dimension, so one
 * session serves every group and every parameter count), with the fused form of SPEC §2.1 in
 * @accsgd/core's float32 operation order:
 *
 *   buf' = (c0 * buf + c1 * p) + c2 * g           first step: buf' = c1first * p + c2 * g
 *   p'   = (c3 * p + c4 * g) + c5 * buf'
 *
 * Each product and sum is its own node, rounded to float32 once, as core rounds it. In 'masked'
 * mode, Where picks per element between the two buffer formulas (`first`) and between the new and
 * the old values (`present`): an element of a parameter without a gradient keeps its bits, and a
 * value Where does not pick never reaches the output (a stale buffer under a first step included).
 * `scaled`: each product c * x is (c * x) * s, for multipliers subnormal in float32 on a device
 * that flushes them (see scaledMultiplier).
 */
export function buildFlatUpdateGraph(mode: FlatUpdateMode, options: { scaled?: boolean } = {}): Uint8Array {
  const n = flatUpdateNames;
  const scaled = options.scaled === true;
  const nodes: ReturnType<typeof node>[] = [];
  const inputs = [tensorInfo(n.param, ['n']), tensorInfo(n.grad, ['n'])];
  const product = productNodes(nodes, scaled);
  const scalarInput = (name: string, scale: string) => {
    inputs.push(tensorInfo(name, []));
    if (scaled) inputs.push(tensorInfo(scale, []));
  };
  const usesLater = mode !== 'first';
  const usesFirst = mode !== 'later';
  if (usesLater) inputs.push(tensorInfo(n.buffer, ['n']));
  if (mode === 'masked')
    inputs.push(
      tensorInfo(n.present, ['n'], TensorProto_DataType.BOOL),
      tensorInfo(n.first, ['n'], TensorProto_DataType.BOOL),
    );
  for (let k = 0; k < 6; k++) if (usesLater || k >= 2) scalarInput(n.coefficient(k), n.scale(k));
  if (usesFirst) scalarInput(n.firstStepCoefficient, n.firstStepScale);

  if (usesLater) {
    product(n.coefficient(0), n.scale(0), n.buffer, 'c0b');
    product(n.coefficient(1), n.scale(1), n.param, 'c1p');
    nodes.push(node('Add', ['c0b', 'c1p'], ['head_later']));
  }
  if (usesFirst) product(n.firstStepCoefficient, n.firstStepScale, n.param, 'head_first');
  const head = mode === 'masked' ? 'head' : usesLater ? 'head_later' : 'head_first';
  if (mode === 'masked') nodes.push(node('Where', [n.first, 'head_first', 'head_later'], ['head']));
  product(n.coefficient(2), n.scale(2), n.grad, 'c2g');
  const newBuffer = mode === 'masked' ? 'buf_stepped' : n.newBuffer;
  nodes.push(node('Add', [head, 'c2g'], [newBuffer]));
  product(n.coefficient(3), n.scale(3), n.param, 'c3p');
  product(n.coefficient(4), n.scale(4), n.grad, 'c4g');
  nodes.push(node('Add', ['c3p', 'c4g'], ['pg']));
  product(n.coefficient(5), n.scale(5), newBuffer, 'c5b');
  const newParam = mode === 'masked' ? 'p_stepped' : n.newParam;
  nodes.push(node('Add', ['pg', 'c5b'], [newParam]));
  if (mode === 'masked') {
    nodes.push(node('Where', [n.present, 'p_stepped', n.param], [n.newParam]));
    nodes.push(node('Where', [n.present, 'buf_stepped', n.buffer], [n.newBuffer]));
  }
  return encodeModel({
    name: `accsgd_flat_update_${mode}`,
    nodes,
    inputs,
    outputs: [tensorInfo(n.newParam, ['n']), tensorInfo(n.newBuffer, ['n'])],
    docString: 'One AccSGD step (SPEC §2.1, fused form) over one group of flat float32 tensors.',
  });
}

/**
 * Most float32 elements in one flat tensor: 2^25 (128 MiB), the storage-buffer binding size every
 * WebGPU adapter is guaranteed (Chromium's default limit). A larger group is stored as several
 * flat segments; a parameter larger than this has a segment of its own, as before flat storage.
 */
export const FLAT_SEGMENT_ELEMENTS = 2 ** 25;

/**
 * The flat segments of the parameters: consecutive parameters of one group whose lengths sum to at
 * most `maxElements` (a longer parameter alone). Parameters are numbered across groups in order;
 * `groupSizes[g]` is group g's count.
 */
export function flatSegments(
  lengths: readonly number[],
  groupSizes: readonly number[],
  maxElements: number,
): { group: number; members: number[] }[] {
  const segments: { group: number; members: number[] }[] = [];
  let index = 0;
  groupSizes.forEach((size, group) => {
    let current: number[] = [];
    let total = 0;
    for (let k = 0; k < size; k++, index++) {
      const length = lengths[index]!;
      if (current.length > 0 && total + length > maxElements) {
        segments.push({ group, members: current });
        current = [];
        total = 0;
      }
      current.push(index);
      total += length;
    }
    if (current.length > 0) segments.push({ group, members: current });
  });
  return segments;
}

/**
 * Parameters one split run hands out: a shader binds its input and every output as storage
 * buffers, and WebGPU guarantees 8 per stage (ORT's Split fails beyond the adapter's limit).
 */
export const SPLIT_OUTPUTS = 7;

/**
 * The widest Split an adapter runs, from ORT's refusal of a wider one ("... Too many storage
 * buffers in shader. Current: 13, Max is 12"): the limit less the input's buffer, at most
 * `probed`. Any other error, or a message worded otherwise: SPLIT_OUTPUTS, which WebGPU guarantees.
 */
export function splitWidthAfterRefusal(error: unknown, probed: number): number {
  const limit = Number(
    /Too many storage buffers in shader\. Current: \d+, Max is (\d+)/.exec(String(error))?.[1],
  );
  return Number.isInteger(limit) && limit - 1 > SPLIT_OUTPUTS ? Math.min(limit - 1, probed) : SPLIT_OUTPUTS;
}

/**
 * Elements [start, end) of a flat tensor cut into `count` consecutive parts of the int64
 * `lengths` (y0, y1, ...): up to SPLIT_OUTPUTS parameters' own tensors per run, from one session
 * per count whatever the group.
 */
export function buildSliceSplitModel(count: number): Uint8Array {
  const outputs = Array.from({ length: count }, (_, k) => `y${k}`);
  const nodes = [node('Slice', ['x', 'start', 'end'], [count === 1 ? 'y0' : 'part'])];
  if (count > 1) nodes.push(node('Split', ['part', 'lengths'], outputs));
  return encodeModel({
    name: `accsgd_slice_split_${count}`,
    nodes,
    inputs: [
      tensorInfo('x', ['n']),
      tensorInfo('start', [1], TensorProto_DataType.INT64),
      tensorInfo('end', [1], TensorProto_DataType.INT64),
      ...(count > 1 ? [tensorInfo('lengths', [count], TensorProto_DataType.INT64)] : []),
    ],
    outputs: outputs.map((y, k) => tensorInfo(y, [`n${k}`])),
  });
}
