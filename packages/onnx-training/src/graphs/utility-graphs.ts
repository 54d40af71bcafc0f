import { encodeModel, int64Initializer, node, tensorInfo } from './onnx-proto.js';

/** y = Identity(x) over a flat float32 tensor of any length: uploads to and reads back from a device. */
export function buildIdentityModel(): Uint8Array {
  return encodeModel({
    name: 'accsgd_identity',
    nodes: [node('Identity', ['x'], ['y'])],
    inputs: [tensorInfo('x', ['n'])],
    outputs: [tensorInfo('y', ['n'])],
  });
}

/**
 * The closed loop of SPEC §5.1: X^T (X p - y) for a flat parameter p of n elements, X of rows x n
 * and y of rows, as a training step's forward and backward pass would compute it (two MatMuls, a
 * Sub, a Transpose), fed the live parameter tensor.
 */
export function buildLeastSquaresModel(): Uint8Array {
  return encodeModel({
    name: 'accsgd_least_squares',
    nodes: [
      node('Reshape', ['p', 'column'], ['p_column']),
      node('Reshape', ['y', 'column'], ['y_column']),
      node('MatMul', ['x', 'p_column'], ['prediction']),
      node('Sub', ['prediction', 'y_column'], ['residual']),
      node('Transpose', ['x'], ['x_transposed']),
      node('MatMul', ['x_transposed', 'residual'], ['gradient_column']),
      node('Reshape', ['gradient_column', 'flat'], ['gradient']),
    ],
    inputs: [tensorInfo('p', ['n']), tensorInfo('x', ['rows', 'n']), tensorInfo('y', ['rows'])],
    outputs: [tensorInfo('gradient', ['n'])],
    initializers: [int64Initializer('column', [-1, 1]), int64Initializer('flat', [-1])],
  });
}
