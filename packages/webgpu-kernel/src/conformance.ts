/// <reference types="@webgpu/types" preserve="true" />
import {
  AccSGDConfigError,
  AccSGDGradientError,
  type ConformanceAdapter,
  type ConformanceProblem,
  type ConformanceSession,
} from '@accsgd/core';
import { AccSGDDeviceError } from './errors.js';
import { createFlatStorage, type FlatStorage } from './flat-storage.js';
import { leastSquaresGradientOnGPU } from './kernels/least-squares.js';
import { WebGPUAccSGD } from './webgpu-optimizer.js';

export interface WebGPUConformanceOptions {
  /**
   * Use this device (the caller keeps owning it); default: a new device from `navigator.gpu`, or in
   * Node from the `webgpu` package, which the adapter owns: dispose() destroys it (closing every
   * session first), and a later open requests a fresh one. It is kept between sessions, since a new
   * device recompiles the kernels (which made the conformance suite ten times slower on SwiftShader).
   */
  device?: GPUDevice;
  /** Passed to WebGPUAccSGD (e.g. to force binding windows in tests). */
  maxBindingBytes?: number;
  maxWorkgroupsPerDimension?: number;
}

/**
 * WebGPUAccSGD as a conformance adapter (float32). Each session keeps every group's tensors in
 * flat storage (createFlatStorage), uploads gradients with queue.writeBuffer, and steps with one
 * dispatch per group. Works in a browser bundle: the Node fallback is imported only when there is
 * no `navigator.gpu`, through a specifier bundlers do not follow.
 *
 * Non-finite gradients are left to the optimizer (nonFinite 'error', checked on the GPU), so the
 * conformance suite's bad-input cases exercise the real path.
 */
export async function conformanceAdapter(
  options: WebGPUConformanceOptions = {},
): Promise<ConformanceAdapter & { dispose(): void }> {
  // A device the adapter requested itself, destroyed by dispose().
  let owned: Promise<GPUDevice> | null = options.device ? null : requestDevice();
  if (owned) await owned; // fail here, not at the first open, when there is no WebGPU
  const open = new Set<ConformanceSession>();
  const acquire = async (): Promise<GPUDevice> => {
    if (options.device) return options.device;
    owned ??= requestDevice();
    try {
      return await owned;
    } catch (error) {
      owned = null;
      throw error;
    }
  };
  const dispose = (): void => {
    for (const session of [...open]) void session.close();
    const device = owned;
    owned = null;
    device?.then((d) => d.destroy()).catch(() => undefined);
  };
  const optimizerOptions = {
    ...(options.maxBindingBytes !== undefined ? { maxBindingBytes: options.maxBindingBytes } : {}),
    ...(options.maxWorkgroupsPerDimension !== undefined
      ? { maxWorkgroupsPerDimension: options.maxWorkgroupsPerDimension }
      : {}),
  };
  return {
    name: 'webgpu-kernel/float32',
    dtype: 'float32',
    /** Closes every open session and destroys the device the adapter requested (if any); a later open requests a new one. */
    dispose,
    async open(problem: ConformanceProblem): Promise<ConformanceSession> {
      const device = await acquire();
      const storages: FlatStorage[] = [];
      let optimizer: WebGPUAccSGD;
      try {
        for (const group of problem.groups) {
          const storage = createFlatStorage(
            device,
            group.params.map((name) => ({ name, shape: problem.params[name]!.shape })),
          );
          storages.push(storage);
          for (const name of group.params)
            storage.write(name, 'params', Float32Array.from(problem.params[name]!.init));
        }
        optimizer = await WebGPUAccSGD.create(
          device,
          problem.groups.map((g, i) => ({
            ...g.hyperparams,
            params: storages[i]!.params,
            grads: storages[i]!.grads,
            segments: storages[i]!.segments,
          })),
          problem.groups[0]!.hyperparams,
          optimizerOptions,
        );
      } catch (error) {
        for (const s of storages) s.destroy();
        throw error;
      }
      const storageOf = new Map<string, FlatStorage>();
      problem.groups.forEach((g, i) => {
        for (const name of g.params) storageOf.set(name, storages[i]!);
      });
      let closed = false;
      const session: ConformanceSession = {
        async step(grads) {
          // Names and lengths are checked on the host before anything is uploaded; finiteness is
          // the optimizer's (on the GPU, before anything changes).
          const present: Record<string, boolean> = {};
          for (const [name, grad] of Object.entries(grads)) {
            const storage = storageOf.get(name);
            if (!storage)
              throw new AccSGDGradientError(
                name,
                `no parameter has this name (parameters: ${optimizer.paramNames.join(', ')})`,
              );
            if (grad == null) continue;
            const size = problem.params[name]!.init.length;
            if (grad.length !== size)
              throw new AccSGDGradientError(name, `has ${grad.length} elements; the parameter has ${size}`);
            present[name] = true;
          }
          for (const name of Object.keys(present))
            storageOf.get(name)!.write(name, 'grads', Float32Array.from(grads[name]!));
          await optimizer.step(present);
        },
        async setLearningRate(lr, group) {
          optimizer.setLearningRate(lr, group);
        },
        async read() {
          const { params, buffers } = await optimizer.read();
          return {
            params: Object.fromEntries([...params].map(([n, v]) => [n, Float64Array.from(v)])),
            buffers: Object.fromEntries([...buffers].map(([n, v]) => [n, v && Float64Array.from(v)])),
          };
        },
        async exportState() {
          return optimizer.exportState();
        },
        async importState(bytes) {
          await optimizer.importState(bytes);
        },
        async leastSquaresGradient(name, x, y) {
          const storage = storageOf.get(name);
          if (!storage) throw new AccSGDConfigError('name', name, 'a parameter of this session');
          const gradient = await leastSquaresGradientOnGPU(
            device,
            storage.binding(name),
            Float32Array.from(x),
            Float32Array.from(y),
          );
          return Float64Array.from(gradient);
        },
        async close() {
          if (closed) return;
          closed = true;
          optimizer.destroy();
          for (const s of storages) s.destroy();
          open.delete(session);
        },
      };
      open.add(session);
      return session;
    },
  };
}

async function requestDevice(): Promise<GPUDevice> {
  let gpu = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
  let where = 'navigator.gpu';
  if (!gpu) {
    // Node: the conformance package's lookup (Dawn through the `webgpu` package, SwiftShader when
    // there is no GPU driver). The specifier is a variable so browser bundles leave it out.
    const specifier = '@accsgd/conformance';
    let found: { available: boolean; reason?: string; gpu?: GPU };
    try {
      const module = (await import(/* @vite-ignore */ specifier)) as {
        findNodeWebGPU(): Promise<typeof found>;
      };
      found = await module.findNodeWebGPU();
    } catch (error) {
      throw new AccSGDDeviceError(
        'conformanceAdapter',
        'unsupported',
        `no navigator.gpu, and ${specifier} cannot be loaded (${(error as Error).message})`,
      );
    }
    if (!found.available || !found.gpu)
      throw new AccSGDDeviceError('conformanceAdapter', 'unsupported', found.reason ?? 'no WebGPU');
    gpu = found.gpu;
    where = 'the webgpu package';
  }
  const adapter = await gpu.requestAdapter();
  if (!adapter) throw new AccSGDDeviceError('conformanceAdapter', 'unsupported', `${where} has no adapter`);
  return adapter.requestDevice();
}
