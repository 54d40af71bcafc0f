import type { Hyperparams } from '@accsgd/core';
import type { Driver, Instance, Reading } from './drivers.js';
import { type Case, gradRecord } from './problem.js';

/** What a run leaves to compare: every export, the state at each export and at the end. */
export interface Trace {
  /** The bytes of each exportState, in call order. */
  exports: Uint8Array[];
  /** Readings (after each export, in the awaited run, and at the end), with the step ops before them. */
  checkpoints: { at: string; steps: number; reading: Reading; hyper?: Hyperparams[][] }[];
  /** Step ops before each export. */
  exportSteps: number[];
  /** The reference only: per export, each group's hyperparameters at every step so far. */
  exportHyper?: Hyperparams[][][];
}

/**
 * Runs the case on a fresh instance, awaiting every call before the next (the sequential run).
 * With `recordHyper` (the reference) it records each group's hyperparameters at every step, for
 * the accuracy floor of SPEC §3.
 */
export async function runAwaited(driver: Driver, c: Case, recordHyper = false): Promise<Trace> {
  const inst = await driver.open(c.problem);
  const trace: Trace = {
    exports: [],
    checkpoints: [],
    exportSteps: [],
    ...(recordHyper ? { exportHyper: [] } : {}),
  };
  const history: Hyperparams[][] = c.problem.groups.map(() => []);
  const snapshot = () => history.map((h) => [...h]);
  let steps = 0;
  try {
    for (const [i, op] of c.ops.entries()) {
      if (op.kind === 'step') {
        if (recordHyper) inst.hyperparams!().forEach((h, g) => history[g]!.push(h));
        await inst.step(gradRecord(op));
        steps++;
      } else if (op.kind === 'lr') {
        await inst.setLearningRate(op.lr, op.group);
      } else if (op.kind === 'export') {
        trace.exports.push(await inst.exportState());
        trace.exportSteps.push(steps);
        trace.exportHyper?.push(snapshot());
        trace.checkpoints.push({
          at: `op ${i} (exportState)`,
          steps,
          reading: await inst.read(),
          ...(recordHyper ? { hyper: snapshot() } : {}),
        });
      } else {
        if (trace.exports.length === 0) continue;
        const bytes = trace.exports[op.which % trace.exports.length]!;
        if (op.fresh) await inst.renew();
        await inst.importState(bytes);
      }
    }
    trace.checkpoints.push({
      at: 'end',
      steps,
      reading: await inst.read(),
      ...(recordHyper ? { hyper: snapshot() } : {}),
    });
  } finally {
    await inst.close();
  }
  return trace;
}

/**
 * Runs the case issuing each call without awaiting the earlier ones, except where the adapter's
 * API needs them settled first (its barriers), an import needs the bytes of a pending export (only
 * that export is awaited), or an import goes into a fresh optimizer (everything settles first).
 * Returns the exports and the final reading. `stats.overlapped` counts the calls issued while an
 * earlier call's promise had not settled, `stats.barriers` the waits the adapter's API imposed.
 */
export async function runUnawaited(
  driver: Driver,
  c: Case,
  stats: { overlapped: number; barriers: number },
): Promise<Trace> {
  const inst: Instance = await driver.open(c.problem);
  const trace: Trace = { exports: [], checkpoints: [], exportSteps: [] };
  const exports: Promise<Uint8Array>[] = [];
  const pending: Promise<unknown>[] = [];
  let inFlight = 0;
  let lastStep: Promise<unknown> | null = null;
  let steps = 0;
  const track = <T>(p: Promise<T> | T | undefined): Promise<T> | undefined => {
    if (!(p instanceof Promise)) return undefined;
    inFlight++;
    // Rejections surface at the final await; keep them from being reported as unhandled meanwhile.
    p.finally(() => inFlight--).catch(() => undefined);
    pending.push(p);
    return p;
  };
  const settle = async (what: 'steps' | 'all' | undefined) => {
    if (what === 'steps') {
      if (lastStep === null) return;
      stats.barriers++;
      await lastStep;
      lastStep = null;
    } else if (what === 'all') {
      if (inFlight > 0) stats.barriers++;
      await Promise.all(pending);
      lastStep = null;
    }
  };
  // Calls are issued synchronously one after the other; only barriers (and an import waiting for
  // the bytes of its export) await anything.
  const issued = () => {
    if (inFlight > 0) stats.overlapped++;
  };
  try {
    for (const op of c.ops) {
      if (op.kind === 'step') {
        if (inst.barriers.step) await settle(inst.barriers.step);
        issued();
        const p = track(inst.step(gradRecord(op)));
        if (p) lastStep = p;
        steps++;
      } else if (op.kind === 'lr') {
        if (inst.barriers.lr) await settle(inst.barriers.lr);
        issued();
        track(inst.setLearningRate(op.lr, op.group));
      } else if (op.kind === 'export') {
        if (inst.barriers.export) await settle(inst.barriers.export);
        issued();
        const result = inst.exportState();
        const p = result instanceof Promise ? result : Promise.resolve(result);
        track(p);
        exports.push(p);
        trace.exportSteps.push(steps);
      } else {
        if (exports.length === 0) continue;
        const bytes = await exports[op.which % exports.length]!;
        if (op.fresh) {
          await settle('all');
          await inst.renew();
        } else if (inst.barriers.import) await settle(inst.barriers.import);
        issued();
        track(inst.importState(bytes));
      }
    }
    await Promise.all(pending);
    trace.exports = await Promise.all(exports);
    trace.checkpoints.push({ at: 'end', steps, reading: await inst.read() });
  } finally {
    await Promise.allSettled(pending);
    await inst.close();
  }
  return trace;
}
