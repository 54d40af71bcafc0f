/**
 * Exhaustive grid search for the candidate with the smallest cost, where evaluating a candidate
 * with a budget may stop early and return Infinity once it cannot beat the budget (branch and
 * bound: each candidate only has to beat the best so far). Ties keep the earlier candidate.
 */
export interface SearchResult<T> {
  best: T | undefined;
  cost: number;
  evaluated: number;
}

export function gridSearch<T>(
  candidates: readonly T[],
  evaluate: (candidate: T, budget: number) => number,
  options: { budget: number; onProgress?: (done: number, total: number) => void } = {
    budget: Number.POSITIVE_INFINITY,
  },
): SearchResult<T> {
  let best: T | undefined;
  let cost = Number.POSITIVE_INFINITY;
  candidates.forEach((candidate, k) => {
    // To improve on `cost` (an integer iteration count) a candidate needs at most cost - 1.
    const budget = Math.min(options.budget, cost - 1);
    const c = evaluate(candidate, budget);
    if (c <= budget && c < cost) {
      best = candidate;
      cost = c;
    }
    options.onProgress?.(k + 1, candidates.length);
  });
  return { best, cost, evaluated: candidates.length };
}

/** base^(from), base^(from + step), ..., up to base^(to) inclusive (exponents in either direction). */
export function geometric(base: number, from: number, to: number, step: number): number[] {
  const out: number[] = [];
  const n = Math.round(Math.abs(to - from) / step);
  const sign = to >= from ? 1 : -1;
  for (let k = 0; k <= n; k++) out.push(base ** (from + sign * k * step));
  return out;
}

/** Cartesian product of named value lists, in order (the last key varies fastest). */
export function product(axes: Readonly<Record<string, readonly number[]>>): Record<string, number>[] {
  let out: Record<string, number>[] = [{}];
  for (const [key, values] of Object.entries(axes)) {
    const next: Record<string, number>[] = [];
    for (const partial of out) for (const v of values) next.push({ ...partial, [key]: v });
    out = next;
  }
  return out;
}
