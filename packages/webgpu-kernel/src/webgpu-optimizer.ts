import {
  AccSGDConfigError,
  fusedCoefficients,
  groupAt,
  type Hyperparams,
  type HyperparamsInput,
  type NonFinitePolicy,
  ParameterRegistry,
  rejectNonFinite,
  resolveHyperparams,
  type StepResult,
  validateHyperparams,
} from '@accsgd/core';
import {
  allocateWindows,
  coefficientWords,
  encodeStep,
  type Group,
  roundedCoefficients,
  type Slot,
} from './binding-windows.js';
import { DeviceQueue } from './device-queue.js';
import { checkGradientRanges, readGroups } from './group-input.js';
import {
  type AccessType,
  forgetAccsgdUpdatePipeline,
  SEGMENT_ACTIVE,
  SEGMENT_INITIALISE,
  type StorageType,
} from './kernels/accsgd-update.js';
import {
  allSlots,
  type DeviceState,
  exportStateFile,
  planStateImport,
  readSlots,
  readStatus,
  writeImport,
} from './state-io.js';
import type { GradientPresence, StepOptions, WebGPUAccSGDOptions, WebGPUGroupInput } from './types.js';
import {
  brandOf,
  checkBuffer,
  checkDevice,
  checkStepOptions,
  describeValue,
  F32,
  GPUBufferUsageFlag,
  readPresence,
  readSettings,
  type Settings,
  shownValues,
  typed,
} from './validation.js';

export { halfToFloat } from './state-io.js';
export type {
  GradientPresence,
  SegmentInput,
  StepOptions,
  TensorInput,
  WebGPUAccSGDOptions,
  WebGPUGroupInput,
  WebGPUParamGroup,
  WebGPUTensorListGroup,
} from './types.js';

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
 * float64 on the host by `fusedCoefficients` and passed as a uniform block, rounded to float32
 * once; the kernel reads p, g and buf once and writes p and buf once. Momentum buffers are owned by
 * the optimizer (float32, allocated at creation) and count as absent until a tensor's first step
 * with a gradient, which initialises the buffer from p inside the same pass.
 *
 * The bookkeeping (groups, hyperparameters, step counts, names, shapes, which tensors have a
 * buffer, gradient-flag keys, state matching and snapshots) is a ParameterRegistry's; this class
 * holds the device objects (binding-windows.ts), the ordered device queue (device-queue.ts) and
 * state transfers (state-io.ts).
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
  readonly nonFinite: NonFinitePolicy;
  private readonly settings: Settings;
  private readonly registry: ParameterRegistry;
  private readonly groups: Group[];
  /** Every tensor, in registry index order. */
  private readonly slots: Slot[];
  private readonly queue: DeviceQueue;
  private readonly state: DeviceState;
  private destroyed = false;
  /** Status words of the non-finite scan (see statusWords) and their MAP_READ copy. */
  private readonly statusBuffers: { status?: GPUBuffer; statusRead?: GPUBuffer } = {};
  /** Per group: the latest setLearningRate not yet run (shown by paramGroups at once), or null. */
  private readonly pendingLr: ({ lr: number; token: number } | null)[];
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
    const { settings, groups: layout, statusBuffers, queue } = optimizer;
    try {
      await queue.run('create', () =>
        queue.checked('create', () => allocateWindows({ ...settings, device }, layout, statusBuffers)),
      );
    } catch (error) {
      // Nothing is returned, so nobody else could free what allocateWindows created before it failed.
      optimizer.destroy();
      // A pipeline whose compilation failed asynchronously (reported through the error scope)
      // must not stay cached for the next create() on this device.
      for (const storage of ['float32', 'float16'] as const) forgetAccsgdUpdatePipeline(device, storage);
      throw error;
    }
    // From here on the device's loss is reported by every call.
    return optimizer;
  }

  private constructor(
    readonly device: GPUDevice,
    groupInputs: unknown,
    defaults: HyperparamsInput,
    optionsInput: unknown,
  ) {
    checkDevice(device);
    this.settings = readSettings(device, optionsInput);
    this.storage = this.settings.storage;
    this.nonFinite = this.settings.nonFinite;
    const brand = brandOf(device);
    const base = resolveHyperparams(shownValues(defaults) as HyperparamsInput);
    const { groups, declared } = readGroups({ device, storage: this.storage, brand }, groupInputs, base);
    this.groups = groups;
    this.slots = allSlots(groups);
    // Names, shapes and hyperparameters are checked again by the registry, which also rejects two
    // tensors whose params ranges share memory (in any group); gradient ranges are checked here.
    this.registry = new ParameterRegistry(declared, {
      field: (g, k, part) => {
        const at = groups[g]!.slots[k]!.at;
        return part === 'names' ? `${at}.name` : part === 'shapes' ? `${at}.shape` : at;
      },
    });
    checkGradientRanges(groups, (index: number) => this.registry.name(index));
    this.pendingLr = groups.map(() => null);
    this.queue = new DeviceQueue(device, this.settings.label);
    this.state = { queue: this.queue, groups, storage: this.storage };
  }

  /** How many binding windows each access type updates (the vec4 program where the layout allows it). */
  get windowsByAccess(): Record<AccessType, number> {
    const counts: Record<AccessType, number> = { scalar: 0, vec4: 0 };
    for (const group of this.groups) for (const window of group.windows) counts[window.pipeline.access]++;
    return counts;
  }

  /**
   * The groups' resolved hyperparameters, member names and step counts (copies), as of the calls
   * that have run, except that a learning rate set with setLearningRate shows at once.
   */
  get paramGroups(): { hyperparams: Hyperparams; params: string[]; step: number }[] {
    return this.registry.paramGroups.map((g, i) => {
      const pending = this.pendingLr[i];
      return pending ? { ...g, hyperparams: { ...g.hyperparams, lr: pending.lr } } : g;
    });
  }

  /** Tensor names in order (the order GradientPresence arrays are aligned to). */
  get paramNames(): string[] {
    return this.registry.paramNames;
  }

  /** Dispatches one step issues when every tensor has a gradient (one per binding window: per flat group, or per list-form tensor). */
  get dispatchesPerStep(): number {
    return this.groups.reduce((n, g) => n + g.windows.length, 0);
  }

  /** Whether a tensor (by index or name) has a momentum buffer yet. */
  hasBuffer(param: number | string): boolean {
    return this.registry.hasBuffer(this.slotAt(param).index);
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
    const targets = group === undefined ? this.groups.map((_, g) => g) : [this.groupIndex(group)];
    for (const g of targets) validateHyperparams({ ...this.registry.hyperparams(g), lr }, F32);
    const token = ++this.lrChanges;
    for (const g of targets) this.pendingLr[g] = { lr, token };
    // Validated again when it runs (by the registry, all groups before any assignment): an
    // importState() queued before this call may have changed kappa or smallConst since.
    this.queue
      .run('setLearningRate', async () => this.registry.setLearningRate(lr, group))
      // After destroy() or device loss there is nothing left to change.
      .catch(() => undefined)
      .finally(() => {
        for (const g of targets) if (this.pendingLr[g]?.token === token) this.pendingLr[g] = null;
      });
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
      active = readPresence(this.registry, present);
      options = checkStepOptions(this.device, stepOptions);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.queue.run('step', async (): Promise<StepResult> => {
      const plan = this.registry.planStep(active.map((a) => (a ? true : null)));
      const flags = new Uint32Array(this.slots.length);
      for (const w of plan.work) flags[w.index] = SEGMENT_ACTIVE | (w.first ? SEGMENT_INITIALISE : 0);
      const check = this.nonFinite !== 'allow';
      const { status, statusRead } = this.statusBuffers;
      await this.queue.checked('step', () =>
        encodeStep({
          device: this.device,
          label: this.settings.label,
          groups: this.groups,
          status: status!,
          statusRead: statusRead!,
          flags,
          coefficients: plan.coefficients.map(coefficientWords),
          options,
          check,
        }),
      );
      if (check) {
        const bad = await readStatus(this.state, 'step', statusRead!);
        if (bad)
          return rejectNonFinite(this.nonFinite, this.registry.name(bad.slot.index), bad.element, bad.value);
      }
      // Committed only once the device reported no error for the step.
      this.registry.commitStep(plan);
      return { applied: true };
    });
  }

  /** The parameters of one tensor (by index or name), as float32. Needs COPY_SRC on the group's params buffer. */
  async readParam(param: number | string): Promise<Float32Array> {
    const slot = this.slotAt(param);
    checkBuffer(`${slot.where}.params`, slot.params, GPUBufferUsageFlag.COPY_SRC, 'to read parameters back');
    return this.queue.run(
      'readParam',
      async () => (await readSlots(this.state, 'readParam', [slot], 'params'))[0]!,
    );
  }

  /** The momentum buffer of one tensor (by index or name), or null before its first step. */
  async readBuffer(param: number | string): Promise<Float32Array | null> {
    const slot = this.slotAt(param);
    return this.queue.run('readBuffer', async () =>
      this.registry.hasBuffer(slot.index)
        ? (await readSlots(this.state, 'readBuffer', [slot], 'momentum'))[0]!
        : null,
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
    return this.queue.run('read', async () => {
      const params = await readSlots(this.state, 'read', this.slots, 'params');
      const withBuffer = this.slots.filter((s) => this.registry.hasBuffer(s.index));
      const buffers = await readSlots(this.state, 'read', withBuffer, 'momentum');
      const bufferOf = new Map(withBuffer.map((s, i) => [s.index, buffers[i]!]));
      const names = this.registry.paramNames;
      return {
        params: new Map(this.slots.map((s, i) => [names[s.index]!, params[i]!])),
        buffers: new Map(this.slots.map((s) => [names[s.index]!, bufferOf.get(s.index) ?? null])),
      };
    });
  }

  /**
   * The state file of @accsgd/core (safetensors; float32 buffers, groups in the metadata), as of
   * this call: a learning rate set after it is not in the file.
   */
  async exportState(): Promise<Uint8Array> {
    return this.queue.run('exportState', () => exportStateFile(this.state, this.registry));
  }

  /**
   * Replaces buffers, hyperparameters and step counts from a state file. The file is decoded and
   * checked against the optimizer before anything is written, so a bad file changes nothing.
   */
  async importState(bytes: Uint8Array): Promise<void> {
    const plan = planStateImport(this.registry, bytes);
    return this.queue.run('importState', async () => {
      await this.queue.checked('importState', () => writeImport(this.state, plan));
      this.registry.commitImport(plan);
      for (const group of this.groups) group.lastTable = null;
    });
  }

  /**
   * Frees the GPU objects the optimizer created (momentum buffers, segment tables, uniforms), not
   * the caller's params and grads. Later calls reject with AccSGDDeviceError ('destroyed').
   */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.queue.destroyed = true;
    for (const group of this.groups) {
      group.momentum?.destroy();
      group.segmentTable?.destroy();
      group.uniforms?.destroy();
    }
    this.statusBuffers.status?.destroy();
    this.statusBuffers.statusRead?.destroy();
  }

  private groupIndex(index: unknown): number {
    if (typeof index !== 'number')
      throw new AccSGDConfigError(
        'group',
        describeValue(index),
        `an integer in [0, ${this.groups.length - 1}]`,
      );
    groupAt(this.groups, index);
    return index;
  }

  private slotAt(param: unknown): Slot {
    if (typeof param !== 'number' && typeof param !== 'string') {
      throw new AccSGDConfigError(
        'param',
        describeValue(param),
        `an index in [0, ${this.slots.length - 1}] or one of the names ${this.paramNames.join(', ')}`,
      );
    }
    return this.slots[this.registry.indexOf(param)]!;
  }
}

/** The seven float32 coefficients of the uniform block, formed in float64 and rounded once. */
export function uniformCoefficients(h: Hyperparams): Float32Array {
  return roundedCoefficients(fusedCoefficients(h));
}
