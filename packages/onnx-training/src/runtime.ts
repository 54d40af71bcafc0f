import { AccSGDConfigError } from '@accsgd/core';

/**
 * The parts of an ONNX Runtime JavaScript module (onnxruntime-node, onnxruntime-web, or the one
 * transformers.js shares) that this package uses, written structurally so that either package's
 * module can be passed in without this package importing one.
 */
export interface OrtTensor {
  readonly dims: readonly number[];
  readonly type: string;
  /** 'cpu', 'gpu-buffer', ... */
  readonly location: string;
  /** Only valid for CPU tensors; never read on a GPU tensor (in Node that aborts the process). */
  readonly data: unknown;
  dispose(): void;
}

export interface OrtSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  run(feeds: Record<string, OrtTensor>): Promise<Record<string, OrtTensor>>;
  release(): Promise<void>;
}

export interface OrtModule {
  Tensor: {
    new (type: 'float32', data: Float32Array, dims: readonly number[]): OrtTensor;
    new (type: 'int64', data: BigInt64Array, dims: readonly number[]): OrtTensor;
    new (type: 'bool', data: Uint8Array, dims: readonly number[]): OrtTensor;
  };
  InferenceSession: {
    create(model: Uint8Array, options?: Record<string, unknown>): Promise<OrtSession>;
  };
}

/** Execution providers this package drives: onnxruntime-node 'cpu' and 'webgpu'; onnxruntime-web 'wasm', and 'webgpu' in a browser. */
export type ExecutionProvider = 'cpu' | 'webgpu' | 'wasm';
export const EXECUTION_PROVIDERS: readonly ExecutionProvider[] = ['cpu', 'webgpu', 'wasm'];

/** Where transformers.js (and anyone sharing one ORT) publishes its module. */
export const SHARED_ORT_SYMBOL = Symbol.for('onnxruntime');

/** The ORT module to use: the one passed in, else the shared one, else AccSGDConfigError. */
export function resolveOrt(ort: OrtModule | undefined): OrtModule {
  const found = ort ?? (globalThis as Record<symbol, unknown>)[SHARED_ORT_SYMBOL];
  const candidate = found as Partial<OrtModule> | undefined;
  if (
    !candidate ||
    typeof candidate.Tensor !== 'function' ||
    typeof candidate.InferenceSession?.create !== 'function'
  ) {
    throw new AccSGDConfigError(
      'ort',
      found,
      'an ONNX Runtime module (onnxruntime-node or onnxruntime-web), passed as options.ort or set as globalThis[Symbol.for("onnxruntime")]',
    );
  }
  return candidate as OrtModule;
}

export function executionProvider(value: unknown): ExecutionProvider {
  if (value === undefined) return 'cpu';
  if (!EXECUTION_PROVIDERS.includes(value as ExecutionProvider))
    throw new AccSGDConfigError('executionProvider', value, `one of ${EXECUTION_PROVIDERS.join(', ')}`);
  return value as ExecutionProvider;
}

/**
 * The strictPlacement option: it means "no node may fall back to the CPU", which only a GPU
 * execution provider can satisfy (on 'cpu' or 'wasm' every node is a CPU node, and ORT would refuse
 * every session).
 */
export function strictPlacement(value: unknown, ep: ExecutionProvider): boolean {
  if (value === undefined || value === false) return false;
  if (value !== true) throw new AccSGDConfigError('strictPlacement', value, 'true or false');
  if (ep !== 'webgpu')
    throw new AccSGDConfigError(
      'strictPlacement',
      value,
      "true only with executionProvider 'webgpu'",
      `is true with executionProvider '${ep}', where every node runs on the CPU; it proves GPU placement on 'webgpu'`,
    );
  return true;
}

export interface SessionOptionsInput {
  executionProvider: ExecutionProvider;
  /** Fail session creation when a node would fall back to the CPU (ORT's disable_cpu_ep_fallback). */
  strictPlacement: boolean;
  /** Outputs to keep on the GPU (webgpu only). */
  gpuOutputs?: readonly string[];
  enableGraphCapture?: boolean;
  /** Further ORT session options (intraOpNumThreads, graphOptimizationLevel, ...), applied first. */
  base?: Readonly<Record<string, unknown>>;
}

/** Session options for ORT; `extra` is omitted entirely unless strict placement is asked for. */
export function sessionOptions(input: SessionOptionsInput): Record<string, unknown> {
  const options: Record<string, unknown> = { ...input.base, executionProviders: [input.executionProvider] };
  if (input.executionProvider === 'webgpu' && input.gpuOutputs && input.gpuOutputs.length > 0)
    options.preferredOutputLocation = Object.fromEntries(input.gpuOutputs.map((n) => [n, 'gpu-buffer']));
  if (input.strictPlacement) options.extra = { session: { disable_cpu_ep_fallback: '1' } };
  if (input.enableGraphCapture) options.enableGraphCapture = true;
  return options;
}

export function scalar(ort: OrtModule, value: number): OrtTensor {
  return new ort.Tensor('float32', new Float32Array([value]), []);
}
