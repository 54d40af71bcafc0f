import { create, toBinary } from '@bufbuild/protobuf';
import {
  GraphProtoSchema,
  ModelProtoSchema,
  OperatorSetIdProtoSchema,
  type TensorProto,
  TensorProto_DataType,
} from 'onnx-buf';
import {
  type AttributeValue,
  attribute,
  floatAttribute,
  floatTensor,
  int64Tensor,
  makeNode,
} from '../autodiff/proto.js';
import { type Dim, tensorInfo } from '../graphs/onnx-proto.js';

/** A node of a hand-written forward model: [opType, inputs, outputs, attributes?]. */
export type NodeSpec = [string, string[], string[], Record<string, AttributeValue | { float: number }>?];

export interface ForwardSpec {
  inputs: Record<string, Dim[]>;
  /** Float initializers: [shape, values]. */
  params?: Record<string, [number[], ArrayLike<number>]>;
  /** int64 initializers (shapes, axes): 1-D values. */
  ints?: Record<string, number[]>;
  /** int64 initializers of any shape (indices): [shape, values]. */
  intTensors?: Record<string, [number[], number[]]>;
  /** int64 graph inputs (token ids). */
  intInputs?: Record<string, Dim[]>;
  nodes: NodeSpec[];
  outputs: Record<string, Dim[]>;
  double?: boolean;
  opset?: number;
  domain?: string;
  /** Extra initializers as they are (external data, quantized types...). */
  raw?: TensorProto[];
}

/** Encodes a small forward model for the tests (standard ai.onnx ops, IR 8). */
export function forwardModel(spec: ForwardSpec): Uint8Array {
  const type = spec.double ? TensorProto_DataType.DOUBLE : TensorProto_DataType.FLOAT;
  const nodes = spec.nodes.map(([op, inputs, outputs, attrs], k) => {
    const n = makeNode(
      op,
      inputs,
      outputs,
      `node${k}_${op}`,
      Object.entries(attrs ?? {}).map(([name, v]) =>
        typeof v === 'object' && v !== null && 'float' in v
          ? floatAttribute(name, v.float)
          : attribute(name, v as AttributeValue),
      ),
    );
    if (spec.domain && k === spec.nodes.length - 1) n.domain = spec.domain;
    return n;
  });
  const initializer = [
    ...Object.entries(spec.params ?? {}).map(([name, [shape, values]]) =>
      floatTensor(name, type, shape, values),
    ),
    ...Object.entries(spec.ints ?? {}).map(([name, values]) => int64Tensor(name, [values.length], values)),
    ...Object.entries(spec.intTensors ?? {}).map(([name, [shape, values]]) =>
      int64Tensor(name, shape, values),
    ),
    ...(spec.raw ?? []),
  ];
  const graph = create(GraphProtoSchema, {
    name: 'forward',
    node: nodes,
    input: [
      ...Object.entries(spec.inputs).map(([name, dims]) => tensorInfo(name, dims, type)),
      ...Object.entries(spec.intInputs ?? {}).map(([name, dims]) =>
        tensorInfo(name, dims, TensorProto_DataType.INT64),
      ),
    ],
    output: Object.entries(spec.outputs).map(([name, dims]) => tensorInfo(name, dims, type)),
    initializer,
  });
  return toBinary(
    ModelProtoSchema,
    create(ModelProtoSchema, {
      irVersion: 8n,
      opsetImport: [create(OperatorSetIdProtoSchema, { domain: '', version: BigInt(spec.opset ?? 17) })],
      graph,
    }),
  );
}

/** Deterministic values in [-1, 1) (a linear congruential generator). */
export function random(n: number, seed: number, scale = 1): number[] {
  let s = seed >>> 0 || 1;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return ((s / 2 ** 32) * 2 - 1) * scale;
  });
}

/** Values in [lo, hi) (for Log, Sqrt, Div's denominator). */
export function positive(n: number, seed: number, lo = 0.5, hi = 2): number[] {
  return random(n, seed).map((v) => lo + ((v + 1) / 2) * (hi - lo));
}

/** A two-layer MLP: x[B,inF] -> MatMul W1 + b1 -> Relu -> MatMul W2 + b2 -> logits[B,classes]. */
export function mlpModel(options: {
  batch: Dim;
  inF: number;
  hidden: number;
  classes: number;
  seed?: number;
}): Uint8Array {
  const { batch, inF, hidden, classes } = options;
  const seed = options.seed ?? 1;
  return forwardModel({
    inputs: { x: [batch, inF] },
    params: {
      W1: [[inF, hidden], random(inF * hidden, seed, Math.sqrt(6 / (inF + hidden)))],
      b1: [[hidden], random(hidden, seed + 1, 0.1)],
      W2: [[hidden, classes], random(hidden * classes, seed + 2, Math.sqrt(6 / (hidden + classes)))],
      b2: [[classes], random(classes, seed + 3, 0.1)],
    },
    nodes: [
      ['MatMul', ['x', 'W1'], ['h0']],
      ['Add', ['h0', 'b1'], ['h1']],
      ['Relu', ['h1'], ['h']],
      ['MatMul', ['h', 'W2'], ['z0']],
      ['Add', ['z0', 'b2'], ['logits']],
    ],
    outputs: { logits: [batch, classes] },
  });
}

/** Sizes of encoderModel: vocabulary, width, heads, feed-forward width, positions, classes. */
export const ENCODER = { vocab: 11, width: 8, heads: 2, ffn: 16, positions: 16, classes: 2 } as const;

/**
 * A one-layer BERT-shaped encoder classifier that uses every op the autodiff supports except
 * LogSoftmax and Gelu (which ORT's WebGPU EP does not run; they have their own finite-difference
 * cases): int64 token ids and mask -> word and position embeddings (Gather; position ids sliced
 * by a length computed with Shape/Gather/Unsqueeze, as Hugging Face exports do) -> Dropout
 * (inference) -> LayerNormalization -> two-head self-attention with an additive mask (Cast, Sub,
 * Mul), Softmax -> residual, LayerNormalization -> feed-forward with GELU written with Erf ->
 * LeakyRelu, Concat, Slice, Where, Pow -> first-token pooling (Gather axis 1), Gemm, Tanh ->
 * Unsqueeze/Squeeze -> logits[batch, classes]. Shapes of the attention reshapes are [0, 0, ...],
 * so the model runs at any batch size and length. The mask is int64, as Hugging Face models take
 * it: its Unsqueeze and Cast run on the host (ORT's WebGPU EP has no int64 kernels for them).
 */
export function encoderModel(options: { batch: Dim; seq: Dim; seed?: number }): Uint8Array {
  const { vocab: V, width: D, heads: H, ffn: F, positions: P, classes: C } = ENCODER;
  const seed = options.seed ?? 1;
  const w = (shape: number[], k: number, scale = 0.5): [number[], number[]] => [
    shape,
    random(
      shape.reduce((a, b) => a * b, 1),
      seed + k,
      scale,
    ),
  ];
  const constant = (name: string, value: number): NodeSpec => [
    'Constant',
    [],
    [name],
    { value_float: { float: value } } as never,
  ];
  return forwardModel({
    inputs: {},
    intInputs: { ids: [options.batch, options.seq], mask: [options.batch, options.seq] },
    params: {
      E: w([V, D], 1),
      Pe: w([P, D], 2),
      ln1_s: [[D], new Array(D).fill(1)],
      ln1_b: [[D], new Array(D).fill(0)],
      Wq: w([D, D], 3),
      Wk: w([D, D], 4),
      Wv: w([D, D], 5),
      Wo: w([D, D], 6),
      ln2_s: [[D], new Array(D).fill(1)],
      ln2_b: [[D], new Array(D).fill(0)],
      W1: w([D, F], 7),
      b1: w([F], 8, 0.1),
      W2: w([F, D], 9),
      Wp: w([D, D], 10),
      bp: w([D], 11, 0.1),
      Wc: w([D, C], 12),
      bc: w([C], 13, 0.1),
    },
    ints: {
      zero: [0],
      axis1: [1],
      heads: [0, 0, H, D / H],
      merge: [0, 0, D],
      axes12: [1, 2],
      half: [D / 2],
      end: [D / 2 + D],
      last: [2],
    },
    intTensors: {
      position_ids: [[1, P], Array.from({ length: P }, (_, i) => i)],
      first: [[], [0]],
      second: [[], [1]],
    },
    nodes: [
      ['Shape', ['ids'], ['ids_shape']],
      ['Gather', ['ids_shape', 'second'], ['length']],
      ['Unsqueeze', ['length', 'zero'], ['length1']],
      ['Slice', ['position_ids', 'zero', 'length1', 'axis1'], ['pids']],
      ['Gather', ['Pe', 'pids'], ['pos']],
      ['Gather', ['E', 'ids'], ['tok']],
      ['Add', ['tok', 'pos'], ['emb']],
      ['Dropout', ['emb'], ['emb_d']],
      ['LayerNormalization', ['emb_d', 'ln1_s', 'ln1_b'], ['h0'], { epsilon: { float: 1e-5 } }],
      ['MatMul', ['h0', 'Wq'], ['q']],
      ['Reshape', ['q', 'heads'], ['q4']],
      ['Transpose', ['q4'], ['qt'], { perm: [0, 2, 1, 3] }],
      ['MatMul', ['h0', 'Wk'], ['k']],
      ['Reshape', ['k', 'heads'], ['k4']],
      ['Transpose', ['k4'], ['kt'], { perm: [0, 2, 3, 1] }],
      ['MatMul', ['h0', 'Wv'], ['v']],
      ['Reshape', ['v', 'heads'], ['v4']],
      ['Transpose', ['v4'], ['vt'], { perm: [0, 2, 1, 3] }],
      ['MatMul', ['qt', 'kt'], ['scores']],
      constant('sqrt_dh', Math.sqrt(D / H)),
      ['Div', ['scores', 'sqrt_dh'], ['scaled']],
      ['Unsqueeze', ['mask', 'axes12'], ['mask4']],
      ['Cast', ['mask4'], ['maskf'], { to: TensorProto_DataType.FLOAT }],
      constant('one', 1),
      ['Sub', ['one', 'maskf'], ['masked']],
      constant('big', -10000),
      ['Mul', ['masked', 'big'], ['mask_bias']],
      ['Add', ['scaled', 'mask_bias'], ['biased']],
      ['Softmax', ['biased'], ['probs'], { axis: -1 }],
      ['MatMul', ['probs', 'vt'], ['ctx']],
      ['Transpose', ['ctx'], ['ctx_t'], { perm: [0, 2, 1, 3] }],
      ['Reshape', ['ctx_t', 'merge'], ['ctx_m']],
      ['MatMul', ['ctx_m', 'Wo'], ['attn']],
      ['Add', ['attn', 'h0'], ['r1']],
      ['LayerNormalization', ['r1', 'ln2_s', 'ln2_b'], ['h1']],
      ['MatMul', ['h1', 'W1'], ['f0']],
      ['Add', ['f0', 'b1'], ['f1']],
      constant('sqrt2', Math.SQRT2),
      ['Div', ['f1', 'sqrt2'], ['f2']],
      ['Erf', ['f2'], ['f3']],
      ['Add', ['f3', 'one'], ['f4']],
      ['Mul', ['f1', 'f4'], ['f5']],
      constant('halfway', 0.5),
      ['Mul', ['f5', 'halfway'], ['gelu']],
      ['MatMul', ['gelu', 'W2'], ['f6']],
      ['Add', ['f6', 'h1'], ['h2']],
      ['LeakyRelu', ['h2'], ['leaky'], { alpha: { float: 0.1 } }],
      ['Concat', ['leaky', 'h2'], ['both'], { axis: -1 }],
      ['Slice', ['both', 'half', 'end', 'last'], ['window']],
      ['Greater', ['window', 'h2'], ['larger']],
      ['Where', ['larger', 'window', 'h2'], ['top']],
      constant('two', 2),
      ['Pow', ['top', 'two'], ['squared']],
      ['Add', ['squared', 'top'], ['z']],
      ['Gather', ['z', 'first'], ['cls'], { axis: 1 }],
      ['Gemm', ['cls', 'Wp', 'bp'], ['pooled0']],
      ['Tanh', ['pooled0'], ['pooled']],
      ['Unsqueeze', ['pooled', 'axis1'], ['pooled3']],
      ['Squeeze', ['pooled3', 'axis1'], ['pooled2']],
      ['MatMul', ['pooled2', 'Wc'], ['z0']],
      ['Add', ['z0', 'bc'], ['logits']],
    ],
    outputs: { logits: [options.batch, C] },
  });
}

/**
 * A batch of B token sequences of length L for encoderModel: ids 1..10, the last 0-2 positions padding (id 0, mask 0);
 * class 1 when token 3 occurs among the real tokens. Positive rows are made half the batch by
 * planting a 3 at a random real position.
 */
export function tokenBatch(
  seed: number,
  B = 8,
  L = 6,
): { ids: BigInt64Array; mask: BigInt64Array; labels: Float32Array } {
  const r = random(3 * B * L, seed).map((v) => (v + 1) / 2);
  const ids = new BigInt64Array(B * L);
  const mask = new BigInt64Array(B * L);
  const labels = new Float32Array(B * ENCODER.classes);
  for (let b = 0; b < B; b++) {
    const real = L - Math.floor(r[b]! * 3);
    for (let t = 0; t < L; t++) {
      const id = t < real ? 1 + Math.floor(r[B + b * L + t]! * 10) : 0;
      ids[b * L + t] = BigInt(id === 3 ? 4 : id);
      mask[b * L + t] = t < real ? 1n : 0n;
    }
    const positive = b % 2 === 1;
    if (positive) ids[b * L + 1 + Math.floor(r[2 * B * L - b - 1]! * (real - 1))] = 3n;
    labels[b * ENCODER.classes + (positive ? 1 : 0)] = 1;
  }
  return { ids, mask, labels };
}
