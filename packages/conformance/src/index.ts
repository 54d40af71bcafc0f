export {
  type Found,
  findChromium,
  findNodeWebGPU,
  findPyTorch,
  type NodeWebGPU,
  pytorchRequired,
  SWIFTSHADER_ICD,
  webgpuRequired,
} from './environment.js';
export { GOLDEN_CASE_SPECS, generateGoldenCases } from './golden-cases.js';
export { loadAdapter } from './load-adapter.js';
export { formatReport } from './report.js';
export {
  type CheckResult,
  type ConformanceCheck,
  ConformanceFailure,
  type ConformanceReport,
  conformanceChecks,
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
