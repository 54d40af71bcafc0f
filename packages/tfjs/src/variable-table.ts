import {
  AccSGDConfigError,
  AccSGDStateError,
  type Hyperparams,
  type OptimizerState,
  ParameterRegistry,
} from '@accsgd/core';
import { type Tensor, tensor, type Variable } from '@tensorflow/tfjs-core';
import { alias, compareVariableNames, layersBaseName, registeredShape, sameShape } from './tensors.js';
import { makeBufferVariable } from './weights-layout.js';

/**
 * The registry's parameters (state names, by index in creation order: the order of getWeights()
 * and of the state file) bound to tf.Variables and their momentum buffers. A restored name may
 * wait for its variable (bound on the variable's first gradient, see bind); a buffer exists
 * exactly where the registry says a parameter has one.
 */
export class VariableTable {
  /** Per registry index: the tf.Variable's name; null while a restored name waits for its variable. */
  private variables: (string | null)[];
  /** Per registry index: the momentum buffer. */
  private buffers: (Variable | null)[];
  private readonly byVariable = new Map<string, number>();

  /**
   * @param oneGroup Without `groups`: one group that grows as variables are seen (bind), and
   *   whose members a restore replaces with the restored names.
   */
  constructor(
    public registry: ParameterRegistry,
    variables: (string | null)[],
    private readonly oneGroup: boolean,
  ) {
    this.variables = variables;
    this.buffers = variables.map(() => null);
    this.reindex();
  }

  /** The variable bound to a parameter, or null. */
  variableAt(index: number): string | null {
    return this.variables[index]!;
  }

  bufferAt(index: number): Variable | null {
    return this.buffers[index]!;
  }

  /** The momentum buffer of a variable bound to a parameter, or null. */
  momentumBuffer(variableName: string): Variable | null {
    const index = this.byVariable.get(variableName);
    return index === undefined ? null : this.buffers[index]!;
  }

  /** Whether a variable is bound to a parameter. */
  bound(variableName: string): boolean {
    return this.byVariable.has(variableName);
  }

  /** The index a variable has, or that of a restored name waiting for it under its exact name. */
  indexOfVariable(variableName: string): number | undefined {
    const known = this.byVariable.get(variableName);
    if (known !== undefined) return known;
    const waiting = this.registry.find(variableName);
    return waiting !== undefined && this.variables[waiting] === null ? waiting : undefined;
  }

  /** The buffer a variable's step would use, or null. */
  bufferOf(variableName: string): Tensor | null {
    const index = this.indexOfVariable(variableName);
    return index === undefined ? null : this.buffers[index]!;
  }

  /** Indices that have a buffer, in creation order. */
  withBuffers(): number[] {
    return this.buffers.flatMap((b, i) => (b === null ? [] : [i]));
  }

  /** Indices bound to a variable, in creation order. */
  withVariables(): number[] {
    return this.variables.flatMap((v, i) => (v === null ? [] : [i]));
  }

  /** Makes the buffer of a parameter's first step from what the kernel gave (named `<name>/momentum_buffer`). */
  createBuffer(index: number, value: Tensor): void {
    this.buffers[index] = makeBufferVariable(value, this.registry.name(index));
  }

  /**
   * The indices of a step's variables: those they have; else, for every variable of the step
   * first, a restored name waiting under the exact name (with or without a buffer); else a
   * restored buffer waiting under tfjs-layers' renaming (a model loaded into a process that already
   * has one gets `dense_Dense1/kernel_1` for `dense_Dense1/kernel`), with the same shape, first in
   * saved order, the variables taken by name (`_1` before `_2`); else a new parameter of group 0,
   * added to the registry in gradient order. Decided first, then applied: all or nothing.
   */
  bind(variables: Variable[]): number[] {
    const result = variables.map((v) => this.indexOfVariable(v.name));
    const claims: [number, number][] = [];
    result.forEach((index, k) => {
      if (index !== undefined && this.variables[index] === null) claims.push([k, index]);
    });
    const unbound = variables.map((_, k) => k).filter((k) => result[k] === undefined);
    if (unbound.length > 0) {
      // Waiting buffers by base name, in saved order.
      const claimed = new Set(claims.map(([, index]) => index));
      const waiting = new Map<string, number[]>();
      this.variables.forEach((bound, i) => {
        if (bound !== null || this.buffers[i] === null || claimed.has(i)) return;
        const base = layersBaseName(this.registry.name(i));
        const list = waiting.get(base);
        if (list) list.push(i);
        else waiting.set(base, [i]);
      });
      const byName = [...unbound].sort((a, b) =>
        compareVariableNames(variables[a]!.name, variables[b]!.name),
      );
      for (const k of byName) {
        const variable = variables[k]!;
        const list = waiting.get(layersBaseName(variable.name));
        const at = list ? list.findIndex((i) => sameShape(this.buffers[i]!.shape, variable.shape)) : -1;
        if (at < 0) continue;
        result[k] = list!.splice(at, 1)[0]!;
        claims.push([k, result[k]!]);
      }
      // New parameters under the variable's name (or, should a renamed variable hold that name in
      // the state file, the first free `<name>_<n>`, so that every state name stays unique).
      const fresh = unbound.filter((k) => result[k] === undefined);
      const names = new Set<string>();
      const params = fresh.map((k) => {
        const base = variables[k]!.name;
        let name = base;
        for (let n = 1; this.registry.find(name) !== undefined || names.has(name); n++) name = `${base}_${n}`;
        names.add(name);
        return { name, shape: [...variables[k]!.shape] };
      });
      const added = this.registry.addParams(0, params);
      fresh.forEach((k, j) => {
        result[k] = added[j]!;
        claims.push([k, added[j]!]);
        this.variables.push(null);
        this.buffers.push(null);
      });
    }
    for (const [k, index] of claims) {
      this.variables[index] = variables[k]!.name;
      this.byVariable.set(variables[k]!.name, index);
    }
    return result as number[];
  }

  /**
   * Restores getWeights()'s layout (setWeights): every buffer replaced by `restored` (by state
   * name), every group's step count set to `iterations`. Checked first: AccSGDStateError, nothing
   * changed, where a buffer this optimizer has for a variable is not restored, or a restored
   * buffer does not fit its variable.
   */
  restoreWeights(restored: ReadonlyMap<string, Tensor>, iterations: number): void {
    const missing = this.withBuffers()
      .filter((i) => this.variables[i] !== null && !restored.has(this.registry.name(i)))
      .map((i) => `"${this.registry.name(i)}"`);
    if (missing.length > 0) {
      throw new AccSGDStateError(
        `the weights have no buffer for ${missing.join(', ')}, which this optimizer has: they were not saved from it (restore them into a fresh optimizer)`,
      );
    }
    this.checkRestoredShapes(new Map([...restored].map(([n, t]) => [n, t.shape])));
    // One group without `groups`: its members are the restored names.
    const next = this.oneGroup
      ? oneGroupRegistry(this.registry.hyperparams(0), [...restored.keys()])
      : this.registry;
    next.restore(
      this.registry.paramGroups.map((g) => ({ hyperparams: g.hyperparams, step: iterations })),
      next.paramNames.map((name) => restored.get(name)?.shape ?? null),
    );
    // The values first (an alias shares the caller's storage, and keeps it alive should the caller
    // have passed our own buffers, as in setWeights(await getWeights())).
    this.replace(
      next,
      next.paramNames.map((name) => {
        const t = restored.get(name);
        return t ? alias(t) : null;
      }),
    );
  }

  /**
   * Restores a decoded state file (importState): buffers, hyperparameters and step counts, or
   * AccSGDStateError and nothing changed. The caller has checked the float32 multipliers and the
   * number of groups.
   */
  importState(state: OptimizerState): void {
    let next = this.registry;
    if (!this.oneGroup) {
      // A variable that does not exist yet has no shape to check against: its buffer is taken as
      // it is here and checked against the variable on the variable's first step (checkGradients).
      next.commitImport(next.planImport(state, { shapes: (i) => registeredShape(this.variables[i]!) }));
    } else {
      // One group that grows as variables are seen: the file must name every variable this
      // optimizer has stepped (it may name more, which wait for their variables). Names from an
      // earlier import that still wait for their variable are state, not parameters: replaced.
      const members = new Set(state.groups[0]!.params);
      const missing = this.withVariables()
        .map((i) => this.registry.name(i))
        .filter((name) => !members.has(name));
      if (missing.length > 0) {
        throw new AccSGDStateError(
          `state has parameters [${state.groups[0]!.params.join(', ')}]; the optimizer also has [${missing.join(', ')}] (a state file of other parameters, or from before these were stepped: import it into a fresh optimizer)`,
        );
      }
      this.checkRestoredShapes(new Map([...state.buffers].map(([n, b]) => [n, b.shape])));
      next = oneGroupRegistry(this.registry.hyperparams(0), state.groups[0]!.params);
      next.commitImport(next.planImport(state));
    }
    this.replace(
      next,
      next.paramNames.map((name) => {
        const b = state.buffers.get(name);
        return b ? tensor(Float32Array.from(b.data), b.shape, 'float32') : null;
      }),
    );
  }

  /** Restored buffers must fit the variables they belong to, where those are known. */
  private checkRestoredShapes(shapes: Map<string, readonly number[]>): void {
    for (const [stateName, shape] of shapes) {
      const index = this.registry.find(stateName);
      if (!this.oneGroup && index === undefined)
        throw new AccSGDStateError(`buffer "${stateName}" belongs to no variable of this optimizer's groups`);
      const expected = registeredShape(index === undefined ? stateName : this.variables[index]!);
      if (expected && !sameShape(expected, shape)) {
        throw new AccSGDStateError(
          `buffer "${stateName}" has shape [${shape.join(', ')}]; the variable has shape [${expected.join(', ')}]`,
        );
      }
    }
  }

  /**
   * Installs `next` (the registry, or a new one for a state's names) with the restored buffer
   * values by its index, disposing the old buffers first so that the new ones get the names
   * `<name>/momentum_buffer` back. Names keep the variables they were bound to. Cannot fail.
   */
  private replace(next: ParameterRegistry, values: (Tensor | null)[]): void {
    for (const buffer of this.buffers) buffer?.dispose();
    const buffers = values.map((value, i) => (value ? makeBufferVariable(value, next.name(i)) : null));
    for (const value of values) value?.dispose();
    if (next !== this.registry) {
      this.variables = next.paramNames.map((name) => {
        const old = this.registry.find(name);
        return old === undefined ? null : this.variables[old]!;
      });
    }
    this.registry = next;
    this.buffers = buffers;
    this.reindex();
  }

  /**
   * Disposes the buffers of these indices, which the registry has already forgotten (a step the
   * device skipped had created them).
   */
  dropBuffers(indices: readonly number[]): void {
    for (const i of indices) {
      this.buffers[i]?.dispose();
      this.buffers[i] = null;
    }
  }

  /** Disposes every buffer; `next` (default: the registry, which forgets them) is the registry from now on. */
  disposeBuffers(next?: ParameterRegistry): void {
    for (const buffer of this.buffers) buffer?.dispose();
    if (next) {
      this.registry = next;
      this.variables = next.paramNames.map(() => null);
    } else {
      this.registry.clearBuffers();
    }
    this.buffers = this.variables.map(() => null);
    this.reindex();
  }

  private reindex(): void {
    this.byVariable.clear();
    this.variables.forEach((name, i) => {
      if (name !== null) this.byVariable.set(name, i);
    });
  }
}

/**
 * A one-group registry (tfjs without `groups`) of `names`, their shapes not known yet. Restored
 * names that cannot be state names are an AccSGDStateError.
 */
export function oneGroupRegistry(hyperparams: Hyperparams, names: readonly string[]): ParameterRegistry {
  try {
    return new ParameterRegistry([{ hyperparams, params: names.map((name) => ({ name, shape: null })) }]);
  } catch (error) {
    if (!(error instanceof AccSGDConfigError)) throw error;
    throw new AccSGDStateError(`the restored names cannot be state names (${error.message})`);
  }
}
