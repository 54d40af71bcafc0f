import {
  add,
  any,
  argMax,
  cast,
  isFinite as isFiniteTensor,
  less,
  logicalNot,
  mul,
  reshape,
  type Scalar,
  scalar,
  slice,
  stack,
  type Tensor,
  tidy,
  where,
} from '@tensorflow/tfjs-core';
import type { CoefficientArray } from './registry.js';

/**
 * The fallback for backends without a fused kernel (tfjs-node, a custom backend, or `fused: false`):
 * the fused update written as six multiplies and four adds of tfjs ops, inside `tidy`, so the
 * intermediates are freed and only [param', buffer'] survive. Each op rounds to float32, so this is
 * a little less exact than a fused kernel (still far inside the spec's accuracy bound).
 */
export function compositeUpdate(
  param: Tensor,
  grad: Tensor,
  buffer: Tensor,
  coefficients: CoefficientArray,
  guard: DeviceGuard | null = null,
): [Tensor, Tensor] {
  return tidy(() => {
    const [bufFromBuf, bufFromParam, bufFromGrad, paramFromParam, paramFromGrad, paramFromBuf] =
      coefficients.map((c) => scalar(c, 'float32')) as [Scalar, Scalar, Scalar, Scalar, Scalar, Scalar];
    const newBuffer = add(add(mul(bufFromBuf, buffer), mul(bufFromParam, param)), mul(bufFromGrad, grad));
    const newParam = add(
      add(mul(paramFromParam, param), mul(paramFromGrad, grad)),
      mul(paramFromBuf, newBuffer),
    );
    if (guard === null) return [newParam, newBuffer];
    // A bad verdict names a gradient (an index below the verdict's own slot); ALL_FINITE is i32
    // max, which tfjs-backend-webgpu's int32 comparisons do not hold exactly (they go through f32).
    const skip = less(slice(guard.tensor, [guard.slot], [1]), scalar(guard.slot, 'int32'));
    return [where(skip, param, newParam), where(skip, buffer, newBuffer)];
  });
}

/** The step's device scan and its verdict slot: the update writes nothing where the verdict names a bad gradient. */
export interface DeviceGuard {
  tensor: Tensor;
  slot: number;
}

/** Where a gradient holds a NaN or infinity: which tensor of the list, and its first bad element. */
export interface NonFiniteLocation {
  tensor: number;
  element: number;
}

/*
 * For backends whose memory JS cannot scan (webgl, webgpu, others): the first tensor holding a NaN
 * or infinity is found with tfjs ops and one read-back for the whole list, and that tensor's first
 * bad element with a second read-back only when there is one.
 */

/** Flags (bool [k]): does tensor i hold a non-finite value? */
function nonFiniteFlags(tensors: readonly Tensor[]): Tensor {
  return tidy(() => stack(tensors.map((t) => any(logicalNot(isFiniteTensor(t))))));
}

/** Index (int32 scalar) of the first non-finite element of a tensor known to hold one. */
function firstNonFiniteIndex(t: Tensor): Tensor {
  return tidy(() => argMax(cast(logicalNot(isFiniteTensor(reshape(t, [-1]))), 'int32')));
}

/** Synchronous (dataSync): for webgl, and webgpu where the platform can read back synchronously. */
export function compositeFirstNonFinite(tensors: readonly Tensor[]): NonFiniteLocation | null {
  if (tensors.length === 0) return null;
  const flags = nonFiniteFlags(tensors);
  const tensor = Array.from(flags.dataSync()).findIndex((v) => v !== 0);
  flags.dispose();
  if (tensor < 0) return null;
  const index = firstNonFiniteIndex(tensors[tensor]!);
  const element = index.dataSync()[0]!;
  index.dispose();
  return { tensor, element };
}

/** Asynchronous (data): works on every backend without stalling the pipeline. */
export async function compositeFirstNonFiniteAsync(
  tensors: readonly Tensor[],
): Promise<NonFiniteLocation | null> {
  if (tensors.length === 0) return null;
  const flags = nonFiniteFlags(tensors);
  const tensor = Array.from(await flags.data()).findIndex((v) => v !== 0);
  flags.dispose();
  if (tensor < 0) return null;
  const index = firstNonFiniteIndex(tensors[tensor]!);
  const element = (await index.data())[0]!;
  index.dispose();
  return { tensor, element };
}
