export type {
  ConformanceAdapter,
  ConformanceAdapterFactory,
  ConformanceDType,
  ConformanceProblem,
  ConformanceSession,
  ConformanceSnapshot,
} from '@accsgd/core';
export {
  DIAGNOSIS_MAX_FACTOR,
  type Diagnosis,
  describeEvidence,
  diagnose,
  formatDiagnosis,
  type SignatureMatch,
} from './diagnose.js';
export {
  type Found,
  findChromium,
  findNodeWebGPU,
  findPyTorch,
  type NodeGPU,
  type NodeGPUAdapter,
  type NodeWebGPU,
  pytorchRequired,
  SWIFTSHADER_ICD,
  webgpuRequired,
} from './environment.js';
export { GOLDEN_CASE_SPECS, generateGoldenCases } from './golden-cases.js';
export { loadAdapter } from './load-adapter.js';
export {
  CHECK_FAMILIES,
  type FormatOptions,
  firstDivergence,
  formatReport,
  groupFailures,
} from './report.js';
export {
  type CheckResult,
  type ConformanceCheck,
  ConformanceFailure,
  type ConformanceReport,
  conformanceChecks,
  type Divergence,
  type OutOfBound,
  type RunOptions,
  runChecks,
  runConformance,
  runPortability,
} from './runner.js';
export {
  decodeGoldenCase,
  encodeGoldenCase,
  GOLDEN_FORMAT,
  GOLDEN_FORMAT_VERSION,
  type GoldenCase,
  type GoldenStep,
  listGoldenCases,
  loadGoldenCase,
  VECTORS_DIR,
} from './vectors.js';
