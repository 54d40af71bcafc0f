/**
 * `@accsgd/conformance/web`: the conformance runner for a web page (any bundler, no Node imports).
 * The checks are the runner's own (runner.ts, the one the CLI uses); the golden vectors are bundled
 * (golden-source.web.ts), so a page runs the suite without fetching anything:
 *
 *   import { runConformance } from '@accsgd/conformance/web';
 *   import { conformanceAdapter } from '@accsgd/tfjs/conformance';
 *   const report = await runConformance(await conformanceAdapter({ backend: 'webgl' }));
 *
 * Bundlers pick the bundled vectors through package.json's "browser" field; in Node this entry
 * reads the same vectors from disk.
 */
export type {
  ConformanceAdapter,
  ConformanceAdapterFactory,
  ConformanceDType,
  ConformanceProblem,
  ConformanceSession,
  ConformanceSnapshot,
} from '@accsgd/core';
export { type Diagnosis, diagnose, formatDiagnosis } from './diagnose.js';
export {
  decodeGoldenCase,
  GOLDEN_FORMAT,
  GOLDEN_FORMAT_VERSION,
  type GoldenCase,
  type GoldenStep,
} from './golden-format.js';
export { listGoldenCases, loadGoldenCase } from './golden-source.js';
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
