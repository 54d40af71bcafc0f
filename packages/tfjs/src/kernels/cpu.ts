import { firstNonFinite } from '@accsgd/core';
import type { KernelConfig, TensorInfo } from '@tensorflow/tfjs-core';
import { ACCSGD_UPDATE, type CoefficientArray, updateArguments } from './registry.js';
import { fusedPass } from './typed-array-pass.js';

/** The part of tfjs-backend-cpu's MathBackendCPU this kernel uses. */
interface CpuBackend {
  data: { get(dataId: object): { values?: unknown } | undefined; has(dataId: object): boolean };
  makeTensorInfo(shape: number[], dtype: 'float32', values?: Float32Array): TensorInfo;
}

function valuesOf(backend: CpuBackend, info: TensorInfo): Float32Array {
  const values = backend.data.get(info.dataId)?.values;
  if (!(values instanceof Float32Array))
    throw new Error(`${ACCSGD_UPDATE} (cpu): tensor storage is not a Float32Array`);
  return values;
}

/**
 * cpu: the core's fused pass over copies of the backend's Float32Arrays, in two fresh arrays, never in place:
 * the cpu backend stores the caller's own typed array for `tf.tensor(array)` and hands its storage
 * out from `dataSync()`, so overwriting it would change arrays the caller still holds.
 */
export const cpuUpdateKernel: KernelConfig = {
  kernelName: ACCSGD_UPDATE,
  backendName: 'cpu',
  kernelFunc: (args) => {
    const { param, grad, buffer, coefficients } = updateArguments(args);
    const backend = args.backend as CpuBackend;
    const paramIn = valuesOf(backend, param);
    const paramOut = new Float32Array(paramIn.length);
    const bufferOut = new Float32Array(paramIn.length);
    const initialise = buffer.dataId === param.dataId;
    fusedPass(
      paramIn,
      valuesOf(backend, grad),
      valuesOf(backend, buffer),
      paramOut,
      bufferOut,
      coefficients as unknown as CoefficientArray,
      initialise,
    );
    return [
      backend.makeTensorInfo([...param.shape], 'float32', paramOut),
      backend.makeTensorInfo([...param.shape], 'float32', bufferOut),
    ];
  },
};

/** Index of the first NaN or infinity of a float32 tensor on the cpu backend, -1, or null when the backend does not hold it. */
export function cpuFirstNonFinite(backend: object, info: TensorInfo): number | null {
  const cpu = backend as CpuBackend;
  return cpu.data.has(info.dataId) ? firstNonFinite(valuesOf(cpu, info)) : null;
}
