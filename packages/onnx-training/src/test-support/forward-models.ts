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
  /** int64 initializers (shapes, axes). */
  ints?: Record<string, number[]>;
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
    ...(spec.raw ?? []),
  ];
  const graph = create(GraphProtoSchema, {
    name: 'forward',
    node: nodes,
    input: Object.entries(spec.inputs).map(([name, dims]) => tensorInfo(name, dims, type)),
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
