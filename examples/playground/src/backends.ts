import * as tf from '@tensorflow/tfjs-core';

export const BACKEND_NAMES = [
  'tfjs-webgpu',
  'tfjs-webgl',
  'tfjs-wasm',
  'tfjs-cpu',
  'webgpu-kernel',
  'ort-webgpu',
  'ort-wasm',
] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

export interface BackendInfo {
  name: BackendName;
  available: boolean;
  /** Why it is unavailable here. */
  reason?: string;
}

export const BACKEND_LABELS: Record<BackendName, string> = {
  'tfjs-webgpu': 'TensorFlow.js WebGPU',
  'tfjs-webgl': 'TensorFlow.js WebGL',
  'tfjs-wasm': 'TensorFlow.js WebAssembly',
  'tfjs-cpu': 'TensorFlow.js CPU (plain JS)',
  'webgpu-kernel': 'raw WGSL kernel (gradients from tfjs WebGPU)',
  'ort-webgpu': 'ONNX Runtime Web WebGPU (OnnxTrainer)',
  'ort-wasm': 'ONNX Runtime Web wasm (OnnxTrainer)',
};

export type TfjsBackend = 'cpu' | 'wasm' | 'webgl' | 'webgpu';

/** The page's own URL of a build-time asset folder (public/generated/...). */
export function assetUrl(path: string): string {
  return new URL(`generated/${path}`, document.baseURI).href;
}

let webgpu: Promise<string | null> | undefined;
/** null when WebGPU works here, else why not. */
export function webgpuProblem(): Promise<string | null> {
  webgpu ??= (async () => {
    const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
    if (!gpu)
      return window.isSecureContext
        ? 'this browser has no WebGPU (navigator.gpu)'
        : 'WebGPU needs a secure context (https or localhost)';
    try {
      const adapter = await gpu.requestAdapter();
      return adapter ? null : 'navigator.gpu.requestAdapter() found no adapter';
    } catch (error) {
      return `requestAdapter() failed: ${(error as Error).message}`;
    }
  })();
  return webgpu;
}

function webglProblem(): string | null {
  const canvas = document.createElement('canvas');
  return canvas.getContext('webgl2') || canvas.getContext('webgl') ? null : 'no WebGL context here';
}

export async function detectBackends(): Promise<BackendInfo[]> {
  const gpu = await webgpuProblem();
  const gl = webglProblem();
  const wasm = typeof WebAssembly === 'object' ? null : 'no WebAssembly here';
  const problems: Record<BackendName, string | null> = {
    'tfjs-webgpu': gpu,
    'tfjs-webgl': gl,
    'tfjs-wasm': wasm,
    'tfjs-cpu': null,
    'webgpu-kernel': gpu,
    'ort-webgpu': gpu,
    'ort-wasm': wasm,
  };
  return BACKEND_NAMES.map((name) =>
    problems[name] === null ? { name, available: true } : { name, available: false, reason: problems[name]! },
  );
}

let wasmPathsSet = false;
/** Loads a tfjs backend package (once), selects it and waits for it. Returns tfjs-core. */
export async function useTfjs(backend: TfjsBackend): Promise<typeof tf> {
  if (backend === 'cpu') await import('@tensorflow/tfjs-backend-cpu');
  else if (backend === 'webgl') await import('@tensorflow/tfjs-backend-webgl');
  else if (backend === 'webgpu') await import('@tensorflow/tfjs-backend-webgpu');
  else {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    if (!wasmPathsSet) {
      // Served from this origin (copied at build time), never from a CDN.
      wasm.setWasmPaths(assetUrl('tfjs-wasm/'));
      wasmPathsSet = true;
    }
  }
  if (tf.getBackend() !== backend && !(await tf.setBackend(backend)))
    throw new Error(`tfjs backend "${backend}" failed to initialise in this browser`);
  await tf.ready();
  return tf;
}

/** Without cross-origin isolation there is no SharedArrayBuffer, so wasm runs on one thread. */
export function wasmThreads(): number {
  return globalThis.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
}

export type OrtWeb = typeof import('onnxruntime-web');
const ortModules = new Map<string, Promise<OrtWeb>>();
/** onnxruntime-web (wasm) or its WebGPU build, with its files served from this origin. */
export function useOrt(kind: 'wasm' | 'webgpu'): Promise<OrtWeb> {
  let loaded = ortModules.get(kind);
  if (!loaded) {
    loaded = (async () => {
      const ort = (kind === 'webgpu'
        ? await import('onnxruntime-web/webgpu')
        : await import('onnxruntime-web')) as unknown as OrtWeb;
      // The .wasm files are Vite assets of this build (onnxruntime-web's bundles reference them with
      // new URL(..., import.meta.url)), so they come from this origin without setting wasmPaths.
      ort.env.wasm.numThreads = wasmThreads();
      return ort;
    })();
    ortModules.set(kind, loaded);
  }
  return loaded;
}
