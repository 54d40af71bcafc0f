import { adviseHyperparams } from '@accsgd/core';
import type { Hyper } from './trainers/types.js';

/** The authors' advice on AccSGD's settings (from @accsgd/core), as messages. */
export function settingsAdvice(hyper: Hyper, batchSize: number): string[] {
  try {
    return adviseHyperparams(
      { lr: hyper.lr, kappa: hyper.kappa, xi: hyper.xi, smallConst: hyper.smallConst, weightDecay: 0 },
      { batchSize },
    ).map((a) => a.message);
  } catch (error) {
    return [(error as Error).message];
  }
}

/**
 * What a loss curve suggests: divergence or oscillation (lower lr or xi), slow progress (raise lr or
 * xi, lower kappa), or nothing. Needs at least 10 losses.
 */
export function curveAdvice(losses: readonly number[]): string | null {
  if (losses.length < 10) return null;
  if (losses.some((l) => !Number.isFinite(l)))
    return 'The loss became NaN or infinite: divergence. Lower lr or xi.';
  const head = mean(losses.slice(0, 5));
  const tail = mean(losses.slice(-5));
  if (tail > head * 1.2)
    return `The loss rose from ${head.toFixed(3)} to ${tail.toFixed(3)}: divergence. Lower lr or xi.`;
  const recent = losses.slice(-20);
  let ups = 0;
  for (let i = 1; i < recent.length; i++) if (recent[i]! > recent[i - 1]! * 1.05) ups++;
  if (ups > recent.length * 0.45 && tail > head * 0.7)
    return 'The loss jumps up and down without settling: oscillation. Lower lr or xi.';
  if (tail > head * 0.9) return 'The loss barely falls: slow progress. Raise lr or xi, or lower kappa.';
  return null;
}

function mean(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}
