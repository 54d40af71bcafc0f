import { AccSGD } from '../optimizer.js';

/** A resizable ArrayBuffer (ES2024; the project's lib is ES2022). */
export const resizableBuffer = (bytes: number, maxByteLength: number) =>
  new (
    ArrayBuffer as unknown as new (
      n: number,
      options: { maxByteLength: number },
    ) => ArrayBuffer & { resize(n: number): void }
  )(bytes, { maxByteLength });

/**
 * The optimizer the hostile-input tests attack: a float32 [2, 2] parameter "w" (lr 0.1) and a
 * float64 parameter "b" (lr 0.01) in two groups, after one step in which only "w" had a gradient,
 * so "w" has a buffer and "b" has none.
 */
export function twoGroupOptimizer(
  defaults: ConstructorParameters<typeof AccSGD>[1] = { lr: 0.1 },
  options?: ConstructorParameters<typeof AccSGD>[2],
) {
  const w = new Float32Array([0.5, -1, 2, 0.25]);
  const b = new Float64Array([1, 2, 3]);
  const opt = new AccSGD(
    [
      { params: [w], names: ['w'], shapes: [[2, 2]] },
      { params: [b], names: ['b'], lr: 0.01 },
    ],
    defaults,
    options,
  );
  opt.step([new Float32Array([0.1, 0.2, -0.3, 0.4]), null]);
  return { opt, w, b };
}
