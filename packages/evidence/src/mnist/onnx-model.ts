import { create, toBinary } from '@bufbuild/protobuf';
import {
  GraphProtoSchema,
  ModelProtoSchema,
  NodeProtoSchema,
  OperatorSetIdProtoSchema,
  TensorProto_DataType,
  TensorProtoSchema,
  TensorShapeProto_DimensionSchema,
  TensorShapeProtoSchema,
  TypeProto_TensorSchema,
  TypeProtoSchema,
  ValueInfoProtoSchema,
} from 'onnx-buf';
import { LAYERS, type MlpWeights } from './model.js';

// The forward model builder of examples/onnx-mnist (src/model.ts), copied here so the evidence
// package does not depend on an example, and fed this package's own MlpWeights.

function valueInfo(name: string, dims: (number | string)[]) {
  return create(ValueInfoProtoSchema, {
    name,
    type: create(TypeProtoSchema, {
      value: {
        case: 'tensorType',
        value: create(TypeProto_TensorSchema, {
          elemType: TensorProto_DataType.FLOAT,
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

function floatInitializer(name: string, dims: readonly number[], values: Float32Array) {
  const size = dims.reduce((a, b) => a * b, 1);
  if (values.length !== size)
    throw new Error(`initializer ${name}: ${values.length} values for shape [${dims.join(', ')}]`);
  return create(TensorProtoSchema, {
    name,
    dataType: TensorProto_DataType.FLOAT,
    dims: dims.map((d) => BigInt(d)),
    // A copy: rawData must start at offset 0 of its own buffer (values may be a view).
    rawData: new Uint8Array(Float32Array.from(values).buffer),
  });
}

function node(opType: string, input: string[], output: string[]) {
  return create(NodeProtoSchema, { opType, input, output, name: `${output[0]}_${opType}` });
}

/**
 * The forward ONNX model (IR 8, opset 17, float32) of the 784-256-10 MLP with the given weights as
 * initializers W1, b1, W2, b2 (W1 [784, 256] row-major, as `Mlp` keeps it):
 * x[batch, 784] -> MatMul W1 -> Add b1 -> Relu -> MatMul W2 -> Add b2 -> logits[batch, 10].
 * The batch dimension is symbolic ('batch'): OnnxTrainer fixes it, inference takes any size.
 */
export function mlpForwardModel(weights: MlpWeights, layers: readonly number[] = LAYERS): Uint8Array {
  const [i, h, o] = layers as [number, number, number];
  const params: [string, number[], Float32Array][] = [
    ['W1', [i, h], weights.w1],
    ['b1', [h], weights.b1],
    ['W2', [h, o], weights.w2],
    ['b2', [o], weights.b2],
  ];
  const graph = create(GraphProtoSchema, {
    name: 'mnist_mlp',
    node: [
      node('MatMul', ['x', 'W1'], ['h0']),
      node('Add', ['h0', 'b1'], ['h1']),
      node('Relu', ['h1'], ['h']),
      node('MatMul', ['h', 'W2'], ['z0']),
      node('Add', ['z0', 'b2'], ['logits']),
    ],
    input: [valueInfo('x', ['batch', i])],
    output: [valueInfo('logits', ['batch', o])],
    initializer: params.map(([name, dims, values]) => floatInitializer(name, dims, values)),
  });
  return toBinary(
    ModelProtoSchema,
    create(ModelProtoSchema, {
      irVersion: 8n,
      producerName: '@accsgd/evidence',
      opsetImport: [create(OperatorSetIdProtoSchema, { domain: '', version: 17n })],
      graph,
    }),
  );
}
