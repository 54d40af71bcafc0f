import { AccSGDStateError } from '@accsgd/core';
import { engine, Tensor, type Variable } from '@tensorflow/tfjs-core';
import { describe } from './input.js';

/** tfjs-core's NamedTensor, which its index does not re-export. */
export interface NamedTensor {
  name: string;
  tensor: Tensor;
}

/** Suffix of buffer names in getWeights(), after tfjs's `<variable>/momentum`, `<variable>/m`. */
export const BUFFER_WEIGHT_SUFFIX = '/momentum_buffer';

/**
 * The structure of setWeights()'s argument (the layout of getWeights()), checked before anything
 * is read or kept: AccSGDStateError saying what is wrong.
 */
export function checkWeights(weightValues: unknown): { iter: Tensor; buffers: [string, Tensor][] } {
  const layout = `expected the layout of getWeights(): [{ name: 'iter', tensor: <int32 scalar> }, { name: '<variable>${BUFFER_WEIGHT_SUFFIX}', tensor: <float32 tensor> }, ...]`;
  if (!Array.isArray(weightValues) || weightValues.length === 0) {
    throw new AccSGDStateError(
      `AccSGD weights must be a non-empty array, got ${describe(weightValues)}; ${layout}`,
    );
  }
  const items = weightValues.map((item: unknown, i): NamedTensor => {
    if (typeof item !== 'object' || item === null)
      throw new AccSGDStateError(
        `optimizer weight ${i} is ${describe(item)}, not a { name, tensor } pair; ${layout}`,
      );
    const { name, tensor: value } = item as { name?: unknown; tensor?: unknown };
    if (typeof name !== 'string')
      throw new AccSGDStateError(
        `optimizer weight ${i} has a name of type ${typeof name}; expected a string`,
      );
    if (!(value instanceof Tensor))
      throw new AccSGDStateError(`optimizer weight "${name}" is ${describe(value)}; expected a tf.Tensor`);
    if (value.isDisposed) throw new AccSGDStateError(`optimizer weight "${name}" is a disposed tensor`);
    return { name, tensor: value };
  });
  const [iter, ...rest] = items;
  if (iter!.name !== 'iter') {
    throw new AccSGDStateError(
      `AccSGD weights must start with the int32 scalar "iter" (the layout of getWeights()); the first is "${iter!.name}"`,
    );
  }
  if (iter!.tensor.dtype !== 'int32' && iter!.tensor.dtype !== 'float32') {
    throw new AccSGDStateError(`optimizer weight "iter" is ${iter!.tensor.dtype}; expected an int32 scalar`);
  }
  const seen = new Set<string>();
  const buffers = rest.map(({ name, tensor: value }): [string, Tensor] => {
    if (!name.endsWith(BUFFER_WEIGHT_SUFFIX))
      throw new AccSGDStateError(
        `optimizer weight "${name}" is not named "<variable>${BUFFER_WEIGHT_SUFFIX}"`,
      );
    if (value.dtype !== 'float32')
      throw new AccSGDStateError(`optimizer weight "${name}" is ${value.dtype}; AccSGD buffers are float32`);
    const stateName = name.slice(0, -BUFFER_WEIGHT_SUFFIX.length);
    if (seen.has(stateName)) throw new AccSGDStateError(`optimizer weight "${name}" appears twice`);
    seen.add(stateName);
    return [stateName, value];
  });
  return { iter: iter!.tensor, buffers };
}

export function makeBufferVariable(value: Tensor, stateName: string): Variable {
  const name = stateName + BUFFER_WEIGHT_SUFFIX;
  // Variable names are global in tfjs; a second optimizer over the same variable gets a generated one.
  return value.variable(false, engine().registeredVariables[name] ? undefined : name);
}
