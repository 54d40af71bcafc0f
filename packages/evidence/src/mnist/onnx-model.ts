import { mlpForwardModel as exampleForwardModel } from '@accsgd/example-onnx-mnist/model';
import type { MlpWeights } from './model.js';

/**
 * The forward ONNX model (IR 8, opset 17, float32) of the 784-256-10 MLP with this package's
 * weights as its initializers, built by examples/onnx-mnist's builder (the one model both train):
 * x[batch, 784] -> MatMul W1 -> Add b1 -> Relu -> MatMul W2 -> Add b2 -> logits[batch, 10].
 * W1 is [784, 256] row-major, as `Mlp` keeps it. The batch dimension is symbolic ('batch').
 */
export function mlpForwardModel(weights: MlpWeights): Uint8Array {
  return exampleForwardModel({ W1: weights.w1, b1: weights.b1, W2: weights.w2, b2: weights.b2 });
}
