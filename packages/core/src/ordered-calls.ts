import { AccSGDStateError } from './errors.js';

/**
 * Calls that take effect in the order they are made, as PyTorch's would, for adapters whose steps
 * are asynchronous (ONNX Runtime, WebGPU, tfjs read-backs). The contract:
 *
 * - `run(call)` queues `call`; it starts once every call queued before it has settled, and its
 *   promise settles with its result. Nothing runs concurrently, so a step's plan, kernels and
 *   commit happen between the calls made before and after it.
 * - A call that throws or rejects rejects its own promise only; later calls still run. A rejected
 *   call must have changed nothing (plan, check, then commit).
 * - `now(caller, call)` runs a synchronous call at once when nothing is pending, and otherwise
 *   throws AccSGDStateError without running it: a synchronous call cannot take effect after
 *   earlier pending calls without waiting for them, and must not overtake them.
 * - A queued call reads the optimizer's state when it starts, not when it is queued, and commits
 *   increments (a step count + 1), never values captured earlier: so a pending step never reverts
 *   a later call, and an export queued between two steps is a consistent snapshot between them.
 * - `runPrepared(call)` queues a call in two parts, a read-back that changes nothing and a
 *   synchronous commit (PreparedCall). `drain()` completes every pending call synchronously, in
 *   order, where each is such a call and can read back synchronously (else it returns false and
 *   runs nothing): an adapter whose synchronous API must take effect after earlier asynchronous
 *   calls (tfjs's applyGradients) drains, then runs. `cancel(error)` rejects pending ones.
 * - `pending` counts queued and running calls; it drops before a call's promise settles, so code
 *   after `await calls.run(...)` sees the call finished.
 */
/**
 * A call in two parts that `OrderedCalls.drain()` may complete synchronously: a read-back that
 * changes nothing (`prepare`, or `prepareSync` synchronously), then `commit`, synchronous.
 */
export interface PreparedCall<P, T> {
  /** Reads what the call needs (a GPU read-back, say), changing nothing. */
  prepare(): Promise<P>;
  /** The same, synchronously. Without it, drain() cannot complete the call. */
  prepareSync?(): P;
  /** Whether prepareSync() can run here and now (a platform without synchronous read-back: false). Default true. */
  canPrepareSync?(): boolean;
  /** Takes effect; a typed error thrown here must have changed nothing. */
  commit(prepared: P): T;
  /** Frees what the call kept (its copies of the caller's values); called once, when it settles, whichever way. */
  release?(): void;
}

/** A pending call; `sync` only for a PreparedCall. */
interface Slot {
  sync?: { can(): boolean; run(): void; cancel(error: unknown): void };
}

export class OrderedCalls {
  private tail: Promise<unknown> = Promise.resolve();
  /** Queued and running calls, in call order. */
  private readonly slots: Slot[] = [];

  /** Queued and running calls. */
  get pending(): number {
    return this.slots.length;
  }

  /** Queues `call` after every earlier one; settles with its result. */
  run<T>(call: () => T | Promise<T>): Promise<T> {
    const slot: Slot = {};
    this.slots.push(slot);
    const result = this.tail.then(async () => {
      try {
        return await call();
      } finally {
        this.remove(slot);
      }
    });
    this.tail = result.catch(() => undefined);
    return result;
  }

  /**
   * Queues a call in two parts (PreparedCall): in its turn, `prepare()` then `commit()`. Until it
   * settles, `drain()` may complete it synchronously instead (prepareSync, commit), even while its
   * `prepare()` is under way (whose result is then ignored), and `cancel()` may reject it.
   */
  runPrepared<P, T>(call: PreparedCall<P, T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const slot: Slot = {};
      let done = false;
      const settle = (outcome: () => T) => {
        if (done) return;
        done = true;
        this.remove(slot);
        try {
          resolve(outcome());
        } catch (error) {
          reject(error);
        } finally {
          call.release?.();
        }
      };
      const fail = (error: unknown) =>
        settle(() => {
          throw error;
        });
      slot.sync = {
        can: () => call.prepareSync !== undefined && (call.canPrepareSync?.() ?? true),
        run: () => {
          let prepared: P;
          try {
            prepared = call.prepareSync!();
          } catch (error) {
            fail(error);
            return;
          }
          settle(() => call.commit(prepared));
        },
        cancel: fail,
      };
      this.slots.push(slot);
      this.tail = this.tail.then(async () => {
        if (done) return;
        let prepared: P;
        try {
          prepared = await call.prepare();
        } catch (error) {
          fail(error);
          return;
        }
        settle(() => call.commit(prepared));
      });
    });
  }

  /** Runs `call` now if nothing is pending; otherwise AccSGDStateError naming `caller`, and nothing runs. */
  now<T>(caller: string, call: () => T): T {
    if (this.slots.length > 0) {
      throw new AccSGDStateError(
        `${caller}() was called while ${this.slots.length} earlier asynchronous call(s) are pending; expected them to be awaited first (calls take effect in the order they are made)`,
      );
    }
    return call();
  }

  /**
   * Completes every pending call now, in call order, so that a synchronous call made next takes
   * effect after them: true once done (also with nothing pending). Where one of them cannot be
   * completed synchronously (a run() call, or a PreparedCall without a synchronous read-back
   * here), returns false and runs nothing. A drained call that fails rejects only its own promise.
   */
  drain(): boolean {
    if (this.slots.some((s) => !s.sync?.can())) return false;
    for (const slot of [...this.slots]) slot.sync!.run();
    return true;
  }

  /**
   * Rejects every pending PreparedCall with `error` without committing it (a read-back under way
   * is ignored), releasing what it kept; run() calls are left to complete.
   */
  cancel(error: unknown): void {
    for (const slot of [...this.slots]) slot.sync?.cancel(error);
  }

  /** Resolves once every call queued so far has settled. */
  idle(): Promise<void> {
    return this.tail.then(() => undefined);
  }

  private remove(slot: Slot): void {
    const at = this.slots.indexOf(slot);
    if (at >= 0) this.slots.splice(at, 1);
  }
}
