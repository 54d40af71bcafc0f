/**
 * From a momentum setting to an AccSGD setting, measured: sweep heavy ball's lr (momentum 0.9) and
 * AccSGD's (lr, kappa, xi) on the validation split, then relate the best of each. The yardstick is
 * the steady-state step on a constant gradient: heavy ball moves lr / (1 - momentum) per step,
 * AccSGD lr * smallConst * (1 + xi) / (1 + smallConst) (checked against @accsgd/core in the test).
 */
import { ACCSGD_SETTINGS, MOMENTUM, type OptimizerSpec } from './optimizers.js';
import type { RunResult } from './train.js';

export interface MappingPreset {
  /** Training images (from the training part of the validation split) and epochs per run. */
  trainCount: number;
  epochs: number;
  momentumLrs: readonly number[];
  accsgd: { lrs: readonly number[]; kappas: readonly number[]; xis: readonly number[] };
}

/** Heavy ball's steady-state step per unit gradient. */
export const momentumStep = (lr: number, momentum = MOMENTUM) => lr / (1 - momentum);

/** AccSGD's steady-state step per unit gradient (independent of kappa). */
export const accsgdStep = (lr: number, xi: number, smallConst: number = ACCSGD_SETTINGS.smallConst) =>
  (lr * smallConst * (1 + xi)) / (1 + smallConst);

export function mappingSpecs(p: MappingPreset): OptimizerSpec[] {
  const specs: OptimizerSpec[] = p.momentumLrs.map((lr) => ({ name: 'Momentum', lr }));
  for (const kappa of p.accsgd.kappas)
    for (const xi of p.accsgd.xis) {
      // beta = smallConst^2 * xi / kappa must be <= 1 (SPEC §1).
      if ((ACCSGD_SETTINGS.smallConst ** 2 * xi) / kappa > 1) continue;
      for (const lr of p.accsgd.lrs) specs.push({ name: 'AccSGD', lr, kappa, xi });
    }
  return specs;
}

export interface MappingRow {
  kappa: number;
  xi: number;
  /** The best lr for this (kappa, xi), its final validation accuracy, and the ratios to momentum's. */
  bestLr: number;
  validationAccuracy: number;
  /** bestLr / (best momentum lr). */
  lrRatio: number;
  /** AccSGD's steady-state step at bestLr / momentum's at its best lr. */
  stepRatio: number;
}

export interface MappingAnalysis {
  momentum: { lr: number; validationAccuracy: number };
  rows: MappingRow[];
  /** The best AccSGD setting overall. */
  best: MappingRow;
  /** Rows within `tolerance` of the best AccSGD accuracy. */
  good: MappingRow[];
  tolerance: number;
}

const finalAccuracy = (r: RunResult) =>
  r.diverged ? Number.NEGATIVE_INFINITY : r.epochs[r.epochs.length - 1]!.validationAccuracy;

/** Relates the best AccSGD settings to the best momentum lr, by final validation accuracy. */
export function analyzeMapping(runs: readonly RunResult[], tolerance = 0.002): MappingAnalysis {
  const mom = runs.filter((r) => r.spec.name === 'Momentum');
  if (mom.length === 0) throw new RangeError('no momentum runs to map from');
  const bestMom = mom.reduce((a, b) => (finalAccuracy(b) > finalAccuracy(a) ? b : a));
  const momentum = { lr: bestMom.spec.lr, validationAccuracy: finalAccuracy(bestMom) };
  const groups = new Map<string, RunResult[]>();
  for (const r of runs.filter((x) => x.spec.name === 'AccSGD')) {
    const k = `${r.spec.kappa}/${r.spec.xi}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  const rows: MappingRow[] = [];
  for (const g of groups.values()) {
    const b = g.reduce((a, c) => (finalAccuracy(c) > finalAccuracy(a) ? c : a));
    const kappa = b.spec.kappa ?? ACCSGD_SETTINGS.kappa;
    const xi = b.spec.xi ?? ACCSGD_SETTINGS.xi;
    rows.push({
      kappa,
      xi,
      bestLr: b.spec.lr,
      validationAccuracy: finalAccuracy(b),
      lrRatio: b.spec.lr / momentum.lr,
      stepRatio: accsgdStep(b.spec.lr, xi) / momentumStep(momentum.lr),
    });
  }
  if (rows.length === 0) throw new RangeError('no AccSGD runs to map to');
  const best = rows.reduce((a, b) => (b.validationAccuracy > a.validationAccuracy ? b : a));
  const good = rows.filter((r) => r.validationAccuracy >= best.validationAccuracy - tolerance);
  return { momentum, rows, best, good, tolerance };
}

/** How a mapping rule measured elsewhere (the MLP's) fares on a sweep: `checkRule`. */
export interface RuleCheck {
  /** The rule's AccSGD lr at (kappa, xi), from the sweep's best heavy-ball lr. */
  suggestedLr: number;
  kappa: number;
  xi: number;
  /** The sweep's AccSGD lr nearest the suggestion on a log scale (a tie goes to the smaller). */
  nearestLr: number;
  /** Final validation accuracy of that run (-Infinity when it diverged). */
  accuracy: number;
  /** The sweep's best AccSGD accuracy, over every (kappa, xi). */
  bestAccuracy: number;
  /** Whether the rule's run came within `tolerance` of the best AccSGD run. */
  holds: boolean;
  tolerance: number;
}

/**
 * Applies a step-ratio rule (AccSGD's steady-state step = `stepRatio` x heavy ball's at its best lr)
 * to a sweep and scores the run it lands on. The rule holds when that run is within `tolerance` of
 * the sweep's best AccSGD run, so a rule is judged by what a user following it would get.
 */
export function checkRule(
  runs: readonly RunResult[],
  analysis: MappingAnalysis,
  stepRatio: number,
  kappa: number = ACCSGD_SETTINGS.kappa,
  xi: number = ACCSGD_SETTINGS.xi,
  tolerance = 0.005,
): RuleCheck {
  const suggestedLr = (stepRatio * momentumStep(analysis.momentum.lr)) / accsgdStep(1, xi);
  const at = runs.filter(
    (r) =>
      r.spec.name === 'AccSGD' &&
      (r.spec.kappa ?? ACCSGD_SETTINGS.kappa) === kappa &&
      (r.spec.xi ?? ACCSGD_SETTINGS.xi) === xi,
  );
  if (at.length === 0) throw new RangeError(`no AccSGD run at kappa ${kappa}, xi ${xi}`);
  const distance = (r: RunResult) => Math.abs(Math.log(r.spec.lr / suggestedLr));
  const nearest = at.reduce((a, b) =>
    distance(b) < distance(a) - 1e-12 ||
    (Math.abs(distance(b) - distance(a)) <= 1e-12 && b.spec.lr < a.spec.lr)
      ? b
      : a,
  );
  const accuracy = finalAccuracy(nearest);
  const bestAccuracy = analysis.best.validationAccuracy;
  return {
    suggestedLr,
    kappa,
    xi,
    nearestLr: nearest.spec.lr,
    accuracy,
    bestAccuracy,
    holds: accuracy >= bestAccuracy - tolerance,
    tolerance,
  };
}

/** Below this final validation accuracy a run counts as failed: 10 classes, so chance is about 0.1. */
export const FAILED_BELOW = 0.2;

/**
 * The smallest lr of the sweep from which every run of `name` failed (diverged, or ended below
 * FAILED_BELOW), whatever its kappa and xi; undefined when the largest lr had a run that trained.
 */
export function failedFrom(runs: readonly RunResult[], name: 'AccSGD' | 'Momentum'): number | undefined {
  const own = runs.filter((r) => r.spec.name === name);
  const failed = (r: RunResult) => r.diverged !== undefined || finalAccuracy(r) < FAILED_BELOW;
  let from: number | undefined;
  for (const lr of [...new Set(own.map((r) => r.spec.lr))].sort((a, b) => b - a)) {
    if (!own.filter((r) => r.spec.lr === lr).every(failed)) break;
    from = lr;
  }
  return from;
}
