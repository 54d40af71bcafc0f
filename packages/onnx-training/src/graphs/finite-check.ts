import { TensorProto_DataType } from 'onnx-buf';
import { attribute, floatTensor, makeNode } from '../autodiff/proto.js';
import { encodeModel, tensorInfo } from './onnx-proto.js';

/**
 * A model that tells, per input tensor, whether every element is finite: output `finite<k>` is
 * sum(x<k> * 0), which is 0 when x<k> is finite and NaN when it holds a NaN or an infinity. Only Mul
 * and ReduceSum, which every execution provider runs, so a check of GPU tensors stays on the GPU
 * and reads back one number per tensor.
 */
export function buildFiniteCheckModel(shapes: readonly (readonly number[])[]): Uint8Array {
  const nodes = shapes.flatMap((_, k) => [
    makeNode('Mul', [`x${k}`, 'zero'], [`scaled${k}`], `scaled${k}`),
    makeNode('ReduceSum', [`scaled${k}`], [`finite${k}`], `finite${k}`, [attribute('keepdims', 0)]),
  ]);
  return encodeModel({
    name: 'accsgd_finite_check',
    nodes,
    inputs: shapes.map((shape, k) => tensorInfo(`x${k}`, [...shape])),
    outputs: shapes.map((_, k) => tensorInfo(`finite${k}`, [])),
    initializers: [floatTensor('zero', TensorProto_DataType.FLOAT, [], [0])],
  });
}
