import { engine, reshape, type Tensor } from '@tensorflow/tfjs-core';

/**
 * Another tensor over the same storage, kept alive until it is disposed. Not clone(): on the wasm
 * backend clone() copies the data. Shared storage also keeps the wasm kernel from updating it in
 * place (it writes in place only where it is the storage's sole owner), so a pending export or
 * step sees the values of its turn.
 */
export function alias(t: Tensor): Tensor {
  return reshape(t, t.shape);
}

export function registeredShape(variableName: string | null): number[] | null {
  if (variableName === null) return null;
  return engine().registeredVariables[variableName]?.shape ?? null;
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** tfjs-layers makes a variable name unique by appending `_<n>`; this strips it. */
export function layersBaseName(name: string): string {
  return name.replace(/_\d+$/, '');
}

/** Sorts `kernel_1` before `kernel_2` before `kernel_10`, then by name. */
export function compareVariableNames(a: string, b: string): number {
  const suffix = (name: string) => Number(/_(\d+)$/.exec(name)?.[1] ?? -1);
  return suffix(a) - suffix(b) || (a < b ? -1 : a > b ? 1 : 0);
}
