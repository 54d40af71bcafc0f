import {
  AccSGDConfigError,
  type ConformanceAdapter,
  type ConformanceProblem,
  type ConformanceSession,
} from '@accsgd/core';
import { buildLeastSquaresModel } from './graphs/utility-graphs.js';
import { OnnxAccSGD } from './onnx-optimizer.js';
import type { ExecutionProvider, OrtModule } from './runtime.js';

/**
 * Where the adapter runs: onnxruntime-node's CPU or WebGPU execution provider, onnxruntime-web's
 * wasm (Node or browser), or onnxruntime-web's WebGPU build (browser only: Chromium).
 */
export type OnnxConformanceRuntime = 'node-cpu' | 'node-webgpu' | 'web-wasm' | 'web-webgpu';

export interface OnnxConformanceOptions {
  runtime?: OnnxConformanceRuntime;
  /** The ORT module to use instead of importing the runtime's package. */
  ort?: OrtModule;
  /**
   * onnxruntime-web only: where its .wasm/.mjs files are served (ort.env.wasm.wasmPaths), for a
   * bundled page; also pins ort.env.wasm.numThreads to 1 (a page is not cross-origin isolated).
   */
  wasmPaths?: string;
}

const RUNTIMES: Record<OnnxConformanceRuntime, ExecutionProvider> = {
  'node-cpu': 'cpu',
  'node-webgpu': 'webgpu',
  'web-wasm': 'wasm',
  'web-webgpu': 'webgpu',
};

/**
 * The runtime's ORT package. onnxruntime-web is imported by literal specifiers (so a browser
 * bundle includes it); onnxruntime-node through a variable, which bundlers leave alone.
 */
async function importOrt(runtime: OnnxConformanceRuntime): Promise<OrtModule> {
  if (runtime === 'web-wasm') return await import('onnxruntime-web');
  if (runtime === 'web-webgpu') return await import('onnxruntime-web/webgpu');
  const specifier = 'onnxruntime-node';
  return (await import(/* @vite-ignore */ specifier)) as OrtModule;
}

/**
 * OnnxAccSGD as a conformance adapter (float32, SPEC §5), with the closed loop of §5.1: the
 * least-squares gradient is an ORT session (Reshape, MatMul, Sub, Transpose) on the same runtime,
 * fed the optimizer's live parameter tensor (on WebGPU, the GPU-resident one). On WebGPU
 * every session is created with disable_cpu_ep_fallback, so a node that would run
 * on the CPU fails instead.
 */
export async function conformanceAdapter(options: OnnxConformanceOptions = {}): Promise<ConformanceAdapter> {
  const runtime = options.runtime ?? 'node-cpu';
  const provider = RUNTIMES[runtime];
  if (!provider)
    throw new AccSGDConfigError('runtime', runtime, `one of ${Object.keys(RUNTIMES).join(', ')}`);
  const ort = options.ort ?? (await importOrt(runtime));
  if (options.wasmPaths !== undefined) {
    const env = (ort as { env?: { wasm?: { wasmPaths?: unknown; numThreads?: number } } }).env;
    if (env?.wasm) {
      env.wasm.wasmPaths = options.wasmPaths;
      env.wasm.numThreads = 1;
    }
  }
  return {
    name: `onnx-training/${runtime}`,
    dtype: 'float32',
    async open(problem: ConformanceProblem): Promise<ConformanceSession> {
      const optimizer = await OnnxAccSGD.create(
        problem.groups.map((g) => ({
          ...g.hyperparams,
          params: g.params.map((name) => ({
            name,
            shape: problem.params[name]!.shape,
            data: problem.params[name]!.init,
          })),
        })),
        problem.groups[0]!.hyperparams,
        { ort, executionProvider: provider, strictPlacement: provider === 'webgpu' },
      );
      const toRecord = <T>(map: Map<string, T>, f: (v: T) => Float64Array | null) =>
        Object.fromEntries([...map].map(([n, v]) => [n, f(v)]));
      return {
        async step(grads) {
          await optimizer.step(grads);
        },
        async setLearningRate(lr, group) {
          optimizer.setLearningRate(lr, group);
        },
        async read() {
          const { params, buffers } = await optimizer.read();
          return {
            params: toRecord(params, (v) => Float64Array.from(v)) as Record<string, Float64Array>,
            buffers: toRecord(buffers, (v) => (v ? Float64Array.from(v) : null)),
          };
        },
        exportState: () => optimizer.exportState(),
        importState: (bytes) => optimizer.importState(bytes),
        async leastSquaresGradient(name, x, y) {
          if (!optimizer.paramNames.includes(name))
            throw new AccSGDConfigError('name', name, 'a parameter of this session');
          const session = await optimizer.helperSession('least-squares', buildLeastSquaresModel);
          const live = optimizer.paramTensor(name);
          const n = live.dims[0]!;
          const rows = y.length;
          const out = await session.run({
            p: live,
            x: new ort.Tensor('float32', Float32Array.from(x), [rows, n]),
            y: new ort.Tensor('float32', Float32Array.from(y), [rows]),
          });
          const gradient = out.gradient!;
          try {
            return Float64Array.from(gradient.data as Float32Array);
          } finally {
            gradient.dispose();
          }
        },
        close: () => optimizer.dispose(),
      };
    },
  };
}
