import { AccSGDConfigError, AccSGDError, AccSGDStateError, describeError, formatValue } from './errors.js';
import { HYPERPARAM_NAMES, type Hyperparams, validateHyperparams } from './hyperparams.js';
import { isGenuineFloatArray, listNames, typedLength } from './lookup.js';
import {
  decodeSafetensors,
  encodeSafetensors,
  firstDuplicateKey,
  resolveLimits,
  type SafetensorsLimits,
  type SafetensorsTensor,
  shapeProblem,
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

/**
 * Writes the state file. Refuses, with AccSGDStateError and before writing anything, every state
 * that decodeState would reject (or read back differently) under the same limits: invalid
 * hyperparameters or unknown hyperparameter keys, a step that is not a safe integer >= 0, a name in
 * two places, a buffer of no group's parameter, a shape that does not fit its data, data that is
 * not a Float32Array/Float64Array, more buffers than `limits.maxTensors` or a header over
 * `limits.maxHeaderBytes` (defaults: the reader's). `-0` hyperparameters are written as 0.
 */
export function encodeState(state: OptimizerState, limits?: SafetensorsLimits): Uint8Array {
  const resolved = resolveLimits(limits);
  const checked = normalizeState(state, 'cannot write AccSGD state: ');
  const groups: GroupRecord[] = checked.groups.map((g) => ({
    lr: g.hyperparams.lr,
    kappa: g.hyperparams.kappa,
    xi: g.hyperparams.xi,
    small_const: g.hyperparams.smallConst,
    weight_decay: g.hyperparams.weightDecay,
    params: [...g.params],
    step: g.step,
  }));
  const tensors: [string, SafetensorsTensor][] = [];
  for (const group of checked.groups) {
    for (const name of group.params) {
      const buffer = checked.buffers.get(name);
      if (!buffer) continue;
      const dtype = buffer.data instanceof Float64Array ? 'F64' : 'F32';
      tensors.push([name + BUFFER_SUFFIX, { dtype, shape: [...buffer.shape], data: buffer.data }]);
    }
  }
  try {
    return encodeSafetensors(
      tensors,
      { format: STATE_FORMAT, format_version: STATE_FORMAT_VERSION, param_groups: JSON.stringify(groups) },
      resolved,
    );
  } catch (error) {
    if (error instanceof AccSGDStateError)
      throw new AccSGDStateError(`cannot write AccSGD state: ${error.message}`);
    throw error;
  }
}

function fail(message: string): never {
  throw new AccSGDStateError(`invalid AccSGD state file: ${message}`);
}

/** Parses a state file strictly. Throws AccSGDStateError saying what is wrong. */
export function decodeState(bytes: Uint8Array, limits?: SafetensorsLimits): OptimizerState {
  resolveLimits(limits); // AccSGDConfigError for bad limits, before anything is read
  const file = decodeSafetensors(bytes, limits);
  const { format, format_version: version, param_groups: groupsJson, ...extra } = file.metadata;
  if (format !== STATE_FORMAT)
    fail(`metadata "format" is ${formatValue(format)}; expected "${STATE_FORMAT}"`);
  if (version !== STATE_FORMAT_VERSION) {
    fail(
      `metadata "format_version" is ${formatValue(version)}; this library reads version ${STATE_FORMAT_VERSION}`,
    );
  }
  const unknown = Object.keys(extra);
  if (unknown.length > 0) fail(`unknown metadata key ${formatValue(unknown[0])}`);
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
    fail(`key ${formatValue(duplicate)} appears more than once in one object of "param_groups"`);

  const owner = new Map<string, number>();
  const groups: StateGroup[] = parsed.map((raw: unknown, index: number) => {
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
      fail(`param_groups[${index}] is not an object`);
    const record = raw as Record<string, unknown>;
    for (const key of Object.keys(record)) {
      if (!GROUP_KEYS.includes(key)) fail(`param_groups[${index}] has unknown key ${formatValue(key)}`);
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
      fail(`param_groups[${index}].step is ${formatValue(step)}; expected an integer >= 0`);
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

const BUFFER_KEYS = ['shape', 'data'];
const STATE_GROUP_KEYS = ['hyperparams', 'params', 'step'];
/** Longest array read from a hand-built state (a Proxy may claim any length). */
const MAX_ITEMS = 2 ** 26;

/** Own enumerable keys of a record, or undefined when `value` is not a non-array object. */
function recordKeys(value: unknown): string[] | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  return Object.keys(value);
}

function readArray(value: unknown): unknown[] | undefined {
  if (!Array.isArray(value) || !(value.length <= MAX_ITEMS)) return undefined;
  const out: unknown[] = [];
  for (let i = 0; i < value.length; i++) out.push(value[i]);
  return out;
}

/**
 * A checked copy of a state record: every field read once (so a getter cannot change its answer
 * between the check and the use) and every rule of decodeState applied. Throws AccSGDStateError,
 * prefixed with `context`, for the first problem, including anything thrown while reading.
 * A state from decodeState always passes; a state built by hand may not. The buffers' data arrays
 * are shared with `state`, not copied.
 */
export function normalizeState(state: OptimizerState, context = ''): OptimizerState {
  try {
    return normalizeChecked(state, context);
  } catch (error) {
    if (error instanceof AccSGDStateError) throw error;
    if (error instanceof AccSGDError) throw new AccSGDStateError(`${context}${error.message}`);
    throw new AccSGDStateError(`${context}the state could not be read (${describeError(error)})`);
  }
}

function normalizeChecked(state: OptimizerState, context: string): OptimizerState {
  const bad = (message: string): never => {
    throw new AccSGDStateError(`${context}${message}`);
  };
  const stateKeys = recordKeys(state);
  if (stateKeys === undefined) bad(`the state is ${formatValue(state)}; expected { groups, buffers }`);
  const rawGroups = readArray(state.groups);
  if (rawGroups === undefined)
    bad(`state.groups is ${formatValue(state.groups)}; expected an array of groups`);
  const owner = new Set<string>();
  const groups: StateGroup[] = rawGroups!.map((raw, index) => {
    const keys = recordKeys(raw);
    if (keys === undefined)
      bad(`group ${index} is ${formatValue(raw)}; expected { hyperparams, params, step }`);
    const unknown = keys!.find((k) => !STATE_GROUP_KEYS.includes(k));
    if (unknown !== undefined) bad(`group ${index} has unknown key ${formatValue(unknown)}`);
    const group = raw as StateGroup;
    const source = group.hyperparams as unknown as Record<string, unknown>;
    const hyperKeys = recordKeys(source);
    if (hyperKeys === undefined)
      bad(`group ${index}.hyperparams is ${formatValue(source)}; expected an object`);
    const extra = hyperKeys!.find((k) => !(HYPERPARAM_NAMES as readonly string[]).includes(k));
    if (extra !== undefined) bad(`group ${index}.hyperparams has unknown key ${formatValue(extra)}`);
    const hyper = {} as Record<string, unknown>;
    // -0 means 0 (and a JSON file cannot keep the sign).
    for (const name of HYPERPARAM_NAMES) hyper[name] = Object.is(source[name], -0) ? 0 : source[name];
    let hyperparams: Hyperparams;
    try {
      hyperparams = validateHyperparams(hyper as unknown as Hyperparams);
    } catch (error) {
      if (error instanceof AccSGDConfigError) bad(`group ${index}: ${error.message}`);
      throw error;
    }
    const step: unknown = group.step;
    if (typeof step !== 'number' || !Number.isSafeInteger(step) || step < 0) {
      bad(`group ${index} has step ${formatValue(step)}; expected an integer >= 0 and <= 2^53 - 1`);
    }
    const params = readArray(group.params);
    if (params === undefined || !params.every((p) => typeof p === 'string'))
      bad(`group ${index}.params is ${formatValue(group.params)}; expected an array of names`);
    for (const name of params as string[]) {
      if (owner.has(name)) bad(`parameter "${name}" is listed in more than one place`);
      owner.add(name);
    }
    return { hyperparams: hyperparams!, params: params as string[], step: step as number };
  });
  const rawBuffers: unknown = state.buffers;
  if (!(rawBuffers instanceof Map)) bad(`state.buffers is ${formatValue(rawBuffers)}; expected a Map`);
  const entries: [unknown, unknown][] = [];
  // Map.prototype.forEach reads the internal slots (a Proxy or a Map subclass cannot intervene).
  Map.prototype.forEach.call(rawBuffers, (value: unknown, key: unknown) => {
    entries.push([key, value]);
  });
  const buffers = new Map<string, StateBuffer>();
  for (const [name, raw] of entries) {
    if (typeof name !== 'string')
      bad(`state.buffers has key ${formatValue(name)}; expected a parameter name`);
    const label = `buffer "${name as string}${BUFFER_SUFFIX}"`;
    if (!owner.has(name as string)) bad(`${label} belongs to no parameter group`);
    const keys = recordKeys(raw);
    if (keys === undefined) bad(`${label} is ${formatValue(raw)}; expected { shape, data }`);
    const unknown = keys!.find((k) => !BUFFER_KEYS.includes(k));
    if (unknown !== undefined) bad(`${label} has unknown key ${formatValue(unknown)}`);
    const { shape: rawShape, data } = raw as StateBuffer;
    if (!isGenuineFloatArray(data)) {
      bad(`${label} is not a Float32Array or Float64Array; got ${formatValue(data)}`);
    }
    const shape = readArray(rawShape);
    if (shape === undefined)
      bad(`${label} has shape ${formatValue(rawShape)}; expected an array of integers >= 0`);
    const length = typedLength(data);
    const problem = shapeProblem(shape, undefined);
    if (problem !== undefined) bad(`${label} has shape ${formatValue(shape)}, which ${problem}`);
    if (product(shape as number[]) !== length) {
      bad(`${label} has ${length} values for shape [${(shape as number[]).join(', ')}]`);
    }
    buffers.set(name as string, { shape: shape as number[], data });
  }
  return { groups, buffers };
}

function product(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * Throws AccSGDStateError, changing nothing, unless `state` is internally valid (see
 * normalizeState) and describes exactly the optimizer's parameters: the same number of groups, the
 * same member names in each group, and buffer shapes equal to the parameters' shapes. Returns the
 * checked copy, which is what an importer should apply (it cannot change after the check).
 */
export function assertStateFits(input: OptimizerState, layout: StateLayout): OptimizerState {
  const state = normalizeState(input);
  if (state.groups.length !== layout.groups.length) {
    throw new AccSGDStateError(
      `state has ${state.groups.length} parameter group(s); the optimizer has ${layout.groups.length}`,
    );
  }
  state.groups.forEach((group, index) => {
    const expected = layout.groups[index]!.params;
    const expectedSet = new Set(expected);
    const givenSet = new Set(group.params);
    const missing = expected.filter((n) => !givenSet.has(n));
    const unexpected = group.params.filter((n) => !expectedSet.has(n));
    if (missing.length > 0 || unexpected.length > 0) {
      throw new AccSGDStateError(
        `group ${index} of the state has parameters [${listNames(group.params)}]; the optimizer's group ${index} has [${listNames(expected)}]` +
          (missing.length > 0 ? ` (missing: ${listNames(missing)})` : '') +
          (unexpected.length > 0 ? ` (unknown: ${listNames(unexpected)})` : ''),
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
  return state;
}
