import {
  AccSGDGradientError,
  AccSGDStateError,
  assertFloat32StateGroups,
  decodeState,
  encodeState,
  type FusedCoefficients,
  groupAt,
  type Hyperparams,
  type NonFinitePolicy,
  OrderedCalls,
  ParameterRegistry,
  type StepPlan as RegistryPlan,
  rejectNonFinite,
  type StepResult,
  type StepWork,
  validateHyperparams,
} from '@accsgd/core';
import {
  engine,
  keep,
  type NamedTensorMap,
  Optimizer,
  scalar,
  serialization,
  type Tensor,
  type Variable,
} from '@tensorflow/tfjs-core';
import { type AccSGDConfig, configFromDict, F32, hyperparamsConfig, parseConfig } from './config.js';
import { type CheckedStep, type DeviceCheckedStep, DeviceCheckedSteps } from './device-checked-steps.js';
import { checkGradients, type GradientScope, type GradientWork, readGradients } from './gradients.js';
import { type LearningRateSchedule, readInput, scheduledLr } from './input.js';
import {
  ACCSGD_UPDATE,
  type CoefficientArray,
  compositeUpdate,
  type DeviceGuard,
  gpuScanners,
  hasFusedKernel,
  memoryScanners,
  registerAccSGDKernels,
  scanLayout,
} from './kernels/index.js';
import { wasmUpdateAllInPlace } from './kernels/wasm.js';
import {
  canReadBackSync,
  checksOnDevice,
  findNonFinite,
  findNonFiniteAsync,
  type NonFiniteElement,
} from './non-finite-scan.js';
import { alias } from './tensors.js';
import { oneGroupRegistry, VariableTable } from './variable-table.js';
import { BUFFER_WEIGHT_SUFFIX, checkWeights, type NamedTensor } from './weights-layout.js';

export type { AccSGDConfig, AccSGDGroupConfig } from './config.js';
export type { LearningRateSchedule } from './input.js';
export { BUFFER_WEIGHT_SUFFIX, type NamedTensor } from './weights-layout.js';

/** A checked step: its gradients, and the learning rate of each scheduled group (null: none). */
interface StepPlan {
  work: GradientWork[];
  lrs: (number | null)[];
}

/** A step the device skipped under nonFinite: 'skip-step' (see verifySteps()). */
export interface SkippedStep {
  /** Its iteration number (1 for the optimizer's first step). */
  step: number;
  reason: string;
}

/**
 * AccSGD (Jain, Kakade, Kidambi, Netrapalli, Sidford 2017) as a tf.Optimizer.
 *
 * Per group, with largeLr = lr*kappa/smallConst, beta = smallConst^2*xi/kappa,
 * zeta = smallConst/(smallConst + beta), and for each variable p with gradient g:
 *
 *   g   <- g + weightDecay * p
 *   buf <- p                                  (first step of p only)
 *   buf <- beta * ((1/beta - 1) * buf - largeLr * g + p)
 *   p   <- zeta * (p - lr * g) + (1 - zeta) * buf
 *
 * The six multipliers of the fused form come from @accsgd/core in float64; each step is one
 * 'AccSGDUpdate' kernel per variable (fused on cpu, wasm, webgl, webgpu; tfjs ops elsewhere).
 * Buffers are non-trainable variables created on a variable's first step and tracked by variable
 * name. A step is atomic: every gradient is checked before any variable changes.
 *
 * The bookkeeping (groups, hyperparameters, step counts, state names, which have a buffer, state
 * import checks and export snapshots) is @accsgd/core's ParameterRegistry; calls take effect in
 * call order through its OrderedCalls. This class keeps the tfjs side: variables and their names,
 * buffer tensors, kernels, the getWeights() layout, getConfig() and schedules.
 */
export class AccSGDOptimizer extends Optimizer {
  /** The name tf.serialization and tfjs-layers know this class by. */
  static readonly className = 'AccSGD';

  readonly nonFinite: NonFinitePolicy;
  readonly fused: boolean;
  /** What the last applyGradients call did ('skip-step' reports skipped steps here). */
  lastStep: StepResult = { applied: true };

  private readonly defaults: Hyperparams;
  private readonly explicitGroups: boolean;
  private readonly scope: GradientScope;
  /** The registry (groups, hyperparameters, steps, state names) and its variables and buffers. */
  private readonly table: VariableTable;
  private readonly schedules: (LearningRateSchedule | null)[];
  /** Calls that take effect in their turn (applyGradientsAsync, setWeights, exportState, getWeights). */
  private readonly calls = new OrderedCalls();
  /** Synchronous steps checked on the device (webgpu) whose verdict may not have arrived yet. */
  private readonly deviceChecked = new DeviceCheckedSteps();
  /** Device-checked steps found bad and undone, not reported yet. */
  private unreported: CheckedStep[] = [];
  /**
   * Under 'error': the last device-checked step's scan (an alias), which the next step's scan
   * reads so that once a step fails, every later one is held back until the failure is reported.
   */
  private heldBackChain: Tensor | null = null;
  /** Registry index -> the iteration number of the last step that updated it (for undoing a skipped step). */
  private readonly lastStepped = new Map<number, number>();

  constructor(config: AccSGDConfig) {
    super();
    const parsed = parseConfig(config);
    this.nonFinite = parsed.nonFinite;
    this.fused = parsed.fused;
    this.defaults = parsed.defaults;
    this.explicitGroups = parsed.groups !== null;
    const groups = parsed.groups ?? [
      { hyperparams: parsed.defaults, schedule: parsed.defaultSchedule, variables: [], names: [] },
    ];
    this.schedules = groups.map((g) => g.schedule);
    const registry = new ParameterRegistry(
      groups.map((g) => ({
        hyperparams: g.hyperparams,
        params: g.names.map((name) => ({ name, shape: null })),
      })),
      { field: (g, k, part) => `groups[${g}].${part === 'names' ? 'names' : 'params'}[${k}]` },
    );
    this.table = new VariableTable(
      registry,
      groups.flatMap((g) => g.variables),
      !this.explicitGroups,
    );
    const inGroups = parsed.groupConfigs.map((g) => g.params);
    this.scope = {
      groups: this.explicitGroups ? inGroups : null,
      inGroups: (name) => this.table.bound(name),
      bufferOf: (name) => this.table.bufferOf(name),
    };
    registerAccSGDKernels();
  }

  private get registry(): ParameterRegistry {
    return this.table.registry;
  }

  /** The resolved hyperparameters, member names and step count of each group (copies). */
  get paramGroups(): { hyperparams: Hyperparams; params: string[]; step: number }[] {
    return this.registry.paramGroups;
  }

  /**
   * Sets the learning rate of one group, or of every group when `group` is omitted: a number, or
   * a schedule called with the iteration count before each step. Takes effect next step.
   */
  setLearningRate(lr: number | LearningRateSchedule, group?: number): void {
    const all = this.schedules.map((_, i) => i);
    const targets = group === undefined ? all : [groupAt(all, group)];
    // Checked first (no queued call changes kappa, xi or smallConst); then the calls made before
    // this one take effect, so that a step called earlier uses the learning rate it was called with.
    if (typeof lr !== 'function')
      for (const g of targets) validateHyperparams({ ...this.registry.hyperparams(g), lr }, F32);
    this.drain('setLearningRate');
    if (typeof lr !== 'function') this.registry.setLearningRate(lr, group);
    for (const g of targets) this.schedules[g] = typeof lr === 'function' ? lr : null;
  }

  /** The momentum buffer of a variable, or null before its first step. */
  momentumBuffer(variableName: string): Variable | null {
    return this.table.momentumBuffer(variableName);
  }

  /**
   * One step (tfjs's synchronous optimizer API, used by minimize() and model.fit()). With the
   * default nonFinite policy the gradients are checked for NaN/infinity first: a direct scan on
   * cpu and wasm, and tfjs ops with one synchronous read-back on webgl and other backends.
   *
   * On webgpu nothing is read back synchronously: one WGSL dispatch per gradient checks it, and
   * the update programs queued behind it write nothing when it finds a NaN or infinity, so a bad
   * step still changes nothing. Its verdict is read back asynchronously; a step found bad is
   * reported by the next call (under 'error', the next applyGradients throws the
   * AccSGDGradientError of the bad step, changing nothing) or by verifySteps(). Steps queued
   * between the bad one and that report were applied.
   */
  override applyGradients(variableGradients: NamedTensorMap | NamedTensor[]): void {
    this.drain('applyGradients');
    this.reportDeviceChecks();
    const work = readGradients(variableGradients, this.scope);
    if (this.nonFinite !== 'allow' && work.length > 0 && checksOnDevice()) {
      this.stepCheckedOnDevice(work);
      return;
    }
    const found = this.nonFinite === 'allow' ? null : findNonFinite(work.map((w) => w.grad));
    const bad = found && { ...found, value: work[found.tensor]!.grad.dataSync()[found.element]! };
    this.settle(this.plan(work), bad);
  }

  /**
   * The same step as applyGradients(), with the non-finite check read back asynchronously: the
   * way to step on GPU backends without stalling, and the only way to check gradients on
   * tfjs-backend-webgpu in Node.
   *
   * The step takes effect in call order: after the optimizer calls made before it, before those
   * made after it (a setLearningRate() made while it is pending applies from the next step on).
   * Its hyperparameters (and a schedule's learning rate) are those in force when it takes effect.
   * A call that was accepted completes: it keeps its gradients (aliases sharing their storage), so
   * disposing them while it is pending changes nothing, as with a PyTorch step, which has read
   * `.grad` by the time it returns.
   */
  async applyGradientsAsync(variableGradients: NamedTensorMap | NamedTensor[]): Promise<void> {
    const idle = this.calls.pending === 0;
    if (idle && (this.nonFinite === 'allow' || memoryScanners[engine().backendName])) {
      // Nothing pending and no read-back to wait for: the step takes effect now, as
      // applyGradients() would, with no need to keep the gradients alive past this call.
      this.applyGradients(variableGradients);
      return;
    }
    // Checked now, so that a bad call is rejected at once and takes no turn; checked again in its
    // turn, against the buffers then (an earlier setWeights may restore some).
    const checked = readGradients(variableGradients, idle ? this.scope : { ...this.scope, bufferOf: null });
    const kept: NamedTensor[] = checked.map(({ variable, grad }) => ({
      name: variable.name,
      tensor: keep(alias(grad)),
    }));
    const grads = kept.map((k) => k.tensor);
    const allow = this.nonFinite === 'allow';
    return this.calls.runPrepared<NonFiniteElement | null, void>({
      prepare: async () => {
        // The verdicts of earlier synchronous steps first: one found bad is reported by this call.
        await this.deviceChecked.settled();
        const found = allow ? null : await findNonFiniteAsync(grads);
        return found && { ...found, value: (await grads[found.tensor]!.data())[found.element]! };
      },
      canPrepareSync: () => allow || canReadBackSync(),
      prepareSync: () => {
        const found = allow ? null : findNonFinite(grads);
        return found && { ...found, value: grads[found.tensor]!.dataSync()[found.element]! };
      },
      commit: (bad) => {
        this.reportDeviceChecks();
        this.settle(this.plan(checkGradients(kept, this.scope)), bad);
      },
      release: () => {
        for (const g of grads) g.dispose();
      },
    });
  }

  /** A step whose check and update are queued on the device together (see applyGradients). */
  private stepCheckedOnDevice(work: GradientWork[]): void {
    const plan = this.plan(work);
    const scan = keep(
      gpuScanners[engine().backendName]!(
        engine().backend,
        work.map((w) => w.grad),
        this.heldBackChain,
      ),
    );
    let done: { groups: number[]; created: number[] };
    try {
      done = this.commit(plan, { tensor: scan, slot: scanLayout(work.length).verdict });
    } catch (error) {
      scan.dispose();
      throw error;
    }
    if (this.nonFinite === 'error') {
      this.heldBackChain?.dispose();
      this.heldBackChain = keep(alias(scan));
    }
    this.deviceChecked.watch(scan, {
      iteration: this.iterations - 1,
      variables: work.map((w) => w.variable.name),
      ...done,
      generation: this.deviceChecked.generation,
    });
  }

  /**
   * Takes the device's verdicts that have arrived and undoes the bookkeeping of each step it
   * skipped (its step counts, the buffers it created, the iteration), keeping them to report.
   */
  private reconcileDeviceChecks(): void {
    for (const checked of this.deviceChecked.takeChecked()) {
      if (checked.failure === null) continue;
      if (!(checked.failure instanceof Error) && checked.step.generation === this.deviceChecked.generation)
        this.undoStep(checked.step);
      // A held-back step is undone silently: the failure before it is what gets reported.
      if (!('heldBack' in checked.failure)) this.unreported.push(checked);
    }
  }

  private undoStep(step: DeviceCheckedStep): void {
    const number = step.iteration + 1;
    const dropped = step.created.filter((i) => this.lastStepped.get(i) === number);
    const groups = this.registry.paramGroups.map((g, i) => ({
      hyperparams: g.hyperparams,
      step: step.groups.includes(i) ? g.step - 1 : g.step,
    }));
    const shapes = Array.from({ length: this.registry.size }, (_, i) =>
      this.registry.hasBuffer(i) && !dropped.includes(i) ? this.registry.shape(i) : null,
    );
    this.registry.restore(groups, shapes);
    this.table.dropBuffers(dropped);
    for (const i of dropped) this.lastStepped.delete(i);
    this.iterations_ = Math.max(0, this.iterations - 1);
  }

  /**
   * Reports device-checked steps found bad: under 'error' throws the first one's
   * AccSGDGradientError (or the read-back's error) before the calling step changes anything;
   * under 'skip-step' records them for verifySteps().
   */
  private reportDeviceChecks(): void {
    this.reconcileDeviceChecks();
    // A read-back that failed is reported under every policy: nothing is known of that step.
    const unknown = this.unreported.find((c) => c.failure instanceof Error);
    if (unknown) {
      this.unreported = this.unreported.filter((c) => c !== unknown);
      this.releaseHeldBackChain();
      throw unknown.failure;
    }
    if (this.unreported.length === 0 || this.nonFinite === 'skip-step') return;
    const [first, ...rest] = this.unreported;
    this.unreported = [];
    // Reported: the steps after this one are no longer held back.
    this.releaseHeldBackChain();
    const later = rest.length === 0 ? '' : ` (and ${rest.length} later step(s) likewise)`;
    const { variable, element, value } = first!.failure as {
      variable: string;
      element: number;
      value: string;
    };
    throw new AccSGDGradientError(
      variable,
      `step ${first!.step.iteration + 1}: element ${element} is ${value}; the device found it after the step was queued and applied nothing from that step on (the steps queued after it were held back and are undone too, so the state is as it was before step ${first!.step.iteration + 1})${later}; the call that reports it changed nothing (non-finite gradients are rejected; see the nonFinite option)`,
    );
  }

  /**
   * Waits for the device's verdict on every step taken so far (webgpu's synchronous steps, see
   * applyGradients; elsewhere there is nothing to wait for). Under 'error' rejects with the
   * AccSGDGradientError of a step found bad; under 'skip-step' resolves to the steps the device
   * skipped since the last call.
   */
  async verifySteps(): Promise<SkippedStep[]> {
    return this.calls.runPrepared({
      ...this.awaitDeviceChecks,
      commit: () => {
        this.reportDeviceChecks();
        // Only non-finite elements are left here under 'skip-step' (reportDeviceChecks threw the rest).
        const skipped = this.unreported.map((c) => {
          const { variable, element, value } = c.failure as {
            variable: string;
            element: number;
            value: string;
          };
          return {
            step: c.step.iteration + 1,
            reason: rejectNonFinite('skip-step', variable, element, value).reason,
          };
        });
        this.unreported = [];
        return skipped;
      },
    });
  }

  /** The read-back part of a call that must see every device verdict first (exports, verifySteps). */
  private readonly awaitDeviceChecks = {
    prepare: async () => {
      await this.deviceChecked.settled();
      return null;
    },
    prepareSync: () => null,
    canPrepareSync: () => this.deviceChecked.allArrived(),
  };

  /** The state was replaced (import, setWeights): verdicts arriving later are reported but undo nothing. */
  private stateReplaced(): void {
    this.deviceChecked.invalidate();
    this.lastStepped.clear();
    this.releaseHeldBackChain();
  }

  private releaseHeldBackChain(): void {
    this.heldBackChain?.dispose();
    this.heldBackChain = null;
  }

  /** Everything that can fail, before anything changes: this step's scheduled learning rates, from the state now. */
  private plan(work: GradientWork[]): StepPlan {
    const lrs = this.schedules.map((schedule, g) =>
      schedule
        ? validateHyperparams(
            {
              ...this.registry.hyperparams(g),
              lr: scheduledLr(schedule, this.iterations, `learning rate of group ${g}`),
            },
            F32,
          ).lr
        : null,
    );
    return { work, lrs };
  }

  /** Commits a planned step, or reports its non-finite element under the nonFinite policy. */
  private settle(plan: StepPlan, bad: NonFiniteElement | null): void {
    if (bad) {
      const variable = plan.work[bad.tensor]!.variable.name;
      this.lastStep = rejectNonFinite(this.nonFinite, variable, bad.element, bad.value);
      return;
    }
    this.commit(plan);
  }

  /**
   * Applies a checked step (guarded by the device's verdict where `guard` is given); nothing after
   * bind() can fail part-way. Returns the groups it counted a step for and the buffers it created.
   */
  private commit(
    { work, lrs }: StepPlan,
    guard: DeviceGuard | null = null,
  ): { groups: number[]; created: number[] } {
    const indices = this.table.bind(work.map((w) => w.variable));
    // Checked already (checkGradients): a variable with a buffer has that buffer's shape.
    indices.forEach((index, k) => this.registry.setShape(index, work[k]!.variable.shape));
    lrs.forEach((lr, g) => {
      if (lr !== null) this.registry.setLearningRate(lr, g);
    });
    const aligned: (number | null)[] = new Array(this.registry.size).fill(null);
    indices.forEach((index, k) => {
      aligned[index] = k;
    });
    const plan = this.registry.planStep(aligned);
    const fused = this.fused && hasFusedKernel(engine().backendName);
    const direct = fused && !guard && engine().backendName === 'wasm';
    for (const { index, grad: k, group } of direct ? this.updateOnWasmHeap(plan, work) : plan.work) {
      const { variable, grad } = work[k]!;
      this.update(index, variable, grad, coefficientArray(plan.coefficients[group]!), fused, guard);
    }
    this.registry.commitStep(plan);
    this.incrementIterations();
    for (const { index } of plan.work) this.lastStepped.set(index, this.iterations);
    this.lastStep = { applied: true };
    return {
      groups: [...new Set(plan.work.map((w) => w.group))],
      created: plan.work.filter((w) => w.first).map((w) => w.index),
    };
  }

  /**
   * wasm: the parameters of a step that have a buffer, updated in place on the heap, one call per
   * group without the engine's per-kernel work (see wasmUpdateAllInPlace). Returns the work left
   * for update().
   */
  private updateOnWasmHeap(
    plan: RegistryPlan<number>,
    work: readonly GradientWork[],
  ): readonly StepWork<number>[] {
    const left: StepWork<number>[] = [];
    const byGroup = new Map<number, typeof left>();
    for (const w of plan.work) {
      if (this.table.bufferAt(w.index) === null) left.push(w);
      else {
        const members = byGroup.get(w.group) ?? [];
        members.push(w);
        byGroup.set(w.group, members);
      }
    }
    for (const [group, members] of byGroup) {
      const items = members.map((w) => ({
        param: work[w.grad]!.variable,
        grad: work[w.grad]!.grad,
        buffer: this.table.bufferAt(w.index)!,
      }));
      const notDone = wasmUpdateAllInPlace(
        engine().backend,
        items,
        coefficientArray(plan.coefficients[group]!),
      );
      for (const k of notDone) left.push(members[k]!);
    }
    return left;
  }

  private update(
    index: number,
    variable: Variable,
    grad: Tensor,
    coefficients: CoefficientArray,
    fused: boolean,
    guard: DeviceGuard | null,
  ): void {
    const own = this.table.bufferAt(index);
    const buffer = own ?? variable;
    let newParam: Tensor;
    let newBuffer: Tensor;
    if (fused) {
      [newParam, newBuffer] = engine().runKernel<Tensor[]>(
        ACCSGD_UPDATE,
        guard ? { param: variable, grad, buffer, guard: guard.tensor } : { param: variable, grad, buffer },
        guard
          ? { coefficients: [...coefficients], inPlace: true, guardSlot: guard.slot }
          : { coefficients: [...coefficients], inPlace: true },
      ) as [Tensor, Tensor];
    } else {
      [newParam, newBuffer] = compositeUpdate(variable, grad, buffer, coefficients, guard);
    }
    // A kernel that updated in place hands back the variable's own storage (and has told the
    // backend to drop what it cached for it); assign only what is new.
    if (newParam.dataId !== variable.dataId) variable.assign(newParam);
    newParam.dispose();
    if (own === null) this.table.createBuffer(index, newBuffer);
    else if (newBuffer.dataId !== own.dataId) own.assign(newBuffer);
    newBuffer.dispose();
  }

  /** Completes the calls made before a synchronous one (see OrderedCalls.drain), or throws changing nothing. */
  private drain(caller: string): void {
    if (this.calls.drain()) return;
    throw new AccSGDStateError(
      `${caller}() was called while ${this.calls.pending} earlier asynchronous call(s) (applyGradientsAsync, setWeights, getWeights, exportState) are pending, and the ${engine().backendName} backend cannot read back synchronously to let them take effect first; expected them to be awaited before ${caller}() (calls take effect in the order they are made)`,
    );
  }

  /** Frees every tensor the optimizer made, after the calls made before it have taken effect. */
  override dispose(): void {
    if (!this.calls.drain()) {
      // They cannot complete synchronously here: they are rejected, having changed nothing.
      this.calls.cancel(
        new AccSGDStateError(
          'the optimizer was disposed before this call took effect; expected the call to be awaited before dispose()',
        ),
      );
    }
    this.stateReplaced();
    this.unreported = [];
    if (this.explicitGroups) {
      this.table.disposeBuffers();
    } else {
      const next = oneGroupRegistry(this.registry.hyperparams(0), []);
      next.restore([{ hyperparams: this.registry.hyperparams(0), step: this.registry.step(0) }], []);
      this.table.disposeBuffers(next);
    }
    super.dispose();
  }

  /**
   * `iter` (int32 scalar) first, then `<name>/momentum_buffer` for each buffer in creation order,
   * as they are once the calls made before this one have taken effect.
   */
  override async getWeights(): Promise<NamedTensor[]> {
    return this.calls.runPrepared({
      ...this.awaitDeviceChecks,
      commit: () => {
        this.reconcileDeviceChecks();
        return [
          { name: 'iter', tensor: keep(scalar(this.iterations, 'int32')) },
          ...this.table.withBuffers().map((i) => ({
            name: this.registry.name(i) + BUFFER_WEIGHT_SUFFIX,
            tensor: this.table.bufferAt(i) as Tensor,
          })),
        ];
      },
    });
  }

  /**
   * Restores what getWeights() gave (tfjs-layers calls this when loading a model saved with
   * includeOptimizer). Replaces every buffer; checks everything before changing anything. The
   * groups' step counts, which tfjs's layout has no place for, are set to the iteration count
   * (exact when every step had a gradient for some member of every group, as in model.fit).
   * Takes effect in call order; the weights are kept (aliased) when it is called, so the caller may
   * dispose them at once.
   */
  override async setWeights(weightValues: NamedTensor[]): Promise<void> {
    const { iter, buffers } = readInput(
      () => checkWeights(weightValues),
      (message) =>
        new AccSGDStateError(
          `the weights could not be read (${message}); expected the plain layout of getWeights()`,
        ),
    );
    const iterTensor = keep(alias(iter));
    const restored = new Map(buffers.map(([stateName, t]) => [stateName, keep(alias(t))]));
    return this.calls.runPrepared<ArrayLike<unknown>, void>({
      prepare: () => iterTensor.data(),
      canPrepareSync: canReadBackSync,
      prepareSync: () => iterTensor.dataSync(),
      commit: (iterValues) => this.restoreWeights(iterTensor, iterValues, restored),
      release: () => {
        iterTensor.dispose();
        for (const t of restored.values()) t.dispose();
      },
    });
  }

  private restoreWeights(
    iterTensor: Tensor,
    iterValues: ArrayLike<unknown>,
    restored: Map<string, Tensor>,
  ): void {
    const iterations = iterValues[0];
    if (iterTensor.size !== 1 || !Number.isSafeInteger(iterations) || (iterations as number) < 0) {
      throw new AccSGDStateError(
        `optimizer weight "iter" must be a scalar integer >= 0; got ${iterTensor.size === 1 ? String(iterations) : `shape [${iterTensor.shape}]`}`,
      );
    }
    this.reconcileDeviceChecks();
    this.table.restoreWeights(restored, iterations as number);
    this.stateReplaced();
    this.iterations_ = iterations as number;
  }

  /**
   * The state file of @accsgd/core (safetensors, buffers named `<name>.momentum_buffer`): a
   * consistent snapshot of the state once the calls made before this one have taken effect (the
   * buffers are aliased in one go, then read back), whatever is called while it reads.
   */
  async exportState(): Promise<Uint8Array> {
    const kept = new Map<string, Tensor>();
    const state = await this.calls.runPrepared({
      ...this.awaitDeviceChecks,
      commit: () => {
        this.reconcileDeviceChecks();
        return this.registry.snapshot((i) => {
          kept.set(this.registry.name(i), keep(alias(this.table.bufferAt(i)!)));
          return new Float32Array(0); // read back below
        });
      },
    });
    try {
      for (const [name, t] of kept)
        state.buffers.get(name)!.data = Float32Array.from((await t.data()) as Float32Array);
      return encodeState(state);
    } finally {
      for (const t of kept.values()) t.dispose();
    }
  }

  /**
   * Replaces buffers, hyperparameters and step counts from a state file, or changes nothing and
   * throws AccSGDStateError. The iteration count becomes the largest group step. A learning-rate
   * schedule, if set, still decides the learning rate of the next steps.
   */
  importState(bytes: Uint8Array): void {
    const state = decodeState(bytes);
    // Checked against the state once the calls made before this one have taken effect.
    this.drain('importState');
    assertFloat32StateGroups(state.groups);
    if (state.groups.length !== this.registry.groupCount) {
      throw new AccSGDStateError(
        `state has ${state.groups.length} parameter group(s); the optimizer has ${this.registry.groupCount}`,
      );
    }
    this.reconcileDeviceChecks();
    this.table.importState(state);
    this.stateReplaced();
    this.iterations_ = Math.max(0, ...state.groups.map((g) => g.step));
  }

  override getConfig(): serialization.ConfigDict {
    const config: serialization.ConfigDict = {
      ...hyperparamsConfig(this.explicitGroups ? this.defaults : this.registry.hyperparams(0)),
      nonFinite: this.nonFinite,
      fused: this.fused,
    };
    if (this.explicitGroups) {
      // tfjs-layers camel-cases every string in a saved config except values keyed 'name', so
      // variable names (dense_Dense1/kernel) travel as { name }.
      config.groups = this.registry.paramGroups.map((g, i) => ({
        ...hyperparamsConfig(g.hyperparams),
        params: this.registry.members(i).map((index) => ({ name: this.table.variableAt(index)! })),
        names: g.params.map((name) => ({ name })),
      }));
    }
    return config;
  }

  static override fromConfig<T extends serialization.Serializable>(
    cls: serialization.SerializableConstructor<T>,
    config: serialization.ConfigDict,
  ): T {
    return new cls(configFromDict(config) as never);
  }
}

serialization.registerClass(AccSGDOptimizer);

/** `accsgd({ lr: 0.1, kappa: 1000, xi: 10 })`, in the style of `tf.train.momentum`. */
export function accsgd(config: AccSGDConfig): AccSGDOptimizer {
  return new AccSGDOptimizer(config);
}

function coefficientArray(c: FusedCoefficients): CoefficientArray {
  return [c.bufFromBuf, c.bufFromParam, c.bufFromGrad, c.paramFromParam, c.paramFromGrad, c.paramFromBuf];
}
