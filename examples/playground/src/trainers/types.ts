import type { BackendName } from '../backends.js';
import type { Batch, TaskName } from '../data.js';
import type { ModelSpec } from '../models.js';

export const OPTIMIZERS = ['accsgd', 'sgd', 'momentum', 'nesterov', 'adam'] as const;
export type OptimizerName = (typeof OPTIMIZERS)[number];

/** Every optimizer's settings; each uses the ones that apply to it. */
export interface Hyper {
  lr: number;
  /** AccSGD. */
  kappa: number;
  xi: number;
  smallConst: number;
  /** Heavy ball and Nesterov (tf.train.momentum). */
  momentum: number;
}

/** Learning rates that train each task within 40 steps (the momentum ones are smaller: tfjs's
 * momentum accumulates gradients, so its effective step is lr / (1 - momentum)). */
export function defaultHyper(task: TaskName, optimizer: OptimizerName): Hyper {
  const lr: Record<TaskName, Record<OptimizerName, number>> = {
    toy: { accsgd: 0.3, sgd: 0.3, momentum: 0.05, nesterov: 0.05, adam: 0.02 },
    mnist: { accsgd: 0.3, sgd: 0.3, momentum: 0.05, nesterov: 0.05, adam: 0.003 },
    'mnist-cnn': { accsgd: 0.1, sgd: 0.1, momentum: 0.02, nesterov: 0.02, adam: 0.002 },
  };
  return { lr: lr[task][optimizer], kappa: 1000, xi: 10, smallConst: 0.7, momentum: 0.9 };
}

/** A model's parameters and the AccSGD state file (@accsgd/core's format) at one step. */
export interface Checkpoint {
  params: Map<string, Float32Array>;
  state: Uint8Array;
}

export interface TrainerOptions {
  spec: ModelSpec;
  optimizer: OptimizerName;
  hyper: Hyper;
  batchSize: number;
}

/** One model and one optimizer on one backend. */
export interface Trainer {
  readonly backend: BackendName;
  /** One update on the batch; resolves to the batch's loss before the update. */
  step(batch: Batch): Promise<number>;
  /** Logits (count x classes) for count rows of x. */
  predict(x: Float32Array, count: number): Promise<Float32Array>;
  /** AccSGD only, where the backend can export its state. */
  checkpoint?(): Promise<Checkpoint>;
  /** Checks everything first; a rejected file changes nothing. */
  restore?(checkpoint: Checkpoint): Promise<void>;
  dispose(): Promise<void>;
}

/** Thrown for a combination the backend cannot run (the API rejects with it). */
export class UnsupportedCombination extends Error {
  override readonly name = 'UnsupportedCombination';
}
