import { AccSGDGradientError, AccSGDStateError } from '@accsgd/core';
import { engine, type NamedTensorMap, Tensor, type Variable } from '@tensorflow/tfjs-core';
import { describe, isPlainObject, readInput } from './input.js';
import { sameShape } from './tensors.js';
import type { NamedTensor } from './weights-layout.js';

/** A gradient that passed the checks, with its variable. */
export interface GradientWork {
  variable: Variable;
  grad: Tensor;
}

/** What the checks need to know of the optimizer. */
export interface GradientScope {
  /** Null: any variable may have a gradient (no `groups`); else the configured groups' variables. */
  groups: readonly (readonly string[])[] | null;
  /** Whether a variable is in one of the groups (with `groups`). */
  inGroups(variableName: string): boolean;
  /** The momentum buffer the variable's step would use, or null; null here: buffers are not checked. */
  bufferOf: ((variableName: string) => Tensor | null) | null;
}

/** checkGradients() on the caller's gradients: a getter or Proxy trap that throws is an AccSGDGradientError. */
export function readGradients(
  variableGradients: NamedTensorMap | NamedTensor[],
  scope: GradientScope,
): GradientWork[] {
  return readInput(
    () => checkGradients(variableGradients, scope),
    (message) =>
      new AccSGDGradientError(
        undefined,
        `the gradients could not be read (${message}); expected a NamedTensorMap or a NamedTensor[] of plain data`,
      ),
  );
}

/** Validates names, shapes and dtypes of every gradient; returns those that are not null. */
export function checkGradients(
  variableGradients: NamedTensorMap | NamedTensor[],
  scope: GradientScope,
): GradientWork[] {
  let pairs: [string, Tensor | null | undefined][];
  if (Array.isArray(variableGradients)) {
    pairs = variableGradients.map((item, i) => {
      if (typeof item !== 'object' || item === null || typeof item.name !== 'string') {
        throw new AccSGDGradientError(
          undefined,
          `item ${i} of the gradient list is not a { name, tensor } pair`,
        );
      }
      return [item.name, item.tensor];
    });
  } else if (isPlainObject(variableGradients)) {
    pairs = Object.entries(variableGradients);
  } else {
    // A Map, a Tensor or another class instance has no own entries to read as gradients: tfjs
    // would take it for an empty step.
    throw new AccSGDGradientError(
      undefined,
      `expected a NamedTensorMap (a plain object { [variableName]: tf.Tensor }) or a NamedTensor[], got ${describe(variableGradients)}`,
    );
  }
  const seen = new Set<string>();
  const work: GradientWork[] = [];
  const registered = engine().registeredVariables;
  for (const [name, grad] of pairs) {
    if (seen.has(name)) throw new AccSGDGradientError(name, 'is given twice in one step');
    seen.add(name);
    const variable = registered[name];
    if (!variable) throw new AccSGDGradientError(name, 'no tf.Variable has this name');
    if (scope.groups && !scope.inGroups(name)) {
      throw new AccSGDGradientError(
        name,
        `the variable is in no parameter group of this optimizer (groups: ${scope.groups.map((g) => `[${g.join(', ')}]`).join(' ')})`,
      );
    }
    if (grad == null) continue;
    if (!(grad instanceof Tensor))
      throw new AccSGDGradientError(name, `expected a tf.Tensor, got ${typeof grad}`);
    if (grad.isDisposed) throw new AccSGDGradientError(name, 'the gradient tensor is disposed');
    if (variable.dtype !== 'float32')
      throw new AccSGDGradientError(name, `AccSGD updates float32 variables; this one is ${variable.dtype}`);
    if (grad.dtype !== 'float32')
      throw new AccSGDGradientError(name, `dtype is ${grad.dtype}; the variable is float32`);
    if (!sameShape(grad.shape, variable.shape)) {
      throw new AccSGDGradientError(
        name,
        `shape is [${grad.shape.join(', ')}]; the variable's is [${variable.shape.join(', ')}]`,
      );
    }
    // A restored buffer of another shape (importState/setWeights before this variable existed, or a
    // variable disposed and re-created under its name) would fail inside commit, part-way.
    const buffer = scope.bufferOf ? scope.bufferOf(name) : null;
    if (buffer && !sameShape(buffer.shape, variable.shape)) {
      throw new AccSGDStateError(
        `the momentum buffer of variable "${name}" has shape [${buffer.shape.join(', ')}]; the variable has shape [${variable.shape.join(', ')}] (restore a state that fits, or dispose() the optimizer)`,
      );
    }
    work.push({ variable, grad });
  }
  return work;
}
