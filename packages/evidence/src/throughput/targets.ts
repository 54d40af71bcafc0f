import { ratio, type Target, type Verdict, verdict } from './stats.js';
import type { LayoutLabel, Row } from './types.js';

/** A cross-framework target of the issue, evaluated on one layout. */
export interface CrossTarget {
  layout: LayoutLabel;
  name: string;
  /** How the value is computed, e.g. "torch reference (1 thread) / core arena". */
  value: string;
  ratio: number;
  target: Target;
  verdict: Verdict;
  note?: string;
}

/** The default check's bytes over the floor pass's: it reads g (4 bytes) besides the step's 20. */
const CHECKED_FLOOR = 1.2;

const find = (rows: readonly Row[], layout: string, framework: string, backend: RegExp, variant: RegExp) =>
  rows.find(
    (r) =>
      r.layout === layout && r.framework === framework && backend.test(r.backend) && variant.test(r.variant),
  );

/**
 * The targets that compare frameworks: core's arena path at least 3x faster than the torch
 * reference at 1 thread and 2x at 2 threads; core's default path faster than the reference at 2
 * threads. "Faster by k" means torch ms / core ms >= k. Where a target is missed, the note says
 * whether the single-threaded floor pass would reach it (then a single-threaded path could), else
 * whether the floor split over threads would (then a multi-threaded arena path is what it takes).
 */
export function crossTargets(rows: readonly Row[], layouts: readonly LayoutLabel[]): CrossTarget[] {
  const out: CrossTarget[] = [];
  for (const layout of layouts) {
    const arena = find(rows, layout, '@accsgd/core', /Arena/, /^arena: .*'error'/);
    const plain = find(rows, layout, '@accsgd/core', /^Float32Array$/, /'error'/);
    // At 2 threads core runs with `threads: 2` where the report has such rows (older ones do not).
    const arena2 = find(rows, layout, '@accsgd/core', /Arena.*, 2 threads/, /'error'/) ?? arena;
    const plain2 = find(rows, layout, '@accsgd/core', /^Float32Array, 2 threads/, /'error'/) ?? plain;
    const shared2 = find(
      rows,
      layout,
      '@accsgd/core',
      /^Float32Array over SharedArrayBuffer, 2 threads/,
      /'error'/,
    );
    const threaded = find(rows, layout, 'physical floor', /threads/, /./);
    const torch = (threads: number) =>
      find(rows, layout, 'PyTorch', new RegExp(`, ${threads} threads?$`), /reference/);
    const add = (
      name: string,
      value: string,
      torchRow: Row | undefined,
      coreRow: Row | undefined,
      target: Target,
      explain?: (torchMs: number, coreRow: Row) => string,
    ) => {
      const r = ratio(torchRow?.ms, coreRow?.ms);
      const v = verdict(r, target);
      let note: string | undefined;
      if (v === 'missed' && coreRow && explain && torchRow) note = explain(torchRow.ms, coreRow);
      else if (v === 'missed' && coreRow) {
        const one = ratio(torchRow?.ms, coreRow.baselineMs);
        const many = ratio(torchRow?.ms, threaded?.ms);
        const manyText = Number.isFinite(many) ? ` (${threaded!.backend}: ${many.toFixed(2)}x)` : '';
        note =
          verdict(one, target) === 'met'
            ? `the single-threaded floor pass reaches ${one.toFixed(2)}x, so a single-threaded path could meet it`
            : verdict(many, target) === 'met'
              ? `the single-threaded floor pass reaches only ${one.toFixed(2)}x: a multi-threaded arena path is what it would take${manyText}`
              : `the single-threaded floor pass reaches only ${one.toFixed(2)}x${manyText}: out of reach on this machine as measured`;
      }
      // A 2-thread torch row no faster than the 1-thread one had no second free core to use.
      const one = torch(1);
      if (torchRow && one && torchRow !== one && torchRow.ms >= one.ms) {
        const caveat = `torch was no faster at 2 threads than at 1 here (${torchRow.ms.toFixed(1)} vs ${one.ms.toFixed(1)} ms): no second free core, so this verdict says little`;
        note = note ? `${note}; ${caveat}` : caveat;
      }
      out.push({ layout, name, value, ratio: r, target, verdict: v, ...(note ? { note } : {}) });
    };
    add(
      'core arena path ≥ 3x faster than the torch reference at 1 thread',
      'torch reference (1 thread) ms / core arena (nonFinite error) ms',
      torch(1),
      arena,
      { op: '>=', limit: 3 },
      // The default check must read every gradient before anything is written (a step is atomic):
      // 4 more bytes per element on the floor's 20, so its own floor is 1.2x the floor pass.
      (torchMs, row) => {
        const checked = torchMs / (CHECKED_FLOOR * row.baselineMs);
        const allow = find(rows, layout, '@accsgd/core', /^ParameterArena \(wasm SIMD\)$/, /'allow'/);
        const allowText = allow
          ? `; with nonFinite 'allow' the arena path is ${(torchMs / allow.ms).toFixed(2)}x`
          : '';
        return `the floor pass plus the one read of the gradients that the default check needs before it may write (${CHECKED_FLOOR}x the floor's bytes) reaches ${checked.toFixed(2)}x${checked < 3 ? ': out of reach on one thread here with the check' : ''}${allowText}`;
      },
    );
    add(
      'core arena path ≥ 2x faster than the torch reference at 2 threads',
      `torch reference (2 threads) ms / core arena${arena2 === arena ? '' : ', threads: 2'} (nonFinite error) ms`,
      torch(2),
      arena2,
      { op: '>=', limit: 2 },
    );
    add(
      'core default path faster than the torch reference at 2 threads',
      `torch reference (2 threads) ms / core AccSGD on Float32Arrays${plain2 === plain ? '' : ', threads: 2'} (nonFinite error) ms`,
      torch(2),
      plain2,
      { op: '>', limit: 1 },
      // Ordinary ArrayBuffers can be read by the calling thread only: it copies every p and g in
      // and every p out, whatever the workers do, so a second core cannot speed those copies up.
      () =>
        'ordinary (non-shared) arrays can only be copied in and out by the calling thread, which bounds this path at any thread count' +
        (shared2
          ? '; on Float32Arrays over SharedArrayBuffers every thread copies its own pieces (next row)'
          : ''),
    );
    if (shared2)
      add(
        'core on Float32Arrays over SharedArrayBuffers faster than the torch reference at 2 threads',
        'torch reference (2 threads) ms / core AccSGD, threads: 2, parameters and gradients on SharedArrayBuffers (nonFinite error) ms',
        torch(2),
        shared2,
        { op: '>', limit: 1 },
        // The kernel cannot address a SharedArrayBuffer: p and g are copied in and p out besides
        // the step's 20 bytes, so the in-place floor split over the threads is out of its reach.
        (torchMs) =>
          `every thread copies its pieces of p and g into its staging and p back out (12 more bytes per element, copied in and out of shared memory), on top of the step's 20; the in-place floor split over the threads would reach ${threaded ? (torchMs / threaded.ms).toFixed(2) : '?'}x, a ParameterArena with threads (the arena rows) comes nearest it`,
      );
  }
  return out;
}
