export {
  AccSGDConfigError,
  AccSGDError,
  AccSGDGradientError,
  AccSGDStateError,
  adviseHyperparams,
  TUNING_GUIDE,
} from '@accsgd/core';
export {
  type AccSGDConfig,
  type AccSGDGroupConfig,
  AccSGDOptimizer,
  accsgd,
  BUFFER_WEIGHT_SUFFIX,
  type LearningRateSchedule,
} from './accsgd-optimizer.js';
export {
  ACCSGD_UPDATE,
  type AccSGDUpdateAttrs,
  FUSED_BACKENDS,
  hasFusedKernel,
  registerAccSGDKernels,
} from './kernels/index.js';
