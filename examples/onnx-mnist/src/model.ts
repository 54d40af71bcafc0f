import { encodeModel, floatInitializer, node, valueInfo } from '@accsgd/onnx-training/model-builder';
import { glorotUniform, Rng } from './random.js';

export const INPUTS = 784;
export const HIDDEN = 256;
export const CLASSES = 10;

/** The MLP's parameters, in the forward model's initializer order. */
export interface MlpWeights {
  W1: Float32Array; // [784, 256]
  b1: Float32Array; // [256]
  W2: Float32Array; // [256, 10]
  b2: Float32Array; // [10]
}

export const PARAM_SHAPES: Record<keyof MlpWeights, number[]> = {
  W1: [INPUTS, HIDDEN],
  b1: [HIDDEN],
  W2: [HIDDEN, CLASSES],
  b2: [CLASSES],
};

/** Seeded initial weights: Glorot-uniform matrices (W1 drawn first, then W2), zero biases. */
export function initialWeights(seed: number): MlpWeights {
  const rng = new Rng(seed);
  return {
    W1: glorotUniform(rng, INPUTS, HIDDEN),
    b1: new Float32Array(HIDDEN),
    W2: glorotUniform(rng, HIDDEN, CLASSES),
    b2: new Float32Array(CLASSES),
  };
}

/**
 * The forward ONNX model (IR 8, opset 17, float32) of a 784-256-10 MLP:
 * x[batch, 784] -> MatMul W1 -> Add b1 -> Relu -> MatMul W2 -> Add b2 -> logits[batch, 10].
 * The batch dimension is symbolic ('batch'): the trainer fixes it, inference takes any size.
 */
export function mlpForwardModel(weights: MlpWeights): Uint8Array {
  return encodeModel({
    name: 'mnist_mlp',
    nodes: [
      node('MatMul', ['x', 'W1'], ['h0']),
      node('Add', ['h0', 'b1'], ['h1']),
      node('Relu', ['h1'], ['h']),
      node('MatMul', ['h', 'W2'], ['z0']),
      node('Add', ['z0', 'b2'], ['logits']),
    ],
    inputs: [valueInfo('x', ['batch', INPUTS])],
    outputs: [valueInfo('logits', ['batch', CLASSES])],
    initializers: (Object.keys(PARAM_SHAPES) as (keyof MlpWeights)[]).map((name) =>
      floatInitializer(name, PARAM_SHAPES[name], weights[name]),
    ),
    opset: 17,
    producerName: '@accsgd/example-onnx-mnist',
  });
}
