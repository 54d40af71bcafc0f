import {
  encodeModel,
  floatInitializer,
  int64Initializer,
  node,
  valueInfo,
} from '@accsgd/onnx-training/model-builder';
import type { TaskName } from './data.js';
import { glorotUniform, Rng } from './rng.js';

export interface ParamSpec {
  name: string;
  shape: number[];
  init: Float32Array;
}

/**
 * The model of a task, as named parameters with seeded initial values. Every backend and optimizer
 * builds its model from this, so a comparison starts from the same weights.
 *   toy:       2 -> 16 (tanh) -> 2
 *   mnist:     784 -> 64 (relu) -> 10
 *   mnist-cnn: 28x28x1 -> conv 5x5, 8 filters, stride 2 (relu) -> 14x14x8 -> 10
 */
export interface ModelSpec {
  task: TaskName;
  params: ParamSpec[];
  classes: number;
}

const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

export function initialModel(task: TaskName, seed: number): ModelSpec {
  const rng = new Rng(seed);
  const dense = (name: string, fanIn: number, fanOut: number): ParamSpec[] => [
    { name: `W${name}`, shape: [fanIn, fanOut], init: glorotUniform(rng, fanIn * fanOut, fanIn, fanOut) },
    { name: `b${name}`, shape: [fanOut], init: new Float32Array(fanOut) },
  ];
  if (task === 'toy') return { task, classes: 2, params: [...dense('1', 2, 16), ...dense('2', 16, 2)] };
  if (task === 'mnist') return { task, classes: 10, params: [...dense('1', 784, 64), ...dense('2', 64, 10)] };
  const kernelShape = [5, 5, 1, 8];
  return {
    task,
    classes: 10,
    params: [
      { name: 'K1', shape: kernelShape, init: glorotUniform(rng, size(kernelShape), 25, 200) },
      { name: 'c1', shape: [8], init: new Float32Array(8) },
      ...dense('2', 14 * 14 * 8, 10),
    ],
  };
}

/**
 * The task's model as an ONNX forward model (x[batch, features] -> logits), for OnnxTrainer, with
 * the spec's parameters under the same names and shapes as the tfjs backends' variables: the same
 * initial weights, and a checkpoint's tensors mean the same thing on every backend.
 */
export function onnxForwardModel(spec: ModelSpec): Uint8Array {
  const byName = new Map(spec.params.map((p) => [p.name, p]));
  const initializers = spec.params.map((p) => floatInitializer(p.name, p.shape, p.init));
  const common = { opset: 17, producerName: '@accsgd/example-playground' };
  if (spec.task === 'mnist-cnn') {
    // tfjs's conv2d is NHWC with HWIO kernels, ONNX's Conv NCHW with OIHW: the graph transposes
    // the kernel K1 [5, 5, 1, 8] itself (so the trained parameter keeps tfjs's layout) and the
    // activations back to NHWC before flattening (so W2's rows are in tfjs's order). tfjs's
    // 'same' padding at stride 2 on 28 pads 1 before and 2 after, as ONNX's SAME_UPPER.
    return encodeModel({
      name: 'playground_mnist_cnn',
      nodes: [
        node('Reshape', ['x', 'image_shape'], ['images']),
        node('Transpose', ['K1'], ['K1_oihw'], { perm: [3, 2, 0, 1] }),
        node('Conv', ['images', 'K1_oihw', 'c1'], ['conv'], {
          kernel_shape: [5, 5],
          strides: [2, 2],
          pads: [1, 1, 2, 2],
        }),
        node('Relu', ['conv'], ['relu']),
        node('Transpose', ['relu'], ['relu_nhwc'], { perm: [0, 2, 3, 1] }),
        node('Flatten', ['relu_nhwc'], ['features'], { axis: 1 }),
        node('MatMul', ['features', 'W2'], ['z0']),
        node('Add', ['z0', 'b2'], ['logits']),
      ],
      inputs: [valueInfo('x', ['batch', 784])],
      outputs: [valueInfo('logits', ['batch', spec.classes])],
      initializers: [...initializers, int64Initializer('image_shape', [4], [-1, 1, 28, 28])],
      ...common,
    });
  }
  const W1 = byName.get('W1')!;
  return encodeModel({
    name: `playground_${spec.task}`,
    nodes: [
      node('MatMul', ['x', 'W1'], ['h0']),
      node('Add', ['h0', 'b1'], ['h1']),
      node(spec.task === 'toy' ? 'Tanh' : 'Relu', ['h1'], ['h']),
      node('MatMul', ['h', 'W2'], ['z0']),
      node('Add', ['z0', 'b2'], ['logits']),
    ],
    inputs: [valueInfo('x', ['batch', W1.shape[0]!])],
    outputs: [valueInfo('logits', ['batch', spec.classes])],
    initializers,
    ...common,
  });
}
