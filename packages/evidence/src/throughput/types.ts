import type { Target, Verdict } from './stats.js';

export const TOTAL = 16_777_216;
export const LAYOUTS = [
  { label: '1 x 16,777,216', tensors: 1, size: TOTAL },
  { label: '1024 x 16,384', tensors: 1024, size: TOTAL / 1024 },
] as const;
/** The many-parameters section's layout: ONNX's item-3 target, a step over 5,000 parameters against one of the same total. */
export const MANY = { label: '5,000 x ~210 (1,048,576 in all)', tensors: 5_000, total: 1_048_576 } as const;
export type LayoutLabel = (typeof LAYOUTS)[number]['label'] | typeof MANY.label;

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
  /** On WebGPU: the step's effective bandwidth beside a copy kernel on the same adapter. */
  bandwidth?: Bandwidth;
}

/** A GPU step's effective bandwidth beside a WGSL copy kernel measured in the same run. */
export interface Bandwidth {
  /** Bytes the step moves at least (model says how they were counted). */
  bytes: number;
  /** bytes / the step's time, in GB/s (1e9 bytes per second). */
  stepGBps: number;
  /** The copy kernel's GB/s (8 bytes per element: one read, one write), same adapter, same run. */
  copyGBps: number;
  /** stepGBps / copyGBps: how close the step is to the copy kernel's roofline (1 = as fast). */
  ratio: number;
  model: string;
}

/** What one section (a child process) reports. */
export interface SectionResult {
  section: string;
  rows: Row[];
  /** Why the section measured nothing (no adapter, no torch, ...). */
  skipped?: string;
  /** E.g. the WebGPU adapter, the torch version. */
  info?: string;
  /** The train-step section's measurements (absent from every other section). */
  trainStep?: TrainStepResult;
  /** The conv-train-step section's: examples/onnx-cnn's conv net beside PyTorch at 1 and 2 threads. */
  convTrainStep?: TrainStepResult;
}

/** One runtime's fused MNIST MLP train step, beside tfjs wasm measured in the same process. */
export interface TrainStepRow {
  framework: string;
  runtime: string;
  /** How one step is made, e.g. "OnnxTrainer.step (one session.run)". */
  variant: string;
  /** Median over the timed blocks of (steps in the block / its seconds). */
  stepsPerSecond: number;
  /** Steps in each timed block (from the last warm-up step's time). */
  stepsPerBlock: number;
  baseline: string;
  baselineStepsPerSecond: number;
  /** stepsPerSecond / baselineStepsPerSecond: above 1 is faster than the baseline. */
  ratio: number;
  /**
   * The loss of the last warm-up step: every runtime trains the same weights on the same batches,
   * so these agree to float32 rounding.
   */
  warmupLoss: number;
  /** On WebGPU runtimes: the step's effective bandwidth beside a copy kernel on the same adapter. */
  bandwidth?: Bandwidth;
}

export interface TrainStepResult {
  /** E.g. "784-256-10 MLP, Relu, softmax cross-entropy, batch 128, AccSGD lr 0.2". */
  workload: string;
  warmupSteps: number;
  blocks: number;
  /** The time a timed block aims at; each runtime's block has at least minStepsPerBlock steps. */
  blockSeconds: number;
  minStepsPerBlock: number;
  rows: TrainStepRow[];
  /** Runtimes that measured nothing, and why (no WebGPU adapter, ...). */
  skipped: { runtime: string; reason: string }[];
}

export const RESULT_MARKER = '@@accsgd-throughput ';
