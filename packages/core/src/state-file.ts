import { AccSGDConfigError, AccSGDStateError } from './errors.js';
import { type Hyperparams, validateHyperparams } from './hyperparams.js';
import {
  decodeSafetensors,
  encodeSafetensors,
  firstDuplicateKey,
  product,
  type SafetensorsLimits,
  type SafetensorsTensor,
} from './safetensors.js';

/**
 * The portable optimizer state: a safetensors file whose tensors are the momentum buffers,
 * named `<param name>.momentum_buffer`, and whose metadata carries the parameter groups.
 * See SPEC.md, "State file".
 */
export const STATE_FORMAT = 'accsgd-state';
export const STATE_FORMAT_VERSION = '1';
export const BUFFER_SUFFIX = '.momentum_buffer';

export interface StateGroup {
  hyperparams: Hyperparams;
  /** Names of the group's parameters. */
  params: string[];
  /** Steps this group has taken part in (steps in which at least one member had a gradient). */
  step: number;
}

export interface StateBuffer {
  shape: number[];
  data: Float32Array | Float64Array;
}

export interface OptimizerState {
  groups: StateGroup[];
  /** Keyed by parameter name; parameters without a buffer yet are absent. */
  buffers: Map<string, StateBuffer>;
}

/** What an optimizer has, to check a state against before importing it. */
export interface StateLayout {
  groups: readonly { params: readonly string[] }[];
  shapes: ReadonlyMap<string, readonly number[]>;
}

interface GroupRecord {
  lr: number;
  kappa: number;
  xi: number;
  small_const: number;
  weight_decay: number;
  params: string[];
  step: number;
}
const GROUP_KEYS = ['lr', 'kappa', 'xi', 'small_const', 'weight_decay', 'params', 'step'];

export function encodeState(state: OptimizerState): Uint8Array {
  const groups: GroupRecord[] = state.groups.map((g) => ({
    lr: g.hyperparams.lr,
    kappa: g.hyperparams.kappa,
    xi: g.hyperparams.xi,
    small_const: g.hyperparams.smallConst,
    weight_decay: g.hyperparams.weightDecay,
    params: [...g.params],
    step: g.step,
  }));
  const tensors: [string, SafetensorsTensor][] = [];
  for (const group of state.groups) {
    for (const name of group.params) {
      const buffer = state.buffers.get(name);
      if (!buffer) continue;
      const dtype = buffer.data instanceof Float64Array ? 'F64' : 'F32';
      tensors.push([name + BUFFER_SUFFIX, { dtype, shape: [...buffer.shape], data: buffer.data }]);
    }
  }
  return encodeSafetensors(tensors, {
    format: STATE_FORMAT,
    format_version: STATE_FORMAT_VERSION,
    param_groups: JSON.stringify(groups),
  });
}

function fail(message: string): never {
  throw new AccSGDStateError(`invalid AccSGD state file: ${message}`);
}

/** Parses a state file strictly. Throws AccSGDStateError saying what is wrong. */
export function decodeState(bytes: Uint8Array, limits?: SafetensorsLimits): OptimizerState {
  const file = decodeSafetensors(bytes, limits);
  const { format, format_version: version, param_groups: groupsJson, ...extra } = file.metadata;
  if (format !== STATE_FORMAT)
    fail(`metadata "format" is ${JSON.stringify(format)}; expected "${STATE_FORMAT}"`);
  if (version !== STATE_FORMAT_VERSION) {
    fail(
      `metadata "format_version" is ${JSON.stringify(version)}; this library reads version ${STATE_FORMAT_VERSION}`,
    );
  }
  const unknown = Object.keys(extra);
  if (unknown.length > 0) fail(`unknown metadata key "${unknown[0]}"`);
  if (groupsJson === undefined) fail('metadata has no "param_groups"');
  let parsed: unknown;
  try {
    parsed = JSON.parse(groupsJson);
  } catch (error) {
    fail(`metadata "param_groups" is not JSON (${(error as Error).message})`);
  }
  if (!Array.isArray(parsed)) fail('metadata "param_groups" is not an array');
  const duplicate = firstDuplicateKey(groupsJson);
  if (duplicate !== undefined)
    fail(`key ${JSON.stringify(duplicate)} appears more than once in one object of "param_groups"`);

  const owner = new Map<string, number>();
  const groups: StateGroup[] = parsed.map((raw: unknown, index: number) => {
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
      fail(`param_groups[${index}] is not an object`);
    const record = raw as Record<string, unknown>;
    for (const key of Object.keys(record)) {
      if (!GROUP_KEYS.includes(key)) fail(`param_groups[${index}] has unknown key "${key}"`);
    }
    for (const key of GROUP_KEYS) if (!(key in record)) fail(`param_groups[${index}] lacks "${key}"`);
    const { params, step } = record as unknown as GroupRecord;
    if (!Array.isArray(params) || !params.every((p) => typeof p === 'string')) {
      fail(`param_groups[${index}].params is not an array of names`);
    }
    for (const name of params) {
      if (owner.has(name))
        fail(`parameter "${name}" is listed twice (groups ${owner.get(name)} and ${index})`);
      owner.set(name, index);
    }
    if (!Number.isSafeInteger(step) || step < 0)
      fail(`param_groups[${index}].step is ${JSON.stringify(step)}; expected an integer >= 0`);
    let hyperparams: Hyperparams;
    try {
      hyperparams = validateHyperparams({
        lr: record.lr as number,
        kappa: record.kappa as number,
        xi: record.xi as number,
        smallConst: record.small_const as number,
        weightDecay: record.weight_decay as number,
      });
    } catch (error) {
      if (error instanceof AccSGDConfigError) fail(`param_groups[${index}]: ${error.message}`);
      throw error;
    }
    return { hyperparams, params: [...params], step };
  });

  const buffers = new Map<string, StateBuffer>();
  for (const [tensorName, tensor] of file.tensors) {
    if (!tensorName.endsWith(BUFFER_SUFFIX))
      fail(`tensor "${tensorName}" is not named "<param>${BUFFER_SUFFIX}"`);
    const name = tensorName.slice(0, -BUFFER_SUFFIX.length);
    if (!owner.has(name)) fail(`tensor "${tensorName}" belongs to no parameter group`);
    buffers.set(name, { shape: tensor.shape, data: tensor.data });
  }
  return { groups, buffers };
}

/**
 * Throws AccSGDStateError unless the record is internally valid: hyperparameters in range, integer
 * step counts >= 0, each name in one group only, and buffer data as long as its shape says. A state
 * from decodeState always is; a state built by hand may not be.
 */
function assertStateConsistent(state: OptimizerState): void {
  const owner = new Set<string>();
  state.groups.forEach((group, index) => {
    try {
      validateHyperparams({ ...group.hyperparams });
    } catch (error) {
      if (error instanceof AccSGDConfigError) throw new AccSGDStateError(`group ${index}: ${error.message}`);
      throw error;
    }
    if (!Number.isSafeInteger(group.step) || group.step < 0) {
      throw new AccSGDStateError(`group ${index} has step ${group.step}; expected an integer >= 0`);
    }
    for (const name of group.params) {
      if (owner.has(name)) throw new AccSGDStateError(`parameter "${name}" is listed in more than one place`);
      owner.add(name);
    }
  });
  for (const [name, buffer] of state.buffers) {
    if (!(buffer.data instanceof Float32Array || buffer.data instanceof Float64Array)) {
      throw new AccSGDStateError(`buffer "${name}${BUFFER_SUFFIX}" is not a Float32Array or Float64Array`);
    }
    if (buffer.data.length !== product(buffer.shape)) {
      throw new AccSGDStateError(
        `buffer "${name}${BUFFER_SUFFIX}" has ${buffer.data.length} values for shape [${buffer.shape.join(', ')}]`,
      );
    }
  }
}

/**
 * Throws AccSGDStateError unless `state` describes exactly the optimizer's parameters:
 * the same number of groups, the same member names in each group, and buffer shapes equal to
 * the parameters' shapes.
 */
export function assertStateFits(state: OptimizerState, layout: StateLayout): void {
  assertStateConsistent(state);
  if (state.groups.length !== layout.groups.length) {
    throw new AccSGDStateError(
      `state has ${state.groups.length} parameter group(s); the optimizer has ${layout.groups.length}`,
    );
  }
  state.groups.forEach((group, index) => {
    const expected = layout.groups[index]!.params;
    const missing = expected.filter((n) => !group.params.includes(n));
    const unexpected = group.params.filter((n) => !expected.includes(n));
    if (missing.length > 0 || unexpected.length > 0) {
      throw new AccSGDStateError(
        `group ${index} of the state has parameters [${group.params.join(', ')}]; the optimizer's group ${index} has [${expected.join(', ')}]` +
          (missing.length > 0 ? ` (missing: ${missing.join(', ')})` : '') +
          (unexpected.length > 0 ? ` (unknown: ${unexpected.join(', ')})` : ''),
      );
    }
  });
  for (const [name, buffer] of state.buffers) {
    const shape = layout.shapes.get(name);
    if (!shape || shape.length !== buffer.shape.length || shape.some((d, i) => d !== buffer.shape[i])) {
      throw new AccSGDStateError(
        `buffer "${name}${BUFFER_SUFFIX}" has shape [${buffer.shape.join(', ')}]; parameter "${name}" has shape [${shape?.join(', ') ?? ''}]`,
      );
    }
  }
}
