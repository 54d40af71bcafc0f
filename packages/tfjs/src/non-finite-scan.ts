import { AccSGDConfigError } from '@accsgd/core';
import { engine, type Tensor } from '@tensorflow/tfjs-core';
import {
  compositeFirstNonFinite,
  compositeFirstNonFiniteAsync,
  gpuScanners,
  locateNonFinite,
  memoryScanners,
} from './kernels/index.js';

type FindNonFinite = (grads: Tensor[]) => { tensor: number; element: number } | null;

/** The first non-finite gradient element, and its value. */
export interface NonFiniteElement {
  tensor: number;
  element: number;
  value: number;
}

/** First non-finite gradient element: direct scans of cpu/wasm memory, tfjs ops elsewhere. */
export const findNonFinite: FindNonFinite = (grads) => {
  const scan = memoryScanners[engine().backendName];
  if (!scan) {
    if (
      engine().backendName === 'webgpu' &&
      typeof (globalThis as { OffscreenCanvas?: unknown }).OffscreenCanvas === 'undefined'
    ) {
      throw new AccSGDConfigError(
        'nonFinite',
        'error',
        '"allow" here, or applyGradientsAsync()',
        'checking gradients for NaN/infinity needs a read-back, and tfjs-backend-webgpu cannot read back synchronously on this platform (no OffscreenCanvas): call applyGradientsAsync(), or pass nonFinite: "allow"',
      );
    }
    const gpuScan = gpuScanners[engine().backendName];
    if (!gpuScan || grads.length === 0) return compositeFirstNonFinite(grads);
    const firstBad = gpuScan(engine().backend, grads);
    try {
      return locateNonFinite(firstBad.dataSync());
    } finally {
      firstBad.dispose();
    }
  }
  const backend = engine().backend;
  for (let t = 0; t < grads.length; t++) {
    const element = scan(backend, grads[t]!);
    if (element === null) return compositeFirstNonFinite(grads);
    if (element >= 0) return { tensor: t, element };
  }
  return null;
};

/** The same, read back asynchronously where the backend's memory is not directly readable. */
export async function findNonFiniteAsync(
  grads: Tensor[],
): Promise<{ tensor: number; element: number } | null> {
  if (grads.length === 0) return null;
  const name = engine().backendName;
  if (memoryScanners[name]) return findNonFinite(grads);
  const gpuScan = gpuScanners[name];
  if (!gpuScan) return compositeFirstNonFiniteAsync(grads);
  const firstBad = gpuScan(engine().backend, grads);
  try {
    return locateNonFinite(await firstBad.data());
  } finally {
    firstBad.dispose();
  }
}

/** Where the tensors of the current backend can be read back synchronously. */
export function canReadBackSync(): boolean {
  return !(
    engine().backendName === 'webgpu' &&
    typeof (globalThis as { OffscreenCanvas?: unknown }).OffscreenCanvas === 'undefined'
  );
}
