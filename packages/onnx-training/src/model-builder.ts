/**
 * A few checked builders for writing small forward models (a classifier, an MLP, a tiny
 * BERT-shaped encoder) to train with buildTrainStepModel / OnnxTrainer, without hand-assembling
 * protobuf messages. Everything is encoded with onnx-buf (protobuf-es), never by hand.
 */
import { AccSGDConfigError } from '@accsgd/core';
import { create, type MessageInitShape, toBinary } from '@bufbuild/protobuf';
import {
  type AttributeProto,
  AttributeProto_AttributeType,
  AttributeProtoSchema,
  GraphProtoSchema,
  ModelProtoSchema,
  type NodeProto,
  OperatorSetIdProtoSchema,
  type TensorProto,
  TensorProto_DataType,
  type ValueInfoProto,
} from 'onnx-buf';
import { floatTensor, int64Tensor, makeNode } from './autodiff/proto.js';
import { checkModelStructure } from './autodiff/validation.js';
import { type Dim, IR_VERSION, OPSET_VERSION, tensorInfo } from './graphs/onnx-proto.js';

/** The element types a forward model's inputs and outputs may have. */
export type ElementType = 'float32' | 'float64' | 'int64';

const ELEMENT_TYPES: Record<ElementType, TensorProto_DataType> = {
  float32: TensorProto_DataType.FLOAT,
  float64: TensorProto_DataType.DOUBLE,
  int64: TensorProto_DataType.INT64,
};

const isName = (v: unknown): v is string => typeof v === 'string' && v.length > 0;

function checkDims(where: string, dims: unknown, symbolic: boolean): void {
  if (
    !Array.isArray(dims) ||
    !dims.every(
      (d) => (Number.isInteger(d) && (d as number) >= 0) || (symbolic && typeof d === 'string' && d !== ''),
    )
  )
    throw new AccSGDConfigError(
      where,
      dims,
      symbolic ? 'an array of sizes (integers >= 0) or symbolic names' : 'an array of integers >= 0',
    );
}

/** A graph input or output: name, shape (sizes, or names of symbolic dimensions) and element type. */
export function valueInfo(name: string, dims: readonly Dim[], type: ElementType = 'float32'): ValueInfoProto {
  if (!isName(name)) throw new AccSGDConfigError('valueInfo name', name, 'a non-empty string');
  checkDims(`valueInfo "${name}" dims`, dims, true);
  if (!(type in ELEMENT_TYPES))
    throw new AccSGDConfigError(`valueInfo "${name}" type`, type, Object.keys(ELEMENT_TYPES).join(', '));
  return tensorInfo(name, dims, ELEMENT_TYPES[type]);
}

function checkValues(name: string, dims: readonly number[], values: ArrayLike<number>): void {
  checkDims(`initializer "${name}" dims`, dims, false);
  const expected = dims.reduce((a, b) => a * b, 1);
  if (values === null || typeof values !== 'object' || values.length !== expected)
    throw new AccSGDConfigError(
      `initializer "${name}" values`,
      values === null || typeof values !== 'object' ? values : `${values.length} values`,
      `${expected} values for dims [${dims.join(',')}]`,
    );
}

/** A float32 initializer (a weight): `values` row-major, as many as the dims hold. */
export function floatInitializer(
  name: string,
  dims: readonly number[],
  values: ArrayLike<number>,
): TensorProto {
  if (!isName(name)) throw new AccSGDConfigError('initializer name', name, 'a non-empty string');
  checkValues(name, dims, values);
  return floatTensor(name, TensorProto_DataType.FLOAT, dims, values);
}

/** An int64 initializer (a shape, axes, indices); the values must be safe integers. */
export function int64Initializer(
  name: string,
  dims: readonly number[],
  values: readonly number[],
): TensorProto {
  if (!isName(name)) throw new AccSGDConfigError('initializer name', name, 'a non-empty string');
  checkValues(name, dims, values);
  const bad = Array.from(values).findIndex((v) => !Number.isSafeInteger(v));
  if (bad >= 0)
    throw new AccSGDConfigError(`initializer "${name}" values[${bad}]`, values[bad], 'a safe integer');
  return int64Tensor(name, dims, values);
}

/**
 * An attribute: an integer is INT, `{ float: x }` is FLOAT (so 1.0 stays a float), an array of
 * integers is INTS, `{ floats: [...] }` is FLOATS, a string is STRING, a TensorProto is TENSOR.
 */
export type Attribute =
  | number
  | readonly number[]
  | { float: number }
  | { floats: readonly number[] }
  | string
  | TensorProto;

function encodeAttribute(where: string, name: string, value: Attribute): AttributeProto {
  const make = (init: MessageInitShape<typeof AttributeProtoSchema>) =>
    create(AttributeProtoSchema, { name, ...init });
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value))
      throw new AccSGDConfigError(`${where}.${name}`, value, 'an integer (write { float: x } for a float)');
    return make({ type: AttributeProto_AttributeType.INT, i: BigInt(value) });
  }
  if (typeof value === 'string')
    return make({ type: AttributeProto_AttributeType.STRING, s: new TextEncoder().encode(value) });
  if (Array.isArray(value)) {
    if (!value.every((v) => Number.isSafeInteger(v)))
      throw new AccSGDConfigError(
        `${where}.${name}`,
        value,
        'an array of integers (write { floats } for floats)',
      );
    return make({ type: AttributeProto_AttributeType.INTS, ints: value.map((v) => BigInt(v)) });
  }
  if (typeof value === 'object' && value !== null) {
    if ('float' in value && typeof value.float === 'number')
      return make({ type: AttributeProto_AttributeType.FLOAT, f: value.float });
    if ('floats' in value && Array.isArray(value.floats))
      return make({ type: AttributeProto_AttributeType.FLOATS, floats: [...value.floats] });
    if ('dataType' in value)
      return make({ type: AttributeProto_AttributeType.TENSOR, t: value as TensorProto });
  }
  throw new AccSGDConfigError(
    `${where}.${name}`,
    value,
    'an integer, integers, { float }, { floats }, a string or a tensor',
  );
}

/** A node of the default (ai.onnx) domain; its name defaults to its first output's. */
export function node(
  opType: string,
  inputs: readonly string[],
  outputs: readonly string[],
  attributes: Readonly<Record<string, Attribute>> = {},
  name?: string,
): NodeProto {
  if (!isName(opType)) throw new AccSGDConfigError('node opType', opType, 'a non-empty string');
  if (!Array.isArray(inputs) || !inputs.every((i) => typeof i === 'string'))
    throw new AccSGDConfigError(
      `node ${opType} inputs`,
      inputs,
      "an array of value names ('' for an omitted input)",
    );
  if (!Array.isArray(outputs) || outputs.length === 0 || !outputs.every((o) => typeof o === 'string'))
    throw new AccSGDConfigError(`node ${opType} outputs`, outputs, 'a non-empty array of value names');
  const where = `node "${name ?? outputs[0]}"`;
  return makeNode(
    opType,
    inputs,
    outputs,
    name ?? outputs[0]!,
    Object.entries(attributes).map(([k, v]) => encodeAttribute(where, k, v)),
  );
}

export interface ModelDefinition {
  /** The graph's name. */
  name: string;
  nodes: readonly NodeProto[];
  inputs: readonly ValueInfoProto[];
  outputs: readonly ValueInfoProto[];
  initializers?: readonly TensorProto[];
  /** The ai.onnx opset (default 17, as this package's own graphs). */
  opset?: number;
  producerName?: string;
  docString?: string;
}

/** Serialises a single-graph model (IR 8) of standard ai.onnx ops. */
export function encodeModel(definition: ModelDefinition): Uint8Array {
  if (typeof definition !== 'object' || definition === null)
    throw new AccSGDConfigError(
      'model',
      definition,
      '{ name, nodes, inputs, outputs, initializers?, opset? }',
    );
  const opset = definition.opset ?? OPSET_VERSION;
  if (!Number.isInteger(opset) || opset < 1)
    throw new AccSGDConfigError('opset', opset, 'a positive integer');
  for (const key of ['nodes', 'inputs', 'outputs'] as const)
    if (!Array.isArray(definition[key])) throw new AccSGDConfigError(key, definition[key], 'an array');
  const graph = create(GraphProtoSchema, {
    name: definition.name,
    node: [...definition.nodes],
    input: [...definition.inputs],
    output: [...definition.outputs],
    initializer: [...(definition.initializers ?? [])],
    docString: definition.docString ?? '',
  });
  const model = create(ModelProtoSchema, {
    irVersion: BigInt(IR_VERSION),
    producerName: definition.producerName ?? '',
    opsetImport: [create(OperatorSetIdProtoSchema, { domain: '', version: BigInt(opset) })],
    graph,
  });
  // The checks OnnxTrainer makes, here where the model is written: names defined once, tensors
  // that match their dims, and each node against its op's schema at this opset (the schemas are
  // those of opset 13 and later; an older model is left to ONNX Runtime).
  checkModelStructure(model, opset >= 13 ? opset : Number.NaN);
  return toBinary(ModelProtoSchema, model);
}
