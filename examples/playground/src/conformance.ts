import { type ConformanceReport, diagnose, formatDiagnosis, runConformance } from '@accsgd/conformance/web';
import type { ConformanceAdapter } from '@accsgd/core';
import { type BackendName, useOrt, useTfjs } from './backends.js';

export type AdapterName = BackendName | 'core';

/** The adapter of each name, from each package's own ./conformance entry (as the CLI loads them). */
export async function conformanceAdapterFor(name: AdapterName): Promise<ConformanceAdapter> {
  switch (name) {
    case 'core':
      return (await import('@accsgd/core/conformance')).conformanceAdapter();
    case 'tfjs-cpu':
    case 'tfjs-wasm':
    case 'tfjs-webgl':
    case 'tfjs-webgpu': {
      const backend = name.slice(5) as 'cpu' | 'wasm' | 'webgl' | 'webgpu';
      await useTfjs(backend); // sets the wasm files' path before the adapter loads the backend
      return (await import('@accsgd/tfjs/conformance')).conformanceAdapter({ backend });
    }
    case 'webgpu-kernel':
      return (await import('@accsgd/webgpu-kernel/conformance')).conformanceAdapter();
    case 'ort-wasm':
    case 'ort-webgpu': {
      const kind = name === 'ort-wasm' ? 'wasm' : 'webgpu';
      const { conformanceAdapter } = await import('@accsgd/onnx-training/conformance');
      return conformanceAdapter({ runtime: `web-${kind}`, ort: (await useOrt(kind)) as never });
    }
  }
}

export interface ConformanceSummary {
  passed: number;
  total: number;
  diagnosis?: string;
  report: ConformanceReport;
}

export async function runAdapterConformance(
  name: AdapterName,
  onResult?: (done: number) => void,
): Promise<ConformanceSummary> {
  const adapter = await conformanceAdapterFor(name);
  let done = 0;
  const report = await runConformance(adapter, { onResult: () => onResult?.(++done) });
  const passed = report.results.filter((r) => r.passed).length;
  const diagnoses = diagnose(report);
  const diagnosis = diagnoses.length > 0 ? formatDiagnosis(diagnoses, report) : undefined;
  return { passed, total: report.results.length, report, ...(diagnosis ? { diagnosis } : {}) };
}
