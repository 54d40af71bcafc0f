import { median } from './stats.js';

/**
 * Times several cases in turn, repeat by repeat (so that load on a shared machine falls on all of
 * them alike), after one untimed call of each (the first step creates state and touches pages).
 * Returns each case's median milliseconds.
 */
export async function timeInterleaved<K extends string>(
  cases: Record<K, () => unknown | Promise<unknown>>,
  repeats: number,
): Promise<Record<K, number>> {
  const names = Object.keys(cases) as K[];
  for (const name of names) await cases[name]();
  const samples = Object.fromEntries(names.map((n) => [n, [] as number[]])) as Record<K, number[]>;
  for (let r = 0; r < repeats; r++) {
    for (const name of names) {
      const t0 = performance.now();
      await cases[name]();
      samples[name].push(performance.now() - t0);
    }
  }
  return Object.fromEntries(names.map((n) => [n, median(samples[n])])) as Record<K, number>;
}

export function filled(n: number, seed: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.sin(i * 0.001 + seed) * scale;
  return a;
}
