import type { Target, Verdict } from './stats.js';

export const TOTAL = 16_777_216;
export const LAYOUTS = [
  { label: '1 x 16,777,216', tensors: 1, size: TOTAL },
  { label: '1024 x 16,384', tensors: 1024, size: TOTAL / 1024 },
] as const;
export type LayoutLabel = (typeof LAYOUTS)[number]['label'];

/** One measured optimizer beside its framework's own baseline, measured in the same process. */
export interface Row {
  framework: string;
  backend: string;
  layout: LayoutLabel;
  variant: string;
  /** Median milliseconds per step (first step not timed). */
  ms: number;
  baseline: string;
  baselineMs: number;
  /** ms / baselineMs. */
  ratio: number;
  target?: Target;
  verdict?: Verdict;
  note?: string;
}

/** What one section (a child process) reports. */
export interface SectionResult {
  section: string;
  rows: Row[];
  /** Why the section measured nothing (no adapter, no torch, ...). */
  skipped?: string;
  /** E.g. the WebGPU adapter, the torch version. */
  info?: string;
}

export const RESULT_MARKER = '@@accsgd-throughput ';
