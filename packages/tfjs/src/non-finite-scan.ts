import { AccSGDStateError } from '@accsgd/core';
import { engine, type Tensor } from '@tensorflow/tfjs-core';
import {
  compositeFirstNonFinite,
  compositeFirstNonFiniteAsync,
  gpuScanners,
  memoryScanners,
  readDeviceScan,
} from './kernels/index.js';
import { wasmFirstNonFiniteOf } from './kernels/wasm.js';

type FindNonFinite = (grads: Tensor[]) => { tensor: number; element: number } | null;

/** The first non-finite gradient element, and its value. */
export interface NonFiniteElement {
  tensor: number;
  element: number;
  value: number;
}

/** First non-finite gradient element: direct scans of cpu/wasm memory, tfjs ops elsewhere. */
export const findNonFinite: FindNonFinite = (grads) => {
  if (grads.length === 0) return null;
  const scan = memoryScanners[engine().backendName];
  if (!scan) {
    // Device-checked backends guard the update with the scan instead (device-checked-steps.ts).
    if (gpuScanners[engine().backendName])
      throw new AccSGDStateError(
        `a synchronous non-finite check was asked of the ${engine().backendName} backend, which checks on the device and never reads back synchronously`,
      );
    return compositeFirstNonFinite(grads);
  }
  const backend = engine().backend;
  if (engine().backendName === 'wasm') {
    // One call over every gradient's heap memory; an empty step has nothing to scan.
    const found = grads.length === 0 ? null : wasmFirstNonFiniteOf(backend, grads);
    if (found !== undefined) return found;
  }
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
    const found = readDeviceScan(await firstBad.data());
    // A scan with no previous one is never held back.
    return found && 'heldBack' in found ? null : found;
  } finally {
    firstBad.dispose();
  }
}

/**
 * Where the tensors of the current backend can be read back synchronously. Never on webgpu:
 * tfjs-backend-webgpu has no synchronous read-back in Node, and in a browser it reads through a
 * canvas, which stalls the pipeline and on some platforms (SwiftShader in headless Chromium)
 * returns zeros and loses the page's WebGPU instance.
 */
export function canReadBackSync(): boolean {
  return engine().backendName !== 'webgpu';
}

/** Whether the current backend checks gradients on the device, guarding the update (no read-back before it). */
export function checksOnDevice(): boolean {
  return gpuScanners[engine().backendName] !== undefined;
}
