import { encodeModel, floatInitializer, node, valueInfo } from '@accsgd/onnx-training/model-builder';
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

/** The same MLP as an ONNX forward model (x[batch, features] -> logits), for OnnxTrainer. */
export function onnxForwardModel(spec: ModelSpec): Uint8Array {
  if (spec.task === 'mnist-cnn')
    throw new Error('the conv net has no ONNX train step: @accsgd/onnx-training differentiates no Conv');
  const [W1, b1, W2, b2] = spec.params as [ParamSpec, ParamSpec, ParamSpec, ParamSpec];
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
    initializers: [W1, b1, W2, b2].map((p) => floatInitializer(p.name, p.shape, p.init)),
    opset: 17,
    producerName: '@accsgd/example-playground',
  });
}
