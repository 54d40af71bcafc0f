import { AccSGDStateError } from '@accsgd/core';
import type { Tensor } from '@tensorflow/tfjs-core';
import { readDeviceScan } from './kernels/index.js';

/**
 * Steps whose non-finite check runs on the device (tfjs webgpu, synchronous applyGradients): the
 * scan and the update programs are queued together, the update guarded by the scan's verdict, so
 * a step whose gradients hold a NaN or infinity writes nothing; and the verdict is read back
 * asynchronously, never with a synchronous read-back (which stalls the GPU pipeline, and which
 * tfjs-backend-webgpu cannot do at all in some browsers: on SwiftShader in headless Chromium it
 * returns zeros and loses the WebGPU instance for the whole page).
 *
 * The host learns of a skipped step only when its read-back arrives. Until then its bookkeeping
 * counts the step (step counts, the buffers it created); the optimizer undoes that for a failed
 * step before its next call takes effect (see `AccSGDOptimizer`), and reports it then.
 */
export interface DeviceCheckedStep {
  /** The optimizer's iteration count before the step (the step is iteration + 1). */
  iteration: number;
  /** The variable of each scanned gradient, in scan order. */
  variables: string[];
  /** The groups the step counted a step for. */
  groups: number[];
  /** Registry indices whose buffer the step created. */
  created: number[];
  /** The bookkeeping generation the step was taken in: a state replaced since then is not undone. */
  generation: number;
}

/** A step whose verdict has been read. */
export interface CheckedStep {
  step: DeviceCheckedStep;
  /**
   * Null: every gradient was finite and the step applied. Else why the device skipped it: a
   * non-finite element, `heldBack` (an earlier step failed under 'error'), or the read-back's error.
   */
  failure: { variable: string; element: number; value: string } | { heldBack: true } | Error | null;
}

interface Pending {
  step: DeviceCheckedStep;
  read: Promise<void>;
  outcome: CheckedStep | null;
}

export class DeviceCheckedSteps {
  private queue: Pending[] = [];
  /** Bumped when the optimizer's state is replaced (import, setWeights, dispose). */
  generation = 0;

  /** Steps queued whose verdict has not been taken yet. */
  get pending(): number {
    return this.queue.length;
  }

  /** Watches a step's scan (kept by the caller; disposed here once read). */
  watch(scan: Tensor, step: DeviceCheckedStep): void {
    const pending: Pending = { step, outcome: null, read: Promise.resolve() };
    pending.read = (scan.data() as Promise<Int32Array>)
      .then(
        (values) => {
          let failure: CheckedStep['failure'];
          try {
            const found = readDeviceScan(values);
            failure =
              found && 'heldBack' in found
                ? found
                : found && {
                    variable: step.variables[found.tensor]!,
                    element: found.element,
                    value: found.value,
                  };
          } catch (error) {
            failure = error as Error;
          }
          pending.outcome = { step, failure };
        },
        (error: unknown) => {
          pending.outcome = {
            step,
            failure: new AccSGDStateError(
              `the device's non-finite check of step ${step.iteration + 1} could not be read back (${String(error)}); whether that step was applied is unknown`,
            ),
          };
        },
      )
      .finally(() => scan.dispose());
    this.queue.push(pending);
  }

  /** The steps whose verdict has arrived, oldest first, up to the first that is still on its way; they leave the queue. */
  takeChecked(): CheckedStep[] {
    const taken: CheckedStep[] = [];
    while (this.queue.length > 0 && this.queue[0]!.outcome !== null) taken.push(this.queue.shift()!.outcome!);
    return taken;
  }

  /** Whether every watched step's verdict has arrived. */
  allArrived(): boolean {
    return this.queue.every((p) => p.outcome !== null);
  }

  /** Resolves once every watched step's verdict has arrived. */
  async settled(): Promise<void> {
    await Promise.all(this.queue.map((p) => p.read));
  }

  /** The optimizer's state was replaced: steps taken before are reported, but not undone. */
  invalidate(): void {
    this.generation++;
  }
}
