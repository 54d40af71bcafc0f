import { AccSGDConfigError } from '@accsgd/core';
import { create } from '@bufbuild/protobuf';
import {
  type AttributeProto,
  AttributeProto_AttributeType,
  AttributeProtoSchema,
  type NodeProto,
  NodeProtoSchema,
  type TensorProto,
  TensorProto_DataType,
  TensorProtoSchema,
} from 'onnx-buf';

/** An attribute value as the autodiff writes it: an int, a float, a list of ints, or a tensor. */
export type AttributeValue =
  | number
  | bigint
  | string
  | readonly number[]
  | { ints: readonly number[] }
  | TensorProto;

export function attribute(name: string, value: AttributeValue): AttributeProto {
  if (typeof value === 'string')
    return create(AttributeProtoSchema, {
      name,
      type: AttributeProto_AttributeType.STRING,
      s: new TextEncoder().encode(value),
    });
  if (typeof value === 'bigint')
    return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.INT, i: value });
  if (typeof value === 'number') {
    return Number.isInteger(value)
      ? create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.INT, i: BigInt(value) })
      : create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.FLOAT, f: value });
  }
  if (Array.isArray(value) || 'ints' in (value as object)) {
    const ints = Array.isArray(value)
      ? (value as readonly number[])
      : (value as { ints: readonly number[] }).ints;
    return create(AttributeProtoSchema, {
      name,
      type: AttributeProto_AttributeType.INTS,
      ints: ints.map((v) => BigInt(v)),
    });
  }
  return create(AttributeProtoSchema, {
    name,
    type: AttributeProto_AttributeType.TENSOR,
    t: value as TensorProto,
  });
}

/** A float attribute (written as FLOAT even when the number is whole, e.g. Gemm's alpha = 1). */
export function floatAttribute(name: string, value: number): AttributeProto {
  return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.FLOAT, f: value });
}

export function makeNode(
  opType: string,
  inputs: readonly string[],
  outputs: readonly string[],
  name: string,
  attributes: readonly AttributeProto[] = [],
): NodeProto {
  return create(NodeProtoSchema, {
    opType,
    input: [...inputs],
    output: [...outputs],
    name,
    attribute: [...attributes],
  });
}

export function findAttribute(node: NodeProto, name: string): AttributeProto | undefined {
  return node.attribute.find((a) => a.name === name);
}

export function intAttribute(node: NodeProto, name: string, fallback: number): number {
  const a = findAttribute(node, name);
  return a ? Number(a.i) : fallback;
}

export function floatAttributeValue(node: NodeProto, name: string, fallback: number): number {
  const a = findAttribute(node, name);
  return a ? a.f : fallback;
}

export function stringAttribute(node: NodeProto, name: string, fallback: string): string {
  const a = findAttribute(node, name);
  return a ? new TextDecoder().decode(a.s) : fallback;
}

export function intsAttribute(node: NodeProto, name: string): number[] | undefined {
  const a = findAttribute(node, name);
  return a ? a.ints.map((v) => Number(v)) : undefined;
}

/** The float data types a model may be differentiated in (float32; float64 for finite-difference checks). */
export type FloatType = TensorProto_DataType.FLOAT | TensorProto_DataType.DOUBLE;

export function floatTensor(
  name: string,
  type: FloatType,
  dims: readonly number[],
  values: ArrayLike<number>,
): TensorProto {
  const data = type === TensorProto_DataType.FLOAT ? Float32Array.from(values) : Float64Array.from(values);
  return create(TensorProtoSchema, {
    name,
    dataType: type,
    dims: dims.map((d) => BigInt(d)),
    rawData: new Uint8Array(data.buffer.slice(0)) as Uint8Array<ArrayBuffer>,
  });
}

export function int64Tensor(name: string, dims: readonly number[], values: readonly number[]): TensorProto {
  return create(TensorProtoSchema, {
    name,
    dataType: TensorProto_DataType.INT64,
    dims: dims.map((d) => BigInt(d)),
    int64Data: values.map((v) => BigInt(v)),
  });
}

/**
 * The most elements one value of a model may hold: 2^30 float32 values are 4 GiB, the largest
 * ArrayBuffer Node allocates (buffer.constants.MAX_LENGTH), far beyond a WebGPU buffer or a
 * browser tab; a larger value would fail in ONNX Runtime's allocator, untyped, or not at all.
 */
export const MAX_VALUE_ELEMENTS = 2 ** 30;

/**
 * The most elements of an int64 value computed at build time (a ConstantOfShape of shapes, masks,
 * indices), which is held as a JavaScript array of numbers.
 */
export const MAX_FOLDED_ELEMENTS = 2 ** 24;

const RAW_WIDTH: Partial<Record<number, number>> = {
  [TensorProto_DataType.FLOAT]: 4,
  [TensorProto_DataType.DOUBLE]: 8,
  [TensorProto_DataType.INT64]: 8,
  [TensorProto_DataType.BOOL]: 1,
};

/** The numbers of a float, double, int64 or bool (0/1) tensor held in the model (raw or typed fields), or undefined. */
export function tensorValues(t: TensorProto): number[] | undefined {
  const raw = t.rawData;
  const count = t.dims.reduce((a, d) => a * Number(d), 1);
  const width = RAW_WIDTH[t.dataType];
  // A raw_data shorter or longer than its dims say would read past its end (a RangeError) or
  // silently drop values; forward models are checked before (validation.ts), this guards the rest.
  if (raw.length > 0 && width !== undefined && raw.length !== count * width)
    throw new AccSGDConfigError(
      `tensor "${t.name}" raw_data`,
      `${raw.length} bytes`,
      `${count * width} bytes for dims [${t.dims.join(',')}]`,
    );
  const view = raw.length > 0 ? new DataView(raw.buffer, raw.byteOffset, raw.byteLength) : undefined;
  switch (t.dataType) {
    case TensorProto_DataType.FLOAT:
      if (view) return Array.from({ length: count }, (_, i) => view.getFloat32(4 * i, true));
      return [...t.floatData];
    case TensorProto_DataType.DOUBLE:
      if (view) return Array.from({ length: count }, (_, i) => view.getFloat64(8 * i, true));
      return [...t.doubleData];
    case TensorProto_DataType.INT64:
      if (view) return Array.from({ length: count }, (_, i) => Number(view.getBigInt64(8 * i, true)));
      return t.int64Data.map((v) => Number(v));
    case TensorProto_DataType.BOOL:
      if (view) return Array.from({ length: count }, (_, i) => (view.getUint8(i) ? 1 : 0));
      return t.int32Data.map((v) => (v ? 1 : 0));
    default:
      return undefined;
  }
}

export const DATA_TYPE_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(TensorProto_DataType)
    .filter(([, v]) => typeof v === 'number')
    .map(([k, v]) => [v as number, k]),
);
