import {
  AccSGDGradientError,
  type ConformanceAdapter,
  type ConformanceProblem,
  type ConformanceSession,
  firstNonFinite,
} from '@accsgd/core';
import { AccSGDDeviceError } from './errors.js';
import { createFlatStorage, type FlatStorage } from './flat-storage.js';
import { WebGPUAccSGD } from './webgpu-optimizer.js';

export interface WebGPUConformanceOptions {
  /** Use this device; default: a new device from `navigator.gpu`, or in Node from the `webgpu` package. */
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
 */
export async function conformanceAdapter(
  options: WebGPUConformanceOptions = {},
): Promise<ConformanceAdapter> {
  const device = options.device ?? (await requestDevice());
  const optimizerOptions = {
    ...(options.maxBindingBytes !== undefined ? { maxBindingBytes: options.maxBindingBytes } : {}),
    ...(options.maxWorkgroupsPerDimension !== undefined
      ? { maxWorkgroupsPerDimension: options.maxWorkgroupsPerDimension }
      : {}),
  };
  return {
    name: 'webgpu-kernel/float32',
    dtype: 'float32',
    async open(problem: ConformanceProblem): Promise<ConformanceSession> {
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
      return {
        async step(grads) {
          // Everything is checked on the host before anything is uploaded or dispatched.
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
            const bad = firstNonFinite(grad);
            if (bad >= 0)
              throw new AccSGDGradientError(
                name,
                `element ${bad} is ${grad[bad]} (non-finite gradients are rejected)`,
              );
            present[name] = true;
          }
          for (const name of Object.keys(present))
            storageOf.get(name)!.write(name, 'grads', Float32Array.from(grads[name]!));
          await optimizer.step(present);
        },
        async setLearningRate(group, lr) {
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
        async close() {
          optimizer.destroy();
          for (const s of storages) s.destroy();
        },
      };
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
