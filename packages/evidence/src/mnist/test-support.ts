import type { OptimizerSpec } from './optimizers.js';
import type { RunResult } from './train.js';

/** A one-epoch sweep run for tests: chance (10%) before training, `accuracy` on validation after. */
export function sweepRun(spec: OptimizerSpec, accuracy: number, diverged?: string): RunResult {
  return {
    spec,
    backend: 'wasm',
    seed: 1,
    seconds: 1,
    epochs: [
      { epoch: 0, trainLoss: 2.3, validationAccuracy: 0.1, trainSeconds: 0, evalSeconds: 0 },
      { epoch: 1, trainLoss: 0.3, validationAccuracy: accuracy, trainSeconds: 1, evalSeconds: 0 },
    ],
    ...(diverged ? { diverged } : {}),
  };
}
