import { create, toBinary } from '@bufbuild/protobuf';
import {
  GraphProtoSchema,
  ModelProtoSchema,
  type NodeProto,
  NodeProtoSchema,
  OperatorSetIdProtoSchema,
  TensorProto_DataType,
  TensorProtoSchema,
  TensorShapeProto_DimensionSchema,
  TensorShapeProtoSchema,
  TypeProto_TensorSchema,
  TypeProtoSchema,
  type ValueInfoProto,
  ValueInfoProtoSchema,
} from 'onnx-buf';

/** What every model of this package declares: IR 8 (ORT 1.14 and later load it) and opset 17. */
export const IR_VERSION = 8;
export const OPSET_VERSION = 17;
export const PRODUCER_NAME = '@accsgd/onnx-training';

/** A dimension: a fixed size, or a symbolic name (dim_param). */
export type Dim = number | string;

export function tensorInfo(
  name: string,
  dims: readonly Dim[],
  elemType: TensorProto_DataType = TensorProto_DataType.FLOAT,
): ValueInfoProto {
  return create(ValueInfoProtoSchema, {
    name,
    type: create(TypeProtoSchema, {
      value: {
        case: 'tensorType',
        value: create(TypeProto_TensorSchema, {
          elemType,
          shape: create(TensorShapeProtoSchema, {
            dim: dims.map((d) =>
              create(TensorShapeProto_DimensionSchema, {
                value:
                  typeof d === 'number'
                    ? { case: 'dimValue', value: BigInt(d) }
                    : { case: 'dimParam', value: d },
              }),
            ),
          }),
        }),
      },
    }),
  });
}

export function node(opType: string, inputs: string[], outputs: string[], name = outputs[0]!): NodeProto {
  return create(NodeProtoSchema, { opType, input: inputs, output: outputs, name });
}

/** An int64 constant tensor (for Reshape's shape input). */
export function int64Initializer(name: string, values: readonly number[]) {
  return create(TensorProtoSchema, {
    name,
    dataType: TensorProto_DataType.INT64,
    dims: [BigInt(values.length)],
    int64Data: values.map((v) => BigInt(v)),
  });
}

export interface ModelParts {
  name: string;
  nodes: NodeProto[];
  inputs: ValueInfoProto[];
  outputs: ValueInfoProto[];
  initializers?: ReturnType<typeof int64Initializer>[];
  docString?: string;
}

/** Serialises a single-graph model of standard ai.onnx ops with protobuf-es (never by hand). */
export function encodeModel(parts: ModelParts): Uint8Array {
  const graph = create(GraphProtoSchema, {
    name: parts.name,
    node: parts.nodes,
    input: parts.inputs,
    output: parts.outputs,
    initializer: parts.initializers ?? [],
    docString: parts.docString ?? '',
  });
  const model = create(ModelProtoSchema, {
    irVersion: BigInt(IR_VERSION),
    producerName: PRODUCER_NAME,
    opsetImport: [create(OperatorSetIdProtoSchema, { domain: '', version: BigInt(OPSET_VERSION) })],
    graph,
  });
  return toBinary(ModelProtoSchema, model);
}
