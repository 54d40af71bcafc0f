/** Pure helpers of the throughput report: medians, ratios, targets and their formatting. */

/** The median; for an even count, the mean of the two middle values. Throws on an empty list. */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error('median of no values');
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** a / b, or NaN when either is missing, not finite, or b is not positive. */
export function ratio(a: number | null | undefined, b: number | null | undefined): number {
  if (a == null || b == null || !Number.isFinite(a) || !Number.isFinite(b) || b <= 0) return Number.NaN;
  return a / b;
}

/** Milliseconds: 2 decimals below 10 ms, 1 below 1000, else none. */
export function formatMs(ms: number | null | undefined): string {
  if (ms == null || !Number.isFinite(ms)) return 'n/a';
  return ms.toFixed(ms < 10 ? 2 : ms < 1000 ? 1 : 0);
}

/** Steps per second: 2 decimals below 10, 1 below 100, else none. */
export function formatStepsPerSecond(rate: number | null | undefined): string {
  if (rate == null || !Number.isFinite(rate)) return 'n/a';
  return rate.toFixed(rate < 10 ? 2 : rate < 100 ? 1 : 0);
}

/** A ratio as "0.42x" (3 decimals below 0.1, 2 above), "n/a" when not finite. */
export function formatRatio(r: number | null | undefined): string {
  if (r == null || !Number.isFinite(r)) return 'n/a';
  return `${r.toFixed(r < 0.1 ? 3 : 2)}x`;
}

export type Comparison = '<=' | '<' | '>=' | '>';

/** A target on a ratio, e.g. { op: '<=', limit: 0.5 }. */
export interface Target {
  op: Comparison;
  limit: number;
}

export type Verdict = 'met' | 'missed' | 'n/a';

export function verdict(value: number | null | undefined, target: Target): Verdict {
  if (value == null || !Number.isFinite(value)) return 'n/a';
  switch (target.op) {
    case '<=':
      return value <= target.limit ? 'met' : 'missed';
    case '<':
      return value < target.limit ? 'met' : 'missed';
    case '>=':
      return value >= target.limit ? 'met' : 'missed';
    case '>':
      return value > target.limit ? 'met' : 'missed';
  }
}

const SYMBOL: Record<Comparison, string> = { '<=': '≤', '<': '<', '>=': '≥', '>': '>' };

/** "≤ 0.5x". */
export function formatTarget(target: Target): string {
  return `${SYMBOL[target.op]} ${target.limit}x`;
}

/** "0.42x (≤ 0.5x: met)", or just the ratio when there is no target. */
export function formatRatioWithTarget(value: number, target?: Target): string {
  if (!target) return formatRatio(value);
  return `${formatRatio(value)} (${formatTarget(target)}: ${verdict(value, target)})`;
}

/**
 * How many steps to time in one block: about `blockSeconds` worth at `stepSeconds` per step, so
 * that fast runtimes are not timed over a few milliseconds, and slow ones stay within budget;
 * never below `min` nor above `max`.
 */
export function stepsPerBlock(stepSeconds: number, blockSeconds: number, min: number, max: number): number {
  if (!(stepSeconds > 0) || !Number.isFinite(stepSeconds)) return min;
  return Math.min(max, Math.max(min, Math.round(blockSeconds / stepSeconds)));
}
