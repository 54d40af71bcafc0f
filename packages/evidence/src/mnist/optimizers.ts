import { accsgd } from '@accsgd/tfjs';
import * as tf from '@tensorflow/tfjs-core';

export const OPTIMIZERS = ['AccSGD', 'SGD', 'Momentum', 'Nesterov', 'Adam'] as const;
export type OptimizerName = (typeof OPTIMIZERS)[number];

/** AccSGD's long-step and statistical parameters: the authors' advice for a shallow net on easy data. */
export const ACCSGD_SETTINGS = { kappa: 1000, xi: 10, smallConst: 0.7 } as const;
export const MOMENTUM = 0.9;

export interface OptimizerSpec {
  name: OptimizerName;
  lr: number;
  /** AccSGD only: the long step and statistical advantage (default: ACCSGD_SETTINGS). */
  kappa?: number;
  xi?: number;
}

/** AccSGD's hyperparameters of a spec, the fixed ones filled in. */
export function accsgdSettings(spec: OptimizerSpec): {
  lr: number;
  kappa: number;
  xi: number;
  smallConst: number;
} {
  return {
    lr: spec.lr,
    kappa: spec.kappa ?? ACCSGD_SETTINGS.kappa,
    xi: spec.xi ?? ACCSGD_SETTINGS.xi,
    smallConst: ACCSGD_SETTINGS.smallConst,
  };
}

/** How the legends and tables name an optimizer (heavy ball and Nesterov spelled out). */
export const OPTIMIZER_LABELS: Record<OptimizerName, string> = {
  AccSGD: 'AccSGD',
  SGD: 'SGD',
  Momentum: `heavy ball (momentum ${MOMENTUM})`,
  Nesterov: `Nesterov (momentum ${MOMENTUM})`,
  Adam: 'Adam',
};

/** A human-readable description of the setting (the fixed parameters included). */
export function describe(spec: OptimizerSpec): string {
  switch (spec.name) {
    case 'AccSGD': {
      const a = accsgdSettings(spec);
      return `lr=${a.lr}, kappa=${a.kappa}, xi=${a.xi}, smallConst=${a.smallConst}`;
    }
    case 'Momentum':
    case 'Nesterov':
      return `lr=${spec.lr}, momentum=${MOMENTUM}`;
    case 'Adam':
      return `lr=${spec.lr}, beta1=0.9, beta2=0.999, epsilon=1e-7`;
    default:
      return `lr=${spec.lr}`;
  }
}

/** The optimizer: @accsgd/tfjs's `accsgd()` or tfjs's own. */
export function createOptimizer(spec: OptimizerSpec): tf.Optimizer {
  switch (spec.name) {
    case 'AccSGD':
      return accsgd(accsgdSettings(spec));
    case 'SGD':
      return tf.train.sgd(spec.lr);
    case 'Momentum':
      return tf.train.momentum(spec.lr, MOMENTUM, false);
    case 'Nesterov':
      return tf.train.momentum(spec.lr, MOMENTUM, true);
    case 'Adam':
      return tf.train.adam(spec.lr, 0.9, 0.999, 1e-7);
  }
}
