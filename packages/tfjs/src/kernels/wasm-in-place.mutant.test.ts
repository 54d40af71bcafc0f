import { conformanceChecks, runChecks } from '@accsgd/conformance';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { conformanceAdapter } from '../conformance.js';
import { registerAccSGDKernels } from './index.js';
import {
  ACCSGD_UPDATE,
  type CoefficientArray,
  fusedCoefficientsOf,
  sizeOf,
  updateArguments,
} from './registry.js';
import { heapKernelOf, wasmUpdateKernel } from './wasm.js';

/**
 * The defect this package shipped, rebuilt on the real tfjs-backend-wasm: the fused kernel wrote
 * p and buf in place, so the variable kept its tensor id and XNNPACK's packed copy of it. Right in
 * memory (read() passes every golden trajectory), wrong in use: the conformance suite's closed
 * loop must reject it.
 */
interface WasmInternals {
  dataIdMap: { get(dataId: object): { memoryOffset: number } };
  incRef(dataId: object): void;
}

const inPlaceKernel: tf.KernelConfig = {
  kernelName: ACCSGD_UPDATE,
  backendName: 'wasm',
  kernelFunc: (args) => {
    const { param, grad, buffer, coefficients } = updateArguments(args);
    const backend = args.backend as unknown as WasmInternals;
    const initialise = buffer.dataId === param.dataId;
    const offset = (t: tf.TensorInfo) => backend.dataIdMap.get(t.dataId).memoryOffset;
    const bufferOut = initialise
      ? (args.backend as unknown as { makeOutput(s: number[], d: string): tf.TensorInfo }).makeOutput(
          [...param.shape],
          'float32',
        )
      : buffer;
    heapKernelOf(args.backend)!.update(
      offset(param),
      offset(grad),
      offset(bufferOut),
      sizeOf(param.shape),
      fusedCoefficientsOf(coefficients as unknown as CoefficientArray),
      initialise,
      { param: offset(param), buffer: offset(bufferOut) },
    );
    // Hand the inputs' own storage back, as the old kernel did when it owned them.
    backend.incRef(param.dataId);
    if (!initialise) backend.incRef(buffer.dataId);
    return [
      { dataId: param.dataId, shape: [...param.shape], dtype: 'float32' },
      { dataId: bufferOut.dataId, shape: [...param.shape], dtype: 'float32' },
    ];
  },
};

describe('the conformance suite on tfjs/wasm with the old in-place kernel', () => {
  beforeAll(async () => {
    await tf.setBackend('wasm');
    registerAccSGDKernels();
    tf.unregisterKernel(ACCSGD_UPDATE, 'wasm');
    tf.registerKernel(inPlaceKernel);
  });
  afterAll(() => {
    tf.unregisterKernel(ACCSGD_UPDATE, 'wasm');
    tf.registerKernel(wasmUpdateKernel);
  });

  it('passes the trajectories read back from memory, and fails in use', async () => {
    const adapter = await conformanceAdapter({ backend: 'wasm' });
    const checks = (await conformanceChecks()).filter((c) => /^(golden: defaults|in use: )/.test(c.name));
    const report = await runChecks(adapter, checks);
    const byName = new Map(report.results.map((r) => [r.check, r]));
    expect(byName.get('golden: defaults')!.passed).toBe(true);
    const inUse = report.results.filter((r) => r.check.startsWith('in use: '));
    expect(inUse.length).toBe(3);
    for (const result of inUse) {
      expect(result.passed, result.check).toBe(false);
      expect(result.detail).toMatch(/stale or different parameters/);
      expect(result.maxError! / result.bound!).toBeGreaterThan(10);
    }
  });
});
