import {
  encodeModel,
  floatInitializer,
  int64Initializer,
  node,
  valueInfo,
} from '@accsgd/onnx-training/model-builder';
import { CONV_SHAPE, type ConvShape, type ConvWeights, convShapes } from './conv-model.js';

/**
 * The forward ONNX model (opset 17, float32) of `ConvNet` with these weights as its initializers,
 * under the same names and layouts as the tfjs variables, so both start from identical weights:
 * x[batch, 784] -> Reshape [batch, 1, 28, 28] -> Conv k1 + b1 -> Relu -> MaxPool 2 -> Conv k2 + b2
 * -> Relu -> MaxPool 2 -> Transpose to NHWC -> Flatten -> MatMul w3 -> Add b3 -> logits[batch, 10].
 * tfjs keeps kernels HWIO and activations NHWC, ONNX's Conv OIHW and NCHW: the graph transposes the
 * kernels itself (the trained parameters keep tfjs's layout) and the last activations back to NHWC
 * before flattening (w3's rows are in tfjs's order).
 */
export function convForwardModel(weights: ConvWeights, s: ConvShape = CONV_SHAPE): Uint8Array {
  const sh = convShapes(s);
  const names = ['k1', 'b1', 'k2', 'b2', 'w3', 'b3'] as const;
  const pool = { kernel_shape: [2, 2], strides: [2, 2] };
  return encodeModel({
    name: 'mnist_lenet',
    nodes: [
      node('Reshape', ['x', 'image_shape'], ['images']),
      node('Transpose', ['k1'], ['k1_oihw'], { perm: [3, 2, 0, 1] }),
      node('Conv', ['images', 'k1_oihw', 'b1'], ['z1'], { kernel_shape: [5, 5] }),
      node('Relu', ['z1'], ['a1']),
      node('MaxPool', ['a1'], ['p1'], pool),
      node('Transpose', ['k2'], ['k2_oihw'], { perm: [3, 2, 0, 1] }),
      node('Conv', ['p1', 'k2_oihw', 'b2'], ['z2'], { kernel_shape: [5, 5] }),
      node('Relu', ['z2'], ['a2']),
      node('MaxPool', ['a2'], ['p2'], pool),
      node('Transpose', ['p2'], ['p2_nhwc'], { perm: [0, 2, 3, 1] }),
      node('Flatten', ['p2_nhwc'], ['features'], { axis: 1 }),
      node('MatMul', ['features', 'w3'], ['z3']),
      node('Add', ['z3', 'b3'], ['logits']),
    ],
    inputs: [valueInfo('x', ['batch', 784])],
    outputs: [valueInfo('logits', ['batch', 10])],
    initializers: [
      ...names.map((n) => floatInitializer(n, sh[n], weights[n])),
      int64Initializer('image_shape', [4], [-1, 1, 28, 28]),
    ],
    opset: 17,
    producerName: '@accsgd/evidence',
  });
}
