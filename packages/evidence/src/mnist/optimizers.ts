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
}

/** A human-readable description of the setting (the fixed parameters included). */
export function describe(spec: OptimizerSpec): string {
  switch (spec.name) {
    case 'AccSGD':
      return `lr=${spec.lr}, kappa=${ACCSGD_SETTINGS.kappa}, xi=${ACCSGD_SETTINGS.xi}, smallConst=${ACCSGD_SETTINGS.smallConst}`;
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
      return accsgd({ lr: spec.lr, ...ACCSGD_SETTINGS });
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
