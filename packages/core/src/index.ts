export {
  fromMomentum,
  MOMENTUM_STEP_RATIO,
  type MomentumSetting,
  type MomentumStartingPoint,
} from './advice.js';
export { ParameterArena } from './arena.js';
export { closedLoopBound, closedLoopError, leastSquaresGradient } from './closed-loop.js';
export {
  assertFloat32Multipliers,
  assertFloat32StateGroups,
  type Coefficients,
  deriveCoefficients,
  type Float32MultiplierProblem,
  type FusedCoefficients,
  float32MultiplierProblem,
  fusedCoefficientArray,
  fusedCoefficients,
} from './coefficients.js';
export * from './contract.js';
export { AccSGDConfigError, AccSGDError, AccSGDGradientError, AccSGDStateError } from './errors.js';
export { type FloatArray, firstNonFinite, float32Multipliers, fusedUpdate } from './fused-update.js';
export {
  type Advice,
  adviseHyperparams,
  HYPERPARAM_DEFAULTS,
  HYPERPARAM_NAMES,
  type Hyperparams,
  type HyperparamsInput,
  resolveHyperparams,
  TUNING_GUIDE,
  validateHyperparams,
} from './hyperparams.js';
export { HeapKernel, type WasmMemory } from './kernels/wasm-kernel.js';
export {
  firstCrossOverlap,
  firstRangeOverlap,
  groupAt,
  type MemoryRange,
  paramAt,
} from './lookup.js';
export {
  firstNonFiniteAs,
  NON_FINITE_POLICIES,
  type NonFinitePolicy,
  nonFinitePolicy,
  rejectNonFinite,
} from './non-finite.js';
export {
  AccSGD,
  type AccSGDOptions,
  type Gradients,
  type ParamGroupInput,
  type StepResult,
} from './optimizer.js';
export { OrderedCalls } from './ordered-calls.js';
export { referenceStep } from './reference.js';
export {
  type ImportOptions,
  type ImportPlan,
  type KeyedGradients,
  ParameterRegistry,
  type Precision,
  type RegistryGroup,
  type RegistryOptions,
  type RegistryParam,
  type StepPlan,
  type StepWork,
} from './registry.js';
export {
  decodeSafetensors,
  encodeSafetensors,
  type SafetensorsDType,
  type SafetensorsFile,
  type SafetensorsLimits,
  type SafetensorsTensor,
} from './safetensors.js';
export {
  assertStateFits,
  BUFFER_SUFFIX,
  decodeState,
  encodeState,
  normalizeState,
  type OptimizerState,
  STATE_FORMAT,
  STATE_FORMAT_VERSION,
  type StateBuffer,
  type StateGroup,
  type StateLayout,
} from './state-file.js';
/** Version of SPEC.md this package implements. */
export const SPEC_VERSION = '2.0.0';
