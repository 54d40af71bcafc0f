import {
  AccSGDConfigError,
  AccSGDError,
  AccSGDGradientError,
  AccSGDStateError,
  assertFloat32StateGroups,
  assertStateFits,
  decodeState,
  encodeState,
  fusedCoefficientArray,
  groupAt,
  type Hyperparams,
  type HyperparamsInput,
  type NonFinitePolicy,
  nonFinitePolicy,
  type OptimizerState,
  paramAt,
  rejectNonFinite,
  resolveHyperparams,
  type StateBuffer,
  type StepResult,
  validateHyperparams,
} from '@accsgd/core';
import { AccSGDDeviceError, AccSGDDeviceLostError } from './errors.js';
import {
  type AccessType,
  type AccSGDPipeline,
  accsgdUpdatePipeline,
  defaultWorkgroupsPerDispatch,
  dispatchSize,
  elementsPerChunk,
  forgetAccsgdUpdatePipeline,
  SEGMENT_ACTIVE,
  SEGMENT_ENTRY_BYTES,
  SEGMENT_ENTRY_WORDS,
  SEGMENT_INITIALISE,
  STATUS_NONE,
  type StorageType,
  statusWords,
  UNIFORM_BYTES,
  UNIFORM_WORDS,
  vec4Eligible,
} from './kernels/accsgd-update.js';

/** One tensor inside a group's flat storage. */
export interface SegmentInput {
  /** Name in the state file; default: the tensor's index over all groups ("0", "1", ...), as in PyTorch. */
  name?: string;
  /** First element of the tensor in the flat params (and grads) buffer. */
  offset: number;
  /** Shape, checked against state files; default: [size]. */
  shape?: number[];
  /** Element count; default: the product of `shape`. */
  size?: number;
}

/**
 * A parameter group over flat storage the caller owns: every tensor of the group sits at
 * `segments[k].offset` (in elements) in `params`, and its gradient at the same offset in `grads`.
 * Both need STORAGE usage; reading parameters back also needs COPY_SRC on `params`.
 */
export interface WebGPUParamGroup extends Partial<Hyperparams> {
  params: GPUBuffer;
  grads: GPUBuffer;
  segments: readonly SegmentInput[];
}

/** One tensor of a list-form group: its own params and grads buffers, from byte 0. */
export interface TensorInput {
  /** Name in the state file; default: the tensor's index over all groups ("0", "1", ...), as in PyTorch. */
  name?: string;
  /** The tensor's parameters from byte 0: STORAGE usage (and COPY_SRC to read them back). */
  params: GPUBuffer;
  /** Its gradient from byte 0: STORAGE usage (and COPY_SRC for the value in a non-finite error). */
  grads: GPUBuffer;
  /** Element count. */
  elements: number;
  /** Shape, checked against state files; default: [elements]. Its product must be `elements`. */
  shape?: number[];
}

/**
 * A parameter group given as a list of tensors, each in its own buffers (the list form). Each
 * tensor is its own binding window, so a step costs one dispatch per tensor (per binding window of
 * a tensor beyond maxStorageBufferBindingSize); the flat form (WebGPUParamGroup) is the
 * one-dispatch-per-group path. Everything else (coefficients, flags, the non-finite check, state
 * files) is the same: the tensors are laid out in the group's momentum buffer as if in flat storage.
 */
export interface WebGPUTensorListGroup extends Partial<Hyperparams> {
  tensors: readonly TensorInput[];
}

/** A group in either form: flat storage with a segment table, or a list of tensors with their own buffers. */
export type WebGPUGroupInput = WebGPUParamGroup | WebGPUTensorListGroup;

export interface WebGPUAccSGDOptions {
  /** Precision of parameters and gradients in storage; arithmetic and momentum buffers are float32. Default 'float32'. */
  storage?: StorageType;
  /** Label prefix of the GPU objects the optimizer creates. */
  label?: string;
  /** Caps binding windows below the device's maxStorageBufferBindingSize (for tests and tuning). */
  maxBindingBytes?: number;
  /** Caps workgroups per dispatch dimension below the device's limit (for tests). */
  maxWorkgroupsPerDimension?: number;
  /**
   * Workgroups per dispatch (the kernel's grid-stride loop covers any window with any count).
   * Default: 64 on a CPU (fallback) adapter such as SwiftShader, 4,096 on a GPU; see
   * defaultWorkgroupsPerDispatch.
   */
  workgroupsPerDispatch?: number;
  /**
   * What a step does with a non-finite (NaN or infinite) gradient in a tensor that has a gradient
   * this step (SPEC §2 rule 6). 'error' (default): step() rejects with AccSGDGradientError naming
   * the tensor and element; 'skip-step': step() resolves { applied: false, reason } ; either way
   * nothing changes (parameters, buffers, step counts). 'allow': computed with, no check.
   *
   * The check runs on the GPU: a scan dispatch per binding window before the update dispatches, in
   * the same pass, writes a status word the update kernel is predicated on, so a rejected step
   * never touches anything. Its cost: one extra read of every active gradient (4 bytes per float32
   * element on top of the update's 20) and a 4-byte-per-group status read back per step, which
   * makes step() wait for the GPU to finish the step before it resolves. 'allow' skips both.
   */
  nonFinite?: NonFinitePolicy;
}

/**
 * Which tensors have a gradient this step: booleans aligned with `paramNames`, or a record keyed
 * by name (missing or false: no gradient). Omitted: every tensor has one.
 */
export type GradientPresence = readonly boolean[] | Readonly<Record<string, boolean | null | undefined>>;

export interface StepOptions {
  /** Timestamp writes for the compute pass that holds the step's dispatches (benchmarks). */
  timestampWrites?: GPUComputePassTimestampWrites;
}

interface Slot {
  name: string;
  shape: number[];
  /** First element in the group's (flat or, for the list form, virtual) element space: segment-table coordinates. */
  offset: number;
  size: number;
  /** The buffers holding the tensor's parameters and gradient, and its first element in them. */
  params: GPUBuffer;
  grads: GPUBuffer;
  first: number;
  /** How the buffers are named in errors: "groups[g]" (flat form) or "groups[g].tensors[k]" (list form). */
  where: string;
  group: number;
  /** Position in `paramNames`. */
  index: number;
  hasBuffer: boolean;
}

interface Window {
  /** First element (in the group's flat storage) and element count. */
  start: number;
  length: number;
  /** The buffers the window binds for params and grads, and the element of them bound at `start`. */
  params: GPUBuffer;
  grads: GPUBuffer;
  storageStart: number;
  /** Range of the group's non-empty slots (in offset order) that intersect the window. */
  firstSlot: number;
  endSlot: number;
  /** Every element of the window belongs to some segment. */
  covered: boolean;
  /** The program for this window: vec4 where vec4Eligible, scalar otherwise. */
  pipeline: AccSGDPipeline;
  bindGroup: GPUBindGroup;
  dispatch: [number, number];
}

interface Group {
  /** The first element of flat storage the momentum buffer covers (its element 0). */
  base: number;
  /** The hyperparameters of the calls that have run (what queued work reads). */
  hyperparams: Hyperparams;
  /** The latest setLearningRate not yet run (shown by paramGroups at once), or null. */
  pendingLr: { lr: number; token: number } | null;
  step: number;
  slots: Slot[];
  /** Non-empty slots sorted by offset: the rows of the segment table. */
  table: Slot[];
  /** The flat form's buffers; null for the list form, whose tensors have their own (see Slot). */
  params: GPUBuffer | null;
  grads: GPUBuffer | null;
  momentum: GPUBuffer;
  segmentTable: GPUBuffer;
  uniforms: GPUBuffer;
  windows: Window[];
  lastTable: Uint32Array | null;
}

const GROUP_EXTRA_KEYS = ['params', 'grads', 'segments'];
const OPTION_KEYS = [
  'storage',
  'label',
  'maxBindingBytes',
  'maxWorkgroupsPerDimension',
  'workgroupsPerDispatch',
  'nonFinite',
] as const;
const STEP_OPTION_KEYS = ['timestampWrites'];
const TIMESTAMP_WRITES_KEYS = ['querySet', 'beginningOfPassWriteIndex', 'endOfPassWriteIndex'];
const LIST_GROUP_EXTRA_KEYS = ['tensors'];
const READBACK_CHUNK_BYTES = 64 * 1024 * 1024;

/** The kernels compute with float32 multipliers, so accepted hyperparameters must fit float32 (SPEC §1). */
const F32 = { precision: 'float32' } as const;

/**
 * AccSGD on WebGPU over flat parameter storage the caller owns: one dispatch per parameter group
 * per step (one per binding window when a group exceeds maxStorageBufferBindingSize).
 *
 *   const opt = await WebGPUAccSGD.create(device, [{ params, grads, segments }], { lr: 0.1 });
 *   await opt.step();                 // every tensor has a gradient in `grads`
 *   await opt.step({ bias: false });  // "bias" has no gradient this step
 *
 * A group may instead be a list of tensors with their own buffers, `{ tensors: [{ name, params,
 * grads, elements }] }` (WebGPUTensorListGroup): the same kernel, flags, non-finite check and state
 * file, at one dispatch per tensor (each tensor is its own binding window).
 *
 * The update is the one of @accsgd/core (see AccSGD there): coefficients are formed per group in
 * float64 on the host by `fusedCoefficientArray` and passed as a uniform block, rounded to float32
 * once; the kernel reads p, g and buf once and writes p and buf once. Momentum buffers are owned by
 * the optimizer (float32, allocated at creation) and count as absent until a tensor's first step
 * with a gradient, which initialises the buffer from p inside the same pass.
 *
 * Calls are serialised and take effect in the order they are made, without awaiting: each public
 * async method (and setLearningRate) runs after the previous one has finished, and a step forms its
 * coefficients when it runs, so `opt.importState(b); opt.setLearningRate(lr); opt.step()` steps
 * with the imported state and `lr`, as the same PyTorch calls would. Device errors are captured
 * with error scopes and raised as AccSGDDeviceError naming the call; a lost device rejects pending
 * and later calls with AccSGDDeviceLostError.
 *
 * Non-finite gradients follow the nonFinite option (SPEC §2 rule 6; default 'error'), checked on the
 * GPU in the step's own pass, so a rejected or skipped step changes nothing.
 */
export class WebGPUAccSGD {
  readonly storage: StorageType;
  private readonly groups: Group[];
  private readonly slots: Slot[];
  private readonly byName: Map<string, Slot>;
  private readonly label: string;
  private tail: Promise<unknown> = Promise.resolve();
  private lostInfo: GPUDeviceLostInfo | null = null;
  private readonly lost: Promise<GPUDeviceLostInfo>;
  private destroyed = false;
  readonly nonFinite: NonFinitePolicy;
  /** Status words of the non-finite scan (see statusWords) and their MAP_READ copy. */
  private status: GPUBuffer | undefined;
  private statusRead: GPUBuffer | undefined;
  /** Counts setLearningRate calls, to tell whose pending rate a group shows. */
  private lrChanges = 0;

  /** Validates everything, then creates the GPU objects inside error scopes. */
  static async create(
    device: GPUDevice,
    groups: WebGPUGroupInput[],
    defaults: HyperparamsInput,
    options?: WebGPUAccSGDOptions,
  ): Promise<WebGPUAccSGD> {
    // Inputs that cannot even be read (a getter or Proxy trap that throws, a revoked Proxy) are
    // rejected as configuration errors too; nothing has been created yet.
    const optimizer = typed(
      () => new WebGPUAccSGD(device, groups, defaults, options),
      (detail) =>
        new AccSGDConfigError(
          'create',
          'an unreadable argument',
          'readable arguments (device, groups, defaults, options)',
          `could not read its arguments (${detail})`,
        ),
    );
    try {
      await optimizer.enqueue('create', () => optimizer.checked('create', () => optimizer.allocate()));
    } catch (error) {
      // Nothing is returned, so nobody else could free what allocate() created before it failed.
      optimizer.destroy();
      // A pipeline whose compilation failed asynchronously (reported through the error scope)
      // must not stay cached for the next create() on this device.
      for (const storage of ['float32', 'float16'] as const) forgetAccsgdUpdatePipeline(device, storage);
      throw error;
    }
    // From here on the device's loss is reported by every call.
    return optimizer;
  }

  /** The programs in use (cached per device), by access type. */
  private pipelines = new Map<AccessType, AccSGDPipeline>();
  private readonly maxBindingBytes: number;
  private readonly maxWorkgroups: number;
  private readonly workgroupsPerDispatch: number;

  /** The device's own GPUBuffer accessors: what tells a real buffer from a look-alike or a Proxy. */
  private readonly bufferBrand: BufferBrand | null;

  private constructor(
    readonly device: GPUDevice,
    groupInputs: WebGPUGroupInput[],
    defaults: HyperparamsInput,
    optionsInput: WebGPUAccSGDOptions | undefined,
  ) {
    let looksLikeDevice = false;
    try {
      looksLikeDevice =
        typeof device === 'object' &&
        device !== null &&
        typeof device.createBuffer === 'function' &&
        typeof device.queue === 'object' &&
        device.queue !== null;
    } catch {
      // A Proxy of a device, or an object whose getters throw: not a device the optimizer can use.
    }
    if (!looksLikeDevice) throw new AccSGDConfigError('device', describeValue(device), 'a GPUDevice');
    const options = createOptions(optionsInput);
    this.bufferBrand = brandOf(device);
    const storage = options.storage ?? 'float32';
    if (storage !== 'float32' && storage !== 'float16')
      throw new AccSGDConfigError('storage', storage, '"float32" or "float16"');
    if (storage === 'float16' && !device.features.has('shader-f16')) {
      throw new AccSGDDeviceError(
        'create',
        'unsupported',
        'float16 storage needs the "shader-f16" feature, which this device lacks (request it with ' +
          "adapter.requestDevice({ requiredFeatures: ['shader-f16'] }) on an adapter that has it, or use storage: 'float32')",
      );
    }
    this.storage = storage;
    this.nonFinite = nonFinitePolicy(options.nonFinite);
    this.label = options.label ?? 'accsgd';
    const limits = device.limits;
    this.maxBindingBytes = limitOption(
      'maxBindingBytes',
      options.maxBindingBytes,
      limits.maxStorageBufferBindingSize,
    );
    this.maxWorkgroups = limitOption(
      'maxWorkgroupsPerDimension',
      options.maxWorkgroupsPerDimension,
      limits.maxComputeWorkgroupsPerDimension,
    );
    this.workgroupsPerDispatch = limitOption(
      'workgroupsPerDispatch',
      options.workgroupsPerDispatch,
      Number.MAX_SAFE_INTEGER,
      defaultWorkgroupsPerDispatch(device),
    );
    const base = resolveHyperparams(shownValues(defaults) as HyperparamsInput);
    if (!Array.isArray(groupInputs) || groupInputs.length === 0) {
      throw new AccSGDConfigError(
        'groups',
        groupInputs,
        'a non-empty array of { params, grads, segments } or { tensors } groups',
      );
    }
    const elementBytes = storage === 'float16' ? 2 : 4;
    // Binding offsets must be aligned: momentum starts at the aligned element at or below the group's first.
    const alignElements = Math.max(1, limits.minStorageBufferOffsetAlignment / elementBytes);
    this.groups = [];
    this.slots = [];
    this.byName = new Map();
    // Index by index, holes as undefined (forEach and map would skip them); the first bad group
    // stops the walk, so a sparse array of length 2^32 - 1 is not walked in full.
    const groupCount = groupInputs.length;
    for (let g = 0; g < groupCount; g++) {
      const input = groupInputs[g];
      const where = `groups[${g}]`;
      if (typeof input !== 'object' || input === null)
        throw new AccSGDConfigError(where, input, 'a group { params, grads, segments } or { tensors }');
      if ('tensors' in input) {
        this.addTensorList(input, g, base, elementBytes, alignElements);
        continue;
      }
      const { params, grads, segments, ...hyper } = input;
      const hyperparams = validateHyperparams(
        resolveHyperparams(shownValues(hyper) as Partial<Hyperparams>, base, GROUP_EXTRA_KEYS),
        F32,
      );
      checkBuffer(`${where}.params`, params, GPUBufferUsageFlag.STORAGE, undefined, this.bufferBrand);
      checkBuffer(`${where}.grads`, grads, GPUBufferUsageFlag.STORAGE, undefined, this.bufferBrand);
      if (params === grads)
        throw new AccSGDConfigError(`${where}.grads`, 'the params buffer', 'a buffer other than params');
      if (!Array.isArray(segments) || segments.length === 0) {
        throw new AccSGDConfigError(
          `${where}.segments`,
          segments,
          'a non-empty array of { offset, shape or size }',
        );
      }
      const names = new Set<string>();
      const slots = Array.from(segments as readonly SegmentInput[], (segment, k): Slot => {
        const at = `${where}.segments[${k}]`;
        if (typeof segment !== 'object' || segment === null)
          throw new AccSGDConfigError(at, segment, '{ offset, shape or size }');
        const { offset, shape: shapeInput, size } = segment;
        if (!Number.isSafeInteger(offset) || offset < 0)
          throw new AccSGDConfigError(`${at}.offset`, shown(offset), 'an integer >= 0 (elements)');
        const shape = checkedShape(`${at}.shape`, shapeInput);
        const shapeCount = shape?.reduce((a, d) => a * d, 1);
        const count = size ?? shapeCount;
        if (count === undefined || !Number.isSafeInteger(count) || count < 0) {
          throw new AccSGDConfigError(`${at}.size`, shown(size), 'an integer >= 0 (or give a shape)');
        }
        if (shapeCount !== undefined && shapeCount !== count) {
          throw new AccSGDConfigError(`${at}.shape`, shape, `a shape of ${count} elements (size)`);
        }
        const name = segment.name ?? String(this.slots.length + k);
        if (typeof name !== 'string' || this.byName.has(name) || names.has(name)) {
          throw new AccSGDConfigError(`${at}.name`, shown(name), 'a unique name');
        }
        names.add(name);
        return {
          name,
          shape: shape ?? [count],
          offset,
          size: count,
          params,
          grads,
          first: offset,
          where,
          group: g,
          index: this.slots.length + k,
          hasBuffer: false,
        };
      });
      const table = slots.filter((s) => s.size > 0).sort((a, b) => a.offset - b.offset);
      for (let k = 1; k < table.length; k++) {
        const previous = table[k - 1]!;
        if (table[k]!.offset < previous.offset + previous.size) {
          throw new AccSGDConfigError(
            `${where}.segments`,
            `"${previous.name}" [${previous.offset}, ${previous.offset + previous.size}) and "${table[k]!.name}" [${table[k]!.offset}, ${table[k]!.offset + table[k]!.size})`,
            'disjoint element ranges',
            'overlap',
          );
        }
      }
      const end = table.length > 0 ? table[table.length - 1]!.offset + table[table.length - 1]!.size : 0;
      if (end >= 2 ** 32)
        throw new AccSGDConfigError(`${where}.segments`, end, 'fewer than 2^32 elements of flat storage');
      const needed = align(end * elementBytes, 4);
      for (const [field, buffer] of [
        ['params', params],
        ['grads', grads],
      ] as const) {
        if (buffer.size < needed) {
          throw new AccSGDConfigError(
            `${where}.${field}`,
            `a buffer of ${buffer.size} bytes`,
            `at least ${needed} bytes`,
            `is too small: the segments reach element ${end} (${storage}), so it needs at least ${needed} bytes; it has ${buffer.size}`,
          );
        }
      }
      this.addGroup(where, hyperparams, slots, table, end, alignElements, params, grads);
    }
    checkDisjoint(this.groups);
    this.lost = device.lost.then((info) => {
      this.lostInfo = info;
      return info;
    });
  }

  /**
   * A list-form group ({ tensors }): each tensor keeps its own buffers and gets a place in a virtual
   * element space of the group (the segment table's and the momentum buffer's coordinates), at an
   * offset aligned to the binding offset alignment, so every tensor is its own binding window.
   */
  private addTensorList(
    input: WebGPUTensorListGroup,
    g: number,
    base: Hyperparams,
    elementBytes: number,
    alignElements: number,
  ): void {
    const where = `groups[${g}]`;
    const { tensors, ...hyper } = input;
    for (const key of GROUP_EXTRA_KEYS) {
      if (key in hyper) {
        throw new AccSGDConfigError(
          `${where}.${key}`,
          shown((hyper as Record<string, unknown>)[key]),
          'absent: a group is either { tensors } or { params, grads, segments }',
        );
      }
    }
    const hyperparams = validateHyperparams(
      resolveHyperparams(shownValues(hyper) as Partial<Hyperparams>, base, LIST_GROUP_EXTRA_KEYS),
      F32,
    );
    if (!Array.isArray(tensors) || tensors.length === 0) {
      throw new AccSGDConfigError(
        `${where}.tensors`,
        tensors,
        'a non-empty array of { params, grads, elements }',
      );
    }
    const seen = new Map<GPUBuffer, string>();
    const names = new Set<string>();
    let cursor = 0;
    const slots = Array.from(tensors as readonly TensorInput[], (tensor, k): Slot => {
      const at = `${where}.tensors[${k}]`;
      if (typeof tensor !== 'object' || tensor === null)
        throw new AccSGDConfigError(at, tensor, '{ params, grads, elements }');
      const { params, grads, elements, shape: shapeInput } = tensor;
      if (!Number.isSafeInteger(elements) || elements < 0)
        throw new AccSGDConfigError(`${at}.elements`, shown(elements), 'an integer >= 0');
      const shape = checkedShape(`${at}.shape`, shapeInput);
      const shapeCount = shape?.reduce((a, d) => a * d, 1);
      if (shapeCount !== undefined && shapeCount !== elements) {
        throw new AccSGDConfigError(`${at}.shape`, shape, `a shape of ${elements} elements (elements)`);
      }
      const needed = align(elements * elementBytes, 4);
      for (const [field, buffer] of [
        ['params', params],
        ['grads', grads],
      ] as const) {
        checkBuffer(`${at}.${field}`, buffer, GPUBufferUsageFlag.STORAGE, undefined, this.bufferBrand);
        const other = seen.get(buffer);
        if (other !== undefined) {
          throw new AccSGDConfigError(
            `${at}.${field}`,
            `the buffer of ${other}`,
            'a buffer no other params or grads of the group uses',
          );
        }
        seen.set(buffer, `${at}.${field}`);
        if (buffer.size < needed) {
          throw new AccSGDConfigError(
            `${at}.${field}`,
            `a buffer of ${buffer.size} bytes`,
            `at least ${needed} bytes`,
            `is too small: the tensor has ${elements} elements (${this.storage}), so it needs at least ${needed} bytes; it has ${buffer.size}`,
          );
        }
      }
      const name = tensor.name ?? String(this.slots.length + k);
      if (typeof name !== 'string' || this.byName.has(name) || names.has(name)) {
        throw new AccSGDConfigError(`${at}.name`, shown(name), 'a unique name');
      }
      names.add(name);
      const offset = cursor;
      cursor = align(offset + elements, alignElements);
      return {
        name,
        shape: shape ?? [elements],
        offset,
        size: elements,
        params,
        grads,
        first: 0,
        where: at,
        group: g,
        index: this.slots.length + k,
        hasBuffer: false,
      };
    });
    const table = slots.filter((s) => s.size > 0);
    const end = table.length > 0 ? table[table.length - 1]!.offset + table[table.length - 1]!.size : 0;
    if (end >= 2 ** 32)
      throw new AccSGDConfigError(`${where}.tensors`, end, 'fewer than 2^32 elements in all (aligned)');
    this.addGroup(where, hyperparams, slots, table, end, alignElements, null, null);
  }

  /** Checks the momentum buffer's size and records a validated group and its slots. */
  private addGroup(
    where: string,
    hyperparams: Hyperparams,
    slots: Slot[],
    table: Slot[],
    end: number,
    alignElements: number,
    params: GPUBuffer | null,
    grads: GPUBuffer | null,
  ): void {
    const momentumBase = table.length > 0 ? Math.floor(table[0]!.offset / alignElements) * alignElements : 0;
    const momentumBytes = Math.max((end - momentumBase) * 4, 4);
    const maxBufferSize = this.device.limits.maxBufferSize;
    if (momentumBytes > maxBufferSize) {
      throw new AccSGDDeviceError(
        'create',
        'unsupported',
        `${where} needs a ${momentumBytes}-byte momentum buffer; the device's maxBufferSize is ${maxBufferSize} (split the group)`,
      );
    }
    for (const slot of slots) {
      this.slots.push(slot);
      this.byName.set(slot.name, slot);
    }
    this.groups.push({
      base: momentumBase,
      hyperparams,
      pendingLr: null,
      step: 0,
      slots,
      table,
      params,
      grads,
      momentum: undefined as unknown as GPUBuffer,
      segmentTable: undefined as unknown as GPUBuffer,
      uniforms: undefined as unknown as GPUBuffer,
      windows: [],
      lastTable: null,
    });
  }

  /** The program of an access type for this optimizer's storage, created on first use (cached per device). */
  private pipelineFor(access: AccessType): AccSGDPipeline {
    let entry = this.pipelines.get(access);
    if (!entry) {
      try {
        entry = accsgdUpdatePipeline(this.device, this.storage, access);
      } catch (error) {
        forgetAccsgdUpdatePipeline(this.device, this.storage);
        throw error;
      }
      this.pipelines.set(access, entry);
    }
    return entry;
  }

  /** How many binding windows each access type updates (the vec4 program where the layout allows it). */
  get windowsByAccess(): Record<AccessType, number> {
    const counts: Record<AccessType, number> = { scalar: 0, vec4: 0 };
    for (const group of this.groups) for (const window of group.windows) counts[window.pipeline.access]++;
    return counts;
  }

  /**
   * Creates the pipelines (cached per device), momentum buffers, segment tables, uniforms and bind
   * groups. Each window gets the vec4 program when its start, length and every tensor it touches
   * are multiples of 4 elements, and the scalar program otherwise.
   */
  private allocate(): void {
    const device = this.device;
    const elementBytes = this.storage === 'float16' ? 2 : 4;
    // Window starts must be aligned for every binding: params/grads (elementBytes) and momentum (4 bytes).
    const alignElements = Math.max(1, device.limits.minStorageBufferOffsetAlignment / elementBytes);
    // A window is at most one binding (maxStorageBufferBindingSize); the kernel's grid-stride loop
    // covers a window of any length with any number of workgroups.
    const windowElements = Math.floor(this.maxBindingBytes / 4 / alignElements) * alignElements;
    if (windowElements < alignElements) {
      throw new AccSGDConfigError(
        'maxBindingBytes',
        this.maxBindingBytes,
        `at least ${alignElements * 4} bytes`,
      );
    }
    const statusBytes = statusWords(this.groups.length) * 4;
    const status = device.createBuffer({
      label: `${this.label} status`,
      size: statusBytes,
      usage: GPUBufferUsageFlag.STORAGE | GPUBufferUsageFlag.COPY_SRC | GPUBufferUsageFlag.COPY_DST,
    });
    this.status = status;
    this.statusRead = device.createBuffer({
      label: `${this.label} status readback`,
      size: statusBytes,
      usage: GPUBufferUsageFlag.MAP_READ | GPUBufferUsageFlag.COPY_DST,
    });
    this.groups.forEach((group, g) => {
      const label = `${this.label} group ${g}`;
      const end =
        group.table.length > 0
          ? group.table[group.table.length - 1]!.offset + group.table[group.table.length - 1]!.size
          : 0;
      const begin = group.base;
      // Element k of the momentum buffer belongs to element begin + k of the flat storage.
      group.momentum = device.createBuffer({
        label: `${label} momentum`,
        size: Math.max((end - begin) * 4, 4),
        usage: GPUBufferUsageFlag.STORAGE | GPUBufferUsageFlag.COPY_SRC | GPUBufferUsageFlag.COPY_DST,
      });
      group.segmentTable = device.createBuffer({
        label: `${label} segments`,
        size: Math.max(group.table.length, 1) * SEGMENT_ENTRY_BYTES,
        usage: GPUBufferUsageFlag.STORAGE | GPUBufferUsageFlag.COPY_DST,
      });
      // The windows: the flat form's storage cut every windowElements from the momentum base; in the
      // list form each tensor (cut likewise when larger) is a window over its own buffers.
      const spans: {
        start: number;
        length: number;
        params: GPUBuffer;
        grads: GPUBuffer;
        storageStart: number;
      }[] = [];
      if (group.params && group.grads) {
        for (let s = begin; s < end; s += windowElements)
          spans.push({
            start: s,
            length: Math.min(windowElements, end - s),
            params: group.params,
            grads: group.grads,
            storageStart: s,
          });
      } else {
        for (const slot of group.table)
          for (let s = slot.offset; s < slot.offset + slot.size; s += windowElements)
            spans.push({
              start: s,
              length: Math.min(windowElements, slot.offset + slot.size - s),
              params: slot.params,
              grads: slot.grads,
              storageStart: slot.first + (s - slot.offset),
            });
      }
      const uniformStride = align(UNIFORM_BYTES, device.limits.minUniformBufferOffsetAlignment);
      group.uniforms = device.createBuffer({
        label: `${label} uniforms`,
        size: Math.max(spans.length, 1) * uniformStride,
        usage: GPUBufferUsageFlag.UNIFORM | GPUBufferUsageFlag.COPY_DST,
      });
      group.windows = spans.map(({ start, length, params, grads, storageStart }, w): Window => {
        let firstSlot = 0;
        while (
          firstSlot < group.table.length &&
          group.table[firstSlot]!.offset + group.table[firstSlot]!.size <= start
        )
          firstSlot++;
        let endSlot = firstSlot;
        let coveredTo = start;
        let covered = true;
        while (endSlot < group.table.length && group.table[endSlot]!.offset < start + length) {
          if (group.table[endSlot]!.offset > coveredTo) covered = false;
          coveredTo = group.table[endSlot]!.offset + group.table[endSlot]!.size;
          endSlot++;
        }
        if (coveredTo < start + length) covered = false;
        const access: AccessType = vec4Eligible(
          this.storage,
          start,
          length,
          group.table.slice(firstSlot, endSlot),
        )
          ? 'vec4'
          : 'scalar';
        const pipeline = this.pipelineFor(access);
        const storageBytes = align(length * elementBytes, 4);
        const bindGroup = device.createBindGroup({
          label: `${label} window ${w}`,
          layout: pipeline.layout,
          entries: [
            {
              binding: 0,
              resource: { buffer: group.uniforms, offset: w * uniformStride, size: UNIFORM_BYTES },
            },
            { binding: 1, resource: { buffer: group.segmentTable } },
            {
              binding: 2,
              resource: { buffer: params, offset: storageStart * elementBytes, size: storageBytes },
            },
            {
              binding: 3,
              resource: { buffer: grads, offset: storageStart * elementBytes, size: storageBytes },
            },
            {
              binding: 4,
              resource: { buffer: group.momentum, offset: (start - begin) * 4, size: length * 4 },
            },
            { binding: 5, resource: { buffer: status } },
          ],
        });
        return {
          start,
          length,
          params,
          grads,
          storageStart,
          firstSlot,
          endSlot,
          covered,
          pipeline,
          bindGroup,
          dispatch: dispatchSize(
            length,
            this.maxWorkgroups,
            this.workgroupsPerDispatch,
            elementsPerChunk(access),
          ),
        };
      });
    });
  }

  /**
   * The groups' resolved hyperparameters, member names and step counts (copies), as of the calls
   * that have run, except that a learning rate set with setLearningRate shows at once.
   */
  get paramGroups(): { hyperparams: Hyperparams; params: string[]; step: number }[] {
    return this.groups.map((g) => ({
      hyperparams: { ...g.hyperparams, ...(g.pendingLr ? { lr: g.pendingLr.lr } : {}) },
      params: g.slots.map((s) => s.name),
      step: g.step,
    }));
  }

  /** Tensor names in order (the order GradientPresence arrays are aligned to). */
  get paramNames(): string[] {
    return this.slots.map((s) => s.name);
  }

  /** Dispatches one step issues when every tensor has a gradient (one per binding window: per flat group, or per list-form tensor). */
  get dispatchesPerStep(): number {
    return this.groups.reduce((n, g) => n + g.windows.length, 0);
  }

  /** Whether a tensor (by index or name) has a momentum buffer yet. */
  hasBuffer(param: number | string): boolean {
    return this.slotAt(param).hasBuffer;
  }

  /**
   * Sets the learning rate of one group, or of every group when `group` is omitted. Calls take
   * effect in the order they were made, as in PyTorch: the change applies to every step() called
   * after it, not to steps called before it that have not run yet, and an importState() called
   * before it does not overwrite it (one called after it does, as load_state_dict does). The value
   * and group are checked at once (AccSGDConfigError, thrown); the change itself is queued behind
   * pending calls (`paramGroups` shows the new rate at once). Should an importState() queued before
   * it make the rate invalid for any of its groups (say, lr * kappa / smallConst overflowing with
   * an imported kappa), no group takes it.
   */
  setLearningRate(lr: number, group?: number): void {
    if (typeof lr !== 'number') throw new AccSGDConfigError('lr', describeValue(lr), 'a finite number >= 0');
    const targets = group === undefined ? this.groups : [this.groupAt(group)];
    for (const g of targets) validateHyperparams({ ...g.hyperparams, lr }, F32);
    const token = ++this.lrChanges;
    for (const g of targets) g.pendingLr = { lr, token };
    const settle = () => {
      for (const g of targets) if (g.pendingLr?.token === token) g.pendingLr = null;
    };
    this.enqueue('setLearningRate', async () => {
      // Validated again here, all groups before any assignment: an importState() queued before
      // this call may have changed kappa or smallConst since.
      const updated = targets.map((g) => validateHyperparams({ ...g.hyperparams, lr }, F32));
      targets.forEach((g, i) => {
        g.hyperparams = updated[i]!;
      });
    })
      // After destroy() or device loss there is nothing left to change.
      .catch(() => undefined)
      .finally(settle);
  }

  /**
   * One optimizer step over gradients already in each group's `grads` buffer. Everything is checked
   * before anything is dispatched; a tensor without a gradient keeps its parameter and buffer.
   * Coefficients are formed when the step runs, after every call made before it (a pending
   * importState or setLearningRate included). Gradients are checked for non-finite values on the
   * GPU under the nonFinite option: 'error' rejects with AccSGDGradientError, 'skip-step' resolves
   * { applied: false, reason }, and in both cases nothing changes.
   */
  step(present?: GradientPresence, stepOptions?: StepOptions): Promise<StepResult> {
    let active: boolean[];
    let options: StepOptions;
    try {
      active = this.resolvePresence(present);
      options = this.checkStepOptions(stepOptions);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.enqueue('step', async () => {
      const coefficients = this.groups.map((g) => uniformCoefficients(g.hyperparams));
      const check = this.nonFinite !== 'allow';
      const commit = await this.checked('step', () =>
        this.dispatchStep(active, coefficients, options, check),
      );
      if (check) {
        const bad = await this.readStatus('step');
        if (bad) return rejectNonFinite(this.nonFinite, bad.slot.name, bad.element, bad.value);
      }
      commit();
      return { applied: true };
    });
  }

  /**
   * The options of step(), read once: undefined or a plain object whose timestampWrites, if any,
   * names a real GPUQuerySet of type "timestamp" of this device and indices inside it.
   */
  private checkStepOptions(input: unknown): StepOptions {
    return typed(
      () => {
        if (input === undefined) return {};
        if (!isPlainObject(input))
          throw new AccSGDConfigError(
            'step options',
            describeValue(input),
            'undefined or { timestampWrites? }',
          );
        const options = { ...input };
        for (const key of Object.keys(options)) {
          if (!STEP_OPTION_KEYS.includes(key))
            throw new AccSGDConfigError(
              `step options.${key}`,
              shown(options[key]),
              'timestampWrites',
              'is not an option of step (expected timestampWrites)',
            );
        }
        if (options.timestampWrites === undefined) return {};
        const writes = options.timestampWrites;
        const expected = '{ querySet, beginningOfPassWriteIndex?, endOfPassWriteIndex? }';
        if (!isPlainObject(writes))
          throw new AccSGDConfigError('timestampWrites', describeValue(writes), expected);
        const copy = { ...writes };
        for (const key of Object.keys(copy)) {
          if (!TIMESTAMP_WRITES_KEYS.includes(key))
            throw new AccSGDConfigError(
              `timestampWrites.${key}`,
              shown(copy[key]),
              expected,
              `is not a field of ${expected}`,
            );
        }
        const querySet = copy.querySet;
        let facts: { type: unknown; count: unknown } | null = null;
        const brand = querySetBrandOf(this.device);
        if (typeof querySet === 'object' && querySet !== null) {
          try {
            if (brand && !Object.prototype.isPrototypeOf.call(brand.proto, querySet)) facts = null;
            else
              facts = brand
                ? { type: brand.type.call(querySet), count: brand.count.call(querySet) }
                : { type: (querySet as GPUQuerySet).type, count: (querySet as GPUQuerySet).count };
          } catch {
            facts = null;
          }
        }
        if (facts?.type !== 'timestamp' || typeof facts.count !== 'number')
          throw new AccSGDConfigError(
            'timestampWrites.querySet',
            describeValue(querySet),
            'a GPUQuerySet of type "timestamp" created by the device',
          );
        const count = facts.count;
        for (const key of ['beginningOfPassWriteIndex', 'endOfPassWriteIndex']) {
          const index = copy[key];
          if (
            index !== undefined &&
            !(Number.isSafeInteger(index) && (index as number) >= 0 && (index as number) < count)
          )
            throw new AccSGDConfigError(
              `timestampWrites.${key}`,
              shown(index),
              `an integer in [0, ${count - 1}] (the query set's count)`,
            );
        }
        return { timestampWrites: copy as unknown as GPUComputePassTimestampWrites };
      },
      (detail) =>
        new AccSGDConfigError(
          'step options',
          'an unreadable value',
          'undefined or { timestampWrites? }',
          `could not be read (${detail})`,
        ),
    );
  }

  /** The first non-finite gradient the step's scan found (first group, lowest element), or null. */
  private async readStatus(call: string): Promise<{ slot: Slot; element: number; value: string } | null> {
    const staging = this.statusRead!;
    await this.guard(call, staging.mapAsync(GPUMapModeFlag.READ));
    const words = new Uint32Array(staging.getMappedRange().slice(0));
    staging.unmap();
    if (words[0] === 0) return null;
    for (let g = 0; g < this.groups.length; g++) {
      const element = words[1 + g]!;
      if (element === STATUS_NONE) continue;
      const slot = this.groups[g]!.table.find((s) => s.offset <= element && element < s.offset + s.size);
      if (!slot) continue;
      let value = 'non-finite';
      if ((slot.grads.usage & GPUBufferUsageFlag.COPY_SRC) !== 0) {
        const half = this.storage === 'float16';
        const at = slot.first + (element - slot.offset);
        const bytes = await this.readBytes(call, slot.grads, at * (half ? 2 : 4), half ? 2 : 4);
        const copy = bytes.slice();
        value = String(
          half ? halfToFloat(new Uint16Array(copy.buffer, 0, 1))[0] : new Float32Array(copy.buffer, 0, 1)[0],
        );
      }
      return { slot, element: element - slot.offset, value };
    }
    throw new AccSGDDeviceError(
      call,
      'internal',
      'the non-finite scan reported an element of no active tensor',
    );
  }

  private dispatchStep(
    active: boolean[],
    coefficients: Float32Array[],
    options: StepOptions,
    check: boolean,
  ): () => void {
    const device = this.device;
    const encoder = device.createCommandEncoder({ label: `${this.label} step` });
    const pass = encoder.beginComputePass({
      label: `${this.label} step`,
      ...(options.timestampWrites ? { timestampWrites: options.timestampWrites } : {}),
    });
    let current: AccSGDPipeline | null = null;
    const touched: Group[] = [];
    const uniformStride = align(UNIFORM_BYTES, device.limits.minUniformBufferOffsetAlignment);
    const status = new Uint32Array(statusWords(this.groups.length)).fill(STATUS_NONE);
    status[0] = 0;
    // Written every step (also under 'allow', where no scan runs, so the update is never predicated off).
    device.queue.writeBuffer(this.status!, 0, status);
    const updates: (() => void)[] = [];
    this.groups.forEach((group, g) => {
      const flags = group.table.map((slot) => {
        if (!active[slot.index]) return 0;
        return SEGMENT_ACTIVE | (slot.hasBuffer ? 0 : SEGMENT_INITIALISE);
      });
      if (!group.slots.some((slot) => active[slot.index])) return;
      touched.push(group);
      if (group.table.length === 0) return;
      const table = new Uint32Array(group.table.length * SEGMENT_ENTRY_WORDS);
      group.table.forEach((slot, k) => {
        table[k * SEGMENT_ENTRY_WORDS] = slot.offset;
        table[k * SEGMENT_ENTRY_WORDS + 1] = slot.offset + slot.size;
        table[k * SEGMENT_ENTRY_WORDS + 2] = flags[k]!;
      });
      if (!group.lastTable || !sameWords(group.lastTable, table)) {
        device.queue.writeBuffer(group.segmentTable, 0, table);
        group.lastTable = table;
      }
      const uniforms = new ArrayBuffer(group.windows.length * uniformStride);
      group.windows.forEach((window, w) => {
        const floats = new Float32Array(uniforms, w * uniformStride, UNIFORM_WORDS);
        const words = new Uint32Array(uniforms, w * uniformStride, UNIFORM_WORDS);
        floats.set(coefficients[g]!);
        words[7] = window.start;
        words[8] = window.length;
        words[9] = group.table.length;
        let plain = window.covered;
        for (let k = window.firstSlot; k < window.endSlot && plain; k++) plain = flags[k] === SEGMENT_ACTIVE;
        words[10] = plain ? 0 : 1;
        words[11] = g;
      });
      device.queue.writeBuffer(group.uniforms, 0, uniforms);
      for (const window of group.windows) {
        const active_ = flags.slice(window.firstSlot, window.endSlot).some((f) => f !== 0);
        if (!active_) continue;
        // Scans of every group first (when checking), then the updates, which read their verdict.
        if (check) {
          pass.setPipeline(window.pipeline.scan);
          current = null;
          pass.setBindGroup(0, window.bindGroup);
          pass.dispatchWorkgroups(window.dispatch[0], window.dispatch[1]);
        }
        updates.push(() => {
          if (window.pipeline !== current) {
            current = window.pipeline;
            pass.setPipeline(current.pipeline);
          }
          pass.setBindGroup(0, window.bindGroup);
          pass.dispatchWorkgroups(window.dispatch[0], window.dispatch[1]);
        });
      }
    });
    for (const update of updates) update();
    pass.end();
    if (check) encoder.copyBufferToBuffer(this.status!, 0, this.statusRead!, 0, status.byteLength);
    device.queue.submit([encoder.finish()]);
    // Committed only once the device reported no error for the step.
    return () => {
      for (const group of touched) group.step++;
      this.slots.forEach((slot, i) => {
        if (active[i]) slot.hasBuffer = true;
      });
    };
  }

  /** The parameters of one tensor (by index or name), as float32. Needs COPY_SRC on the group's params buffer. */
  async readParam(param: number | string): Promise<Float32Array> {
    const slot = this.slotAt(param);
    checkBuffer(`${slot.where}.params`, slot.params, GPUBufferUsageFlag.COPY_SRC, 'to read parameters back');
    return this.enqueue('readParam', () =>
      this.readSlots('readParam', [slot], 'params').then(([values]) => values!),
    );
  }

  /** The momentum buffer of one tensor (by index or name), or null before its first step. */
  async readBuffer(param: number | string): Promise<Float32Array | null> {
    const slot = this.slotAt(param);
    return this.enqueue('readBuffer', async () =>
      slot.hasBuffer ? (await this.readSlots('readBuffer', [slot], 'momentum'))[0]! : null,
    );
  }

  /** Every tensor's parameters and momentum buffer (null: none yet), keyed by name. */
  async read(): Promise<{ params: Map<string, Float32Array>; buffers: Map<string, Float32Array | null> }> {
    for (const slot of this.slots)
      checkBuffer(
        `${slot.where}.params`,
        slot.params,
        GPUBufferUsageFlag.COPY_SRC,
        'to read parameters back',
      );
    return this.enqueue('read', async () => {
      const params = await this.readSlots('read', this.slots, 'params');
      const withBuffer = this.slots.filter((s) => s.hasBuffer);
      const buffers = await this.readSlots('read', withBuffer, 'momentum');
      const bufferOf = new Map(withBuffer.map((s, i) => [s, buffers[i]!]));
      return {
        params: new Map(this.slots.map((s, i) => [s.name, params[i]!])),
        buffers: new Map(this.slots.map((s) => [s.name, bufferOf.get(s) ?? null])),
      };
    });
  }

  /** The state file of @accsgd/core (safetensors; float32 buffers, groups in the metadata). */
  async exportState(): Promise<Uint8Array> {
    return this.enqueue('exportState', async () => {
      const withBuffer = this.slots.filter((s) => s.hasBuffer);
      const data = await this.readSlots('exportState', withBuffer, 'momentum');
      const buffers = new Map<string, StateBuffer>(
        withBuffer.map((s, i) => [s.name, { shape: [...s.shape], data: data[i]! }]),
      );
      // The groups as of this call: a learning rate set after it is not in the file.
      const groups = this.groups.map((g) => ({
        hyperparams: { ...g.hyperparams },
        params: g.slots.map((s) => s.name),
        step: g.step,
      }));
      return encodeState({ groups, buffers });
    });
  }

  /**
   * Replaces buffers, hyperparameters and step counts from a state file. The file is decoded and
   * checked against the optimizer before anything is written, so a bad file changes nothing.
   */
  async importState(bytes: Uint8Array): Promise<void> {
    // A Uint8Array (or Buffer) itself: a Proxy of one passes instanceof but not ArrayBuffer.isView.
    if (!ArrayBuffer.isView(bytes) || Object.prototype.toString.call(bytes) !== '[object Uint8Array]') {
      throw new AccSGDStateError(
        `importState expects the state file as a Uint8Array (the bytes exportState returned); got ${describeValue(bytes)}`,
      );
    }
    const state = decodeState(bytes);
    assertFloat32StateGroups(state.groups);
    assertStateFits(state, {
      groups: this.groups.map((g) => ({ params: g.slots.map((s) => s.name) })),
      shapes: new Map(this.slots.map((s) => [s.name, s.shape])),
    });
    return this.enqueue('importState', async () => {
      const commit = await this.checked('importState', () => this.writeState(state));
      commit();
    });
  }

  private writeState(state: OptimizerState): () => void {
    for (const [name, buffer] of state.buffers) {
      const slot = this.byName.get(name)!;
      const data = Float32Array.from(buffer.data);
      if (slot.size > 0)
        this.device.queue.writeBuffer(
          this.groups[slot.group]!.momentum,
          (slot.offset - this.groups[slot.group]!.base) * 4,
          data,
        );
    }
    return () => {
      state.groups.forEach((g, i) => {
        this.groups[i]!.hyperparams = { ...g.hyperparams };
        this.groups[i]!.step = g.step;
      });
      for (const slot of this.slots) slot.hasBuffer = state.buffers.has(slot.name);
      for (const group of this.groups) group.lastTable = null;
    };
  }

  /**
   * Frees the GPU objects the optimizer created (momentum buffers, segment tables, uniforms), not
   * the caller's params and grads. Later calls reject with AccSGDDeviceError ('destroyed').
   */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const group of this.groups) {
      group.momentum?.destroy();
      group.segmentTable?.destroy();
      group.uniforms?.destroy();
    }
    this.status?.destroy();
    this.statusRead?.destroy();
  }

  // ---- internals ----

  /**
   * The gradient flags as booleans per tensor: undefined (all), an array of booleans (every index
   * read, holes rejected) or a plain object keyed by name. Anything else (a Map, a Set, a typed
   * array, a class instance) would read as no flags at all, so it is rejected.
   */
  private resolvePresence(present: GradientPresence | undefined): boolean[] {
    return typed(
      () => this.readPresence(present),
      (detail) => new AccSGDGradientError(undefined, `could not read the gradient flags (${detail})`),
    );
  }

  private readPresence(present: GradientPresence | undefined): boolean[] {
    if (present === undefined) return this.slots.map(() => true);
    if (Array.isArray(present)) {
      if (present.length !== this.slots.length) {
        throw new AccSGDGradientError(
          undefined,
          `expected ${this.slots.length} gradient flags (one per tensor), got ${present.length}`,
        );
      }
      const flags = Array.from(present as readonly unknown[]);
      return this.slots.map((slot, i) => {
        const flag = flags[i];
        if (typeof flag !== 'boolean')
          throw new AccSGDGradientError(slot.name, `expected true or false, got ${describeValue(flag)}`);
        return flag;
      });
    }
    if (!isPlainObject(present)) {
      throw new AccSGDGradientError(
        undefined,
        `expected the gradient flags as an array of booleans (one per tensor) or a plain object { name: boolean }, got ${describeValue(present)}`,
      );
    }
    const active = this.slots.map(() => false);
    for (const [name, flag] of Object.entries(present as Record<string, boolean | null | undefined>)) {
      const slot = this.byName.get(name);
      if (!slot)
        throw new AccSGDGradientError(
          name,
          `no parameter has this name (parameters: ${this.paramNames.join(', ')})`,
        );
      if (flag != null && typeof flag !== 'boolean')
        throw new AccSGDGradientError(name, `expected true, false or null, got ${describeValue(flag)}`);
      active[slot.index] = flag === true;
    }
    return active;
  }

  /**
   * Copies the slots' elements of `which` storage to the host: one ranged copy (in chunks) per
   * buffer, so one per group for momentum and flat-form params, one per tensor for list-form params.
   */
  private async readSlots(
    call: string,
    slots: Slot[],
    which: 'params' | 'momentum',
  ): Promise<Float32Array[]> {
    const half = which === 'params' && this.storage === 'float16';
    const elementBytes = half ? 2 : 4;
    const out = new Map<Slot, Float32Array>();
    // Each slot's buffer and the element of that buffer where the slot starts.
    const runs = new Map<GPUBuffer, { slot: Slot; at: number }[]>();
    for (const s of slots) {
      if (s.size === 0) {
        out.set(s, new Float32Array(0));
        continue;
      }
      const group = this.groups[s.group]!;
      const buffer = which === 'params' ? s.params : group.momentum;
      const at = which === 'params' ? s.first : s.offset - group.base;
      const run = runs.get(buffer);
      if (run) run.push({ slot: s, at });
      else runs.set(buffer, [{ slot: s, at }]);
    }
    for (const [buffer, wanted] of runs) {
      const first = wanted.reduce((m, w) => Math.min(m, w.at), Number.POSITIVE_INFINITY);
      const end = wanted.reduce((m, w) => Math.max(m, w.at + w.slot.size), 0);
      const bytes = await this.readBytes(call, buffer, first * elementBytes, (end - first) * elementBytes);
      for (const { slot: s, at: position } of wanted) {
        const at = (position - first) * elementBytes;
        const slice = bytes.slice(at, at + s.size * elementBytes);
        out.set(
          s,
          half
            ? halfToFloat(new Uint16Array(slice.buffer, 0, s.size))
            : new Float32Array(slice.buffer, 0, s.size),
        );
      }
    }
    return slots.map((s) => out.get(s)!);
  }

  /** `byteLength` bytes of `source` from `byteOffset`, through MAP_READ staging buffers of at most 64 MiB. */
  private async readBytes(
    call: string,
    source: GPUBuffer,
    byteOffset: number,
    byteLength: number,
  ): Promise<Uint8Array> {
    const start = byteOffset - (byteOffset % 4);
    const skip = byteOffset - start;
    const total = align(skip + byteLength, 4);
    const gathered = new Uint8Array(total);
    for (let done = 0; done < total; done += READBACK_CHUNK_BYTES) {
      const length = Math.min(READBACK_CHUNK_BYTES, total - done);
      const staging = await this.checked(call, () =>
        this.device.createBuffer({
          label: `${this.label} readback`,
          size: length,
          usage: GPUBufferUsageFlag.MAP_READ | GPUBufferUsageFlag.COPY_DST,
        }),
      );
      try {
        await this.checked(call, () => {
          const encoder = this.device.createCommandEncoder({ label: `${this.label} readback` });
          encoder.copyBufferToBuffer(source, start + done, staging, 0, length);
          this.device.queue.submit([encoder.finish()]);
        });
        await this.guard(call, staging.mapAsync(GPUMapModeFlag.READ));
        gathered.set(new Uint8Array(staging.getMappedRange()), done);
        staging.unmap();
      } finally {
        staging.destroy();
      }
    }
    return gathered.subarray(skip, skip + byteLength);
  }

  /** Runs `fn` after every call made before it has settled, failing fast when destroyed or lost. */
  private enqueue<T>(call: string, fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(() => {
      if (this.destroyed) throw new AccSGDDeviceError(call, 'destroyed', 'the optimizer was destroyed');
      if (this.lostInfo) throw new AccSGDDeviceLostError(call, this.lostInfo.reason, this.lostInfo.message);
      return fn();
    });
    this.tail = run.catch(() => undefined);
    return run;
  }

  /**
   * Runs `body` inside validation, out-of-memory and internal error scopes; raises the first error
   * as AccSGDDeviceError naming `call`.
   */
  private async checked<T>(call: string, body: () => T): Promise<T> {
    const device = this.device;
    device.pushErrorScope('internal');
    device.pushErrorScope('out-of-memory');
    device.pushErrorScope('validation');
    let result: T | undefined;
    let thrown: unknown;
    try {
      result = body();
    } catch (error) {
      thrown = error;
    }
    const scopes = [device.popErrorScope(), device.popErrorScope(), device.popErrorScope()];
    const [validation, outOfMemory, internal] = await this.guard(call, Promise.all(scopes));
    const error = validation ?? outOfMemory ?? internal;
    if (error) {
      const reason = validation ? 'validation' : outOfMemory ? 'out-of-memory' : 'internal';
      throw new AccSGDDeviceError(call, reason, `WebGPU ${reason} error: ${error.message}`);
    }
    if (thrown !== undefined) {
      if (thrown instanceof AccSGDDeviceError || thrown instanceof AccSGDConfigError) throw thrown;
      throw new AccSGDDeviceError(
        call,
        'validation',
        `WebGPU call threw: ${(thrown as Error)?.message ?? String(thrown)}`,
      );
    }
    return result as T;
  }

  /** Rejects with AccSGDDeviceLostError when the device is lost before `promise` settles. */
  private guard<T>(call: string, promise: Promise<T>): Promise<T> {
    const lost = this.lost.then((info): never => {
      throw new AccSGDDeviceLostError(call, info.reason, info.message);
    });
    return Promise.race([promise, lost]).catch((error: unknown) => {
      if (this.lostInfo && !(error instanceof AccSGDDeviceLostError)) {
        throw new AccSGDDeviceLostError(call, this.lostInfo.reason, this.lostInfo.message);
      }
      if (error instanceof AccSGDDeviceError) throw error;
      throw new AccSGDDeviceError(call, 'validation', (error as Error)?.message ?? String(error));
    });
  }

  private groupAt(index: number): Group {
    if (typeof index !== 'number')
      throw new AccSGDConfigError(
        'group',
        describeValue(index),
        `an integer in [0, ${this.groups.length - 1}]`,
      );
    return groupAt(this.groups, index);
  }

  private slotAt(param: number | string): Slot {
    if (typeof param !== 'number' && typeof param !== 'string') {
      throw new AccSGDConfigError(
        'param',
        describeValue(param),
        `an index in [0, ${this.slots.length - 1}] or one of the names ${this.paramNames.join(', ')}`,
      );
    }
    return paramAt(this.slots, this.byName, param);
  }
}

/** The seven float32 coefficients of the uniform block, formed in float64 and rounded once. */
export function uniformCoefficients(h: Hyperparams): Float32Array {
  const c = fusedCoefficientArray(h);
  return Float32Array.of(...c, c[0] + c[1]);
}

/** GPUBufferUsage / GPUMapMode values, spelled out so the module loads before WebGPU globals exist (Node). */
const GPUBufferUsageFlag = {
  MAP_READ: 0x1,
  COPY_SRC: 0x4,
  COPY_DST: 0x8,
  UNIFORM: 0x40,
  STORAGE: 0x80,
} as const;
const GPUMapModeFlag = { READ: 0x1 } as const;

/**
 * The prototype and native `size` and `usage` getters of a device's GPUBuffers. A native getter
 * must only be called on an object whose prototype chain holds `proto`: Dawn's getters do not
 * check the kind of object they are called on (a GPUDevice would be read as a buffer and crash
 * the process), while on a Proxy or an Object.create of a buffer they throw.
 */
interface BufferBrand {
  proto: object;
  size: (this: unknown) => unknown;
  usage: (this: unknown) => unknown;
}

const brands = new WeakMap<object, BufferBrand | null>();

/** The getter `key` on `object`'s prototype chain, if it is an accessor there. */
function getterOf(object: object, key: string): ((this: unknown) => unknown) | undefined {
  for (let p: object | null = object; p !== null; p = Object.getPrototypeOf(p)) {
    const descriptor = Object.getOwnPropertyDescriptor(p, key);
    if (descriptor) return typeof descriptor.get === 'function' ? descriptor.get : undefined;
  }
  return undefined;
}

/**
 * The GPUBuffer accessors of the device's own buffers, taken from a 4-byte probe buffer (once per
 * device). A native getter called on anything but a real buffer throws, so a look-alike object or
 * a Proxy of a buffer (which passes Dawn's type check and then crashes the process inside Dawn) is
 * rejected before it gets near a WebGPU call. null when the implementation has no such accessors
 * (then buffers are checked by shape only).
 */
function brandOf(device: GPUDevice): BufferBrand | null {
  const cached = brands.get(device);
  if (cached !== undefined) return cached;
  let probe: unknown;
  try {
    probe = device.createBuffer({ label: 'accsgd probe', size: 4, usage: GPUBufferUsageFlag.COPY_DST });
  } catch (error) {
    throw new AccSGDConfigError(
      'device',
      'a device whose createBuffer throws',
      'a GPUDevice',
      `is not a usable GPUDevice: createBuffer threw (${messageOf(error)})`,
    );
  }
  if (typeof probe !== 'object' || probe === null)
    throw new AccSGDConfigError(
      'device',
      describeValue(probe),
      'a GPUDevice',
      'is not a GPUDevice: createBuffer returned no buffer',
    );
  const size = getterOf(probe, 'size');
  const usage = getterOf(probe, 'usage');
  try {
    (probe as GPUBuffer).destroy();
  } catch {
    // A look-alike device; its buffers are checked by shape below.
  }
  const proto = Object.getPrototypeOf(probe) as object | null;
  const brand = size && usage && proto ? { proto, size, usage } : null;
  brands.set(device, brand);
  return brand;
}

interface QuerySetBrand {
  proto: object;
  type: (this: unknown) => unknown;
  count: (this: unknown) => unknown;
}

const querySetBrands = new WeakMap<object, QuerySetBrand | null>();

/** The native `type` and `count` getters of the device's GPUQuerySets (from a one-query occlusion probe, once per device). */
function querySetBrandOf(device: GPUDevice): QuerySetBrand | null {
  const cached = querySetBrands.get(device);
  if (cached !== undefined) return cached;
  const probe = device.createQuerySet({ label: 'accsgd probe', type: 'occlusion', count: 1 });
  const type = getterOf(probe, 'type');
  const count = getterOf(probe, 'count');
  const proto = Object.getPrototypeOf(probe) as object | null;
  probe.destroy();
  const brand = type && count && proto ? { proto, type, count } : null;
  querySetBrands.set(device, brand);
  return brand;
}

/**
 * Throws AccSGDConfigError unless `buffer` is a GPUBuffer (a real one of the device's kind, when
 * `brand` is known) with `usage`; returns its size and usage as the buffer itself reports them.
 */
function checkBuffer(
  field: string,
  buffer: GPUBuffer,
  usage: number,
  purpose = 'for the update kernel',
  brand: BufferBrand | null = null,
): { size: number; usage: number } {
  let facts: { size: unknown; usage: unknown } | null = null;
  if (typeof buffer === 'object' && buffer !== null) {
    try {
      if (brand && !Object.prototype.isPrototypeOf.call(brand.proto, buffer)) facts = null;
      else
        facts = brand
          ? { size: brand.size.call(buffer), usage: brand.usage.call(buffer) }
          : { size: buffer.size, usage: buffer.usage };
    } catch {
      facts = null; // a Proxy or a look-alike: the native getters refuse it
    }
  }
  if (!facts || typeof facts.size !== 'number' || typeof facts.usage !== 'number') {
    throw new AccSGDConfigError(
      field,
      describeValue(buffer),
      'a GPUBuffer of this device',
      `must be a GPUBuffer created by the device (not a copy, look-alike or Proxy of one); got ${describeValue(buffer)}`,
    );
  }
  const actual = facts.usage;
  if ((actual & usage) !== usage) {
    const names = Object.entries(GPUBufferUsageFlag)
      .filter(([, bit]) => (usage & bit) !== 0)
      .map(([n]) => n);
    throw new AccSGDConfigError(
      field,
      `a buffer with usage 0x${actual.toString(16)}`,
      `a buffer with ${names.join(' | ')} usage ${purpose}`,
    );
  }
  return { size: facts.size, usage: actual };
}

/** Runs `body`; an error that is not an AccSGD error (a throwing getter, a revoked Proxy) becomes `wrap(message)`. */
function typed<T>(body: () => T, wrap: (detail: string) => AccSGDError): T {
  try {
    return body();
  } catch (error) {
    if (error instanceof AccSGDError) throw error;
    throw wrap(messageOf(error));
  }
}

function messageOf(error: unknown): string {
  try {
    return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  } catch {
    return 'an unprintable error';
  }
}

/**
 * A value as it may be handed to AccSGDConfigError (whose message prints arrays in full): objects
 * become their description, short arrays a copy with objects described.
 */
function shown(value: unknown): unknown {
  if (typeof value === 'function') return describeValue(value);
  if (typeof value !== 'object' || value === null) return value;
  try {
    if (Array.isArray(value) && value.length <= 16) {
      return Array.from(value as unknown[], (v) =>
        (typeof v === 'object' && v !== null) || typeof v === 'function' ? describeValue(v) : v,
      );
    }
  } catch {
    // unreadable: described below
  }
  return describeValue(value);
}

/** A copy of an object's own enumerable values, each `shown` (non-objects pass through unchanged). */
function shownValues(input: unknown): unknown {
  if (typeof input !== 'object' || input === null) return input;
  return Object.fromEntries(Object.entries(input).map(([key, value]) => [key, shown(value)]));
}

/** How a value reads in an error message, without touching it beyond its type and class name. */
function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value !== 'object' && typeof value !== 'function') {
    if (typeof value === 'string')
      return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)}`;
    if (typeof value === 'symbol') return 'a symbol';
    return `${typeof value} ${String(value)}`;
  }
  try {
    if (Array.isArray(value)) return `an array of ${value.length}`;
    const name: unknown = Object.getPrototypeOf(value)?.constructor?.name;
    return typeof name === 'string' && name !== '' ? `a ${name}` : `an ${typeof value}`;
  } catch {
    return 'an unreadable object (a revoked Proxy?)';
  }
}

/** A plain object: an object literal or Object.create(null), not a Map, array, typed array or class instance. */
function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** The options of create(), read once: undefined or a plain object of known keys. */
function createOptions(input: unknown): WebGPUAccSGDOptions {
  if (input === undefined) return {};
  const known = `{ ${OPTION_KEYS.map((k) => `${k}?`).join(', ')} }`;
  if (!isPlainObject(input))
    throw new AccSGDConfigError('options', describeValue(input), `undefined or an object ${known}`);
  // No option takes an object: any object value is replaced by its description, so that neither
  // the checks nor the messages read into it (a Proxy, a getter, a huge sparse array).
  const raw = { ...input };
  if (raw.label !== undefined && typeof raw.label !== 'string')
    throw new AccSGDConfigError('options.label', shown(raw.label), 'a string');
  const options = shownValues(raw) as Record<string, unknown>;
  for (const key of Object.keys(options)) {
    if (!(OPTION_KEYS as readonly string[]).includes(key)) {
      throw new AccSGDConfigError(
        `options.${key}`,
        options[key],
        `one of ${OPTION_KEYS.join(', ')}`,
        `is not an option of WebGPUAccSGD.create (expected one of ${OPTION_KEYS.join(', ')})`,
      );
    }
  }
  return options as WebGPUAccSGDOptions;
}

/**
 * Rejects two tensors whose params or grads ranges share an element of one buffer (in any group):
 * such an element would be updated twice in a step, or a gradient overwritten by another tensor's
 * update, or one gradient read for two tensors. O(n log n): the ranges of each buffer are sorted
 * and swept once.
 */
function checkDisjoint(groups: readonly Group[]): void {
  interface Range {
    start: number;
    end: number;
    slot: Slot;
    which: 'params' | 'grads';
  }
  const byBuffer = new Map<GPUBuffer, Range[]>();
  for (const group of groups) {
    for (const slot of group.slots) {
      if (slot.size === 0) continue;
      for (const which of ['params', 'grads'] as const) {
        const range = { start: slot.first, end: slot.first + slot.size, slot, which };
        const ranges = byBuffer.get(slot[which]);
        if (ranges) ranges.push(range);
        else byBuffer.set(slot[which], [range]);
      }
    }
  }
  const where = (r: Range) => {
    const group = groups[r.slot.group]!;
    return group.params ? `${r.slot.where}.segments[${group.slots.indexOf(r.slot)}]` : r.slot.where;
  };
  const what = (r: Range) => `("${r.slot.name}") ${r.which} elements [${r.start}, ${r.end})`;
  for (const ranges of byBuffer.values()) {
    ranges.sort((a, b) => a.start - b.start || a.end - b.end);
    let reach = ranges[0]!; // of the ranges so far, the one that ends last
    for (let k = 1; k < ranges.length; k++) {
      const range = ranges[k]!;
      if (range.start < reach.end) {
        // Named after the later of the two in group order.
        const [first, second] = reach.slot.index <= range.slot.index ? [reach, range] : [range, reach];
        const shared = `[${range.start}, ${Math.min(range.end, reach.end)})`;
        const consequence =
          first.which === 'params' && second.which === 'params'
            ? 'would be updated twice in one step'
            : first.which === 'grads' && second.which === 'grads'
              ? 'would be read as the gradient of two tensors'
              : "would hold one tensor's gradient and another's parameters, so an update would overwrite a gradient";
        throw new AccSGDConfigError(
          where(second),
          `${second.which} elements [${second.start}, ${second.end})`,
          'elements of a buffer that no other tensor uses as params or grads',
          `${what(second)} overlaps ${where(first)} ${what(first)} in one GPUBuffer: elements ${shared} ${consequence} (ranges of one buffer must be disjoint across all groups)`,
        );
      }
      if (range.end > reach.end) reach = range;
    }
  }
}

function limitOption(field: string, value: number | undefined, limit: number, fallback = limit): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value <= 0 || value > limit) {
    const range =
      limit === Number.MAX_SAFE_INTEGER
        ? 'an integer >= 1'
        : `an integer in [1, ${limit}] (the device limit)`;
    throw new AccSGDConfigError(field, value, range);
  }
  return value;
}

function align(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

function sameWords(a: Uint32Array, b: Uint32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** IEEE 754 binary16 bits to float32 values. */
export function halfToFloat(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i]!;
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >> 10) & 0x1f;
    const mantissa = h & 0x3ff;
    out[i] =
      exponent === 0
        ? sign * 2 ** -14 * (mantissa / 1024)
        : exponent === 31
          ? mantissa === 0
            ? sign * Number.POSITIVE_INFINITY
            : Number.NaN
          : sign * 2 ** (exponent - 15) * (1 + mantissa / 1024);
  }
  return out;
}

/**
 * A copy of an optional shape (read once, holes included); throws AccSGDConfigError unless it is an
 * array of integers >= 0 whose product is a safe integer.
 */
function checkedShape(at: string, shape: unknown): number[] | undefined {
  if (shape === undefined) return undefined;
  // Index by index, stopping at the first bad dimension (a hole included): a sparse array of
  // length 2^32 - 1 must not be walked in full.
  const copy: unknown[] = [];
  if (Array.isArray(shape)) {
    const length = shape.length;
    for (let i = 0; i < length; i++) {
      const d: unknown = shape[i];
      copy.push(d);
      if (!(Number.isSafeInteger(d) && (d as number) >= 0)) break;
    }
  }
  if (!Array.isArray(shape) || !copy.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
    throw new AccSGDConfigError(at, shown(shape), 'an array of integers >= 0');
  }
  const dims = copy as number[];
  if (!Number.isSafeInteger(dims.reduce((a, d) => a * d, 1)))
    throw new AccSGDConfigError(at, dims, 'a shape of at most 2^53 - 1 elements');
  return dims;
}
