import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/**
 * Finding a WebGPU adapter or a Chromium for tests. Tests that need one skip with a visible
 * notice when there is none, unless ACCSGD_REQUIRE_WEBGPU=1, in which case they must fail.
 */

/** Debian's chromium package ships SwiftShader's Vulkan driver here. */
export const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
export const CHROMIUM_CANDIDATES = [
  '/usr/bin/chromium',
  '/usr/bin/chromium-browser',
  '/usr/bin/google-chrome',
];

export function webgpuRequired(): boolean {
  return process.env.ACCSGD_REQUIRE_WEBGPU === '1';
}

export type Found<T> = ({ available: true } & T) | { available: false; reason: string };

/**
 * The WebGPU types where the program has them (@webgpu/types, or a DOM lib with WebGPU), else the
 * little used here: so that these declarations compile in a Node-only program too, without making
 * every user of this package install @webgpu/types (which itself needs the DOM lib).
 */
type WebGPUGlobal<Name extends string, Fallback> =
  typeof globalThis extends Record<Name, { prototype: infer T }> ? T : Fallback;
interface MinimalGPUAdapter {
  readonly features: ReadonlySet<string>;
  readonly info: { vendor: string; architecture: string; device: string; description: string };
  requestDevice(descriptor?: object): Promise<unknown>;
}
interface MinimalGPU {
  requestAdapter(options?: object): Promise<MinimalGPUAdapter | null>;
}
export type NodeGPU = WebGPUGlobal<'GPU', MinimalGPU>;
export type NodeGPUAdapter = WebGPUGlobal<'GPUAdapter', MinimalGPUAdapter>;

export interface NodeWebGPU {
  gpu: NodeGPU;
  adapter: NodeGPUAdapter;
  /** e.g. "google / swiftshader". */
  description: string;
}

let nodeWebGPU: Promise<Found<NodeWebGPU>> | undefined;

/**
 * A WebGPU adapter in Node through the `webgpu` package (Dawn). Installs the WebGPU globals
 * (GPUBufferUsage, ...) and `navigator.gpu` when Node has none, which is what
 * @tensorflow/tfjs-backend-webgpu looks for. Without a Vulkan driver of its own, points the Vulkan
 * loader at Chromium's SwiftShader when it is installed. Cached per process.
 */
export function findNodeWebGPU(): Promise<Found<NodeWebGPU>> {
  nodeWebGPU ??= (async (): Promise<Found<NodeWebGPU>> => {
    if (!process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER_ICD))
      process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
    process.env.XDG_RUNTIME_DIR ??= '/tmp';
    let dawn: { create: (options: string[]) => GPU; globals: Record<string, unknown> };
    try {
      dawn = (await import('webgpu')) as unknown as typeof dawn;
    } catch (error) {
      return {
        available: false,
        reason: `the "webgpu" package cannot be loaded (${(error as Error).message})`,
      };
    }
    Object.assign(globalThis, dawn.globals);
    const gpu = dawn.create([]);
    const g = globalThis as { navigator?: { gpu?: GPU } };
    if (!g.navigator)
      Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
    else if (!g.navigator.gpu) Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true });
    const adapter = await gpu.requestAdapter();
    if (!adapter) {
      return {
        available: false,
        reason: `no WebGPU adapter (install Debian's chromium and libvulkan1 for SwiftShader; VK_ICD_FILENAMES=${process.env.VK_ICD_FILENAMES ?? 'unset'})`,
      };
    }
    const info = adapter.info;
    return {
      available: true,
      gpu,
      adapter,
      description: `${info.vendor || '?'} / ${info.architecture || info.device || '?'}`,
    };
  })();
  return nodeWebGPU;
}

export function findChromium(): Found<{ executablePath: string }> {
  const fromEnv = process.env.ACCSGD_CHROMIUM;
  const executablePath = [fromEnv, ...CHROMIUM_CANDIDATES].find((p): p is string => !!p && existsSync(p));
  return executablePath
    ? { available: true, executablePath }
    : {
        available: false,
        reason: `no Chromium found (looked at ${CHROMIUM_CANDIDATES.join(', ')}; set ACCSGD_CHROMIUM or apt-get install chromium)`,
      };
}

export function pytorchRequired(): boolean {
  return process.env.ACCSGD_REQUIRE_PYTORCH === '1';
}

/**
 * A Python that can `import torch`, for the checks against the reference PyTorch optimizer:
 * $ACCSGD_PYTHON, else Debian's /usr/bin/python3 (apt-get install python3-torch), else python3 on
 * the PATH.
 */
export function findPyTorch(): Found<{ python: string; version: string }> {
  const candidates = [process.env.ACCSGD_PYTHON, '/usr/bin/python3', 'python3'].filter(
    (c): c is string => !!c,
  );
  for (const python of candidates) {
    const probe = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
    if (probe.status === 0) return { available: true, python, version: probe.stdout.trim() };
  }
  return {
    available: false,
    reason: `no Python with torch (tried ${candidates.join(', ')}; apt-get install python3-torch, or set ACCSGD_PYTHON)`,
  };
}
