/// <reference types="@webgpu/types" preserve="true" />
import { AccSGD, type FloatArray, type Hyperparams } from '@accsgd/core';
import type { OnnxAccSGD } from '@accsgd/onnx-training';
import type { AccSGDOptimizer } from '@accsgd/tfjs';
import type { FlatStorage, WebGPUAccSGD } from '@accsgd/webgpu-kernel';
import type * as tfTypes from '@tensorflow/tfjs-core';
import { allParams, type Problem } from './problem.js';

/** Every parameter and momentum buffer (null: none yet), keyed by state name; copies. */
export interface Reading {
  params: Map<string, Float32Array | Float64Array>;
  buffers: Map<string, Float32Array | Float64Array | null>;
}

export type OpKind = 'step' | 'lr' | 'export' | 'import';

/**
 * What has to settle before an operation may be issued while earlier calls are still pending:
 * 'steps' (the pending steps and what was issued before them) or 'all'. Absent: nothing, the call
 * is queued behind the pending ones and takes effect in call order.
 */
export type Barriers = Partial<Record<OpKind, 'steps' | 'all'>>;

/** One optimizer over one problem, driven through the adapter's own API. */
export interface Instance {
  /** null: no gradient (passed as null); a missing entry: no gradient (passed as absent). */
  step(grads: Record<string, Float32Array | null>): Promise<unknown> | undefined;
  setLearningRate(lr: number, group: number | undefined): Promise<unknown> | undefined;
  exportState(): Promise<Uint8Array> | Uint8Array;
  importState(bytes: Uint8Array): Promise<unknown> | undefined;
  /**
   * Replaces the optimizer with a fresh one (the problem's groups and hyperparameters, no buffers,
   * step counts 0) over the current parameter values. Called with nothing pending.
   */
  renew(): Promise<void>;
  read(): Promise<Reading>;
  close(): Promise<void>;
  /** The groups' hyperparameters now (the reference only, for the accuracy floor). */
  hyperparams?(): Hyperparams[];
  readonly barriers: Barriers;
}

export interface Driver {
  readonly name: string;
  /** Bit-identical to core's float32 AccSGD by design: compared bit for bit, not within the bound. */
  readonly exact: boolean;
  open(problem: Problem): Promise<Instance>;
  dispose?(): Promise<void> | void;
}

function groupsInput(problem: Problem) {
  return problem.groups.map((g) => ({
    lr: g.hyperparams.lr,
    kappa: g.hyperparams.kappa,
    xi: g.hyperparams.xi,
    smallConst: g.hyperparams.smallConst,
    weightDecay: g.hyperparams.weightDecay,
  }));
}

/** @accsgd/core's CPU AccSGD over Float32Array (the reference) or Float64Array (the SPEC §3 truth). */
export function coreDriver(dtype: 'float32' | 'float64'): Driver {
  const Array_ = dtype === 'float64' ? Float64Array : Float32Array;
  return {
    name: `core/${dtype}`,
    exact: true,
    async open(problem) {
      const params = new Map<string, FloatArray>(
        allParams(problem).map((p) => [p.name, Array_.from(p.init)]),
      );
      const hypers = groupsInput(problem);
      const make = () =>
        new AccSGD(
          problem.groups.map((g, i) => ({
            ...hypers[i]!,
            params: g.params.map((p) => params.get(p.name)!),
            names: g.params.map((p) => p.name),
            shapes: g.params.map((p) => p.shape),
          })),
          hypers[0]!,
        );
      let opt = make();
      return {
        barriers: {},
        step(grads) {
          const converted: Record<string, FloatArray | null> = {};
          for (const [name, g] of Object.entries(grads)) converted[name] = g && Array_.from(g);
          opt.step(converted);
          return undefined;
        },
        setLearningRate(lr, group) {
          opt.setLearningRate(lr, group);
          return undefined;
        },
        exportState: () => opt.exportState(),
        importState(bytes) {
          opt.importState(bytes);
          return undefined;
        },
        async renew() {
          opt = make();
        },
        async read() {
          const out: Reading = { params: new Map(), buffers: new Map() };
          for (const [name, p] of params) {
            out.params.set(name, p.slice());
            out.buffers.set(name, opt.buffer(name)?.slice() ?? null);
          }
          return out;
        },
        async close() {},
        hyperparams: () => opt.paramGroups.map((g) => g.hyperparams),
      };
    },
  };
}

export type TfjsBackend = 'cpu' | 'wasm' | 'webgpu';

let tfjsSessions = 0;

/**
 * @accsgd/tfjs's AccSGDOptimizer with `groups` (state names = the problem's names) over
 * tf.Variables, on one tfjs backend. Steps go through applyGradientsAsync, the gradient tensors
 * disposed as soon as the call returns (the optimizer keeps what it needs).
 */
export async function tfjsDriver(backend: TfjsBackend): Promise<Driver> {
  const tf = await import('@tensorflow/tfjs-core');
  const { AccSGDOptimizer: Optimizer } = await import('@accsgd/tfjs');
  if (backend === 'cpu') await import('@tensorflow/tfjs-backend-cpu');
  else if (backend === 'wasm') await import('@tensorflow/tfjs-backend-wasm');
  else await import('@tensorflow/tfjs-backend-webgpu'); // after findNodeWebGPU() set navigator.gpu
  const select = async () => {
    if (tf.getBackend() !== backend && !(await tf.setBackend(backend)))
      throw new Error(`tfjs backend "${backend}" failed to initialise`);
    await tf.ready();
  };
  await select();
  return {
    name: `tfjs/${backend}`,
    exact: backend !== 'webgpu',
    async open(problem) {
      await select();
      const prefix = `cross-adapter/${tfjsSessions++}/`;
      const hypers = groupsInput(problem);
      const make = () =>
        new Optimizer({
          lr: hypers[0]!.lr,
          groups: problem.groups.map((g, i) => ({
            ...hypers[i]!,
            params: g.params.map((p) => prefix + p.name),
            names: g.params.map((p) => p.name),
          })),
        });
      let opt: AccSGDOptimizer = make();
      const variables = new Map<string, tfTypes.Variable>();
      for (const p of allParams(problem)) {
        const init = tf.tensor(p.init, p.shape, 'float32');
        variables.set(p.name, tf.variable(init, true, prefix + p.name));
        init.dispose();
      }
      const data = async (t: tfTypes.Tensor) => Float32Array.from((await t.data()) as Float32Array);
      return {
        // Where tfjs cannot read back synchronously (webgpu in Node), setLearningRate and
        // importState throw while a step is pending (they would have to complete it first).
        barriers: backend === 'webgpu' ? { lr: 'steps', import: 'steps' } : {},
        step(grads) {
          const named: Record<string, tfTypes.Tensor | null> = {};
          for (const [name, g] of Object.entries(grads))
            named[prefix + name] = g && tf.tensor(g, variables.get(name)!.shape, 'float32');
          try {
            return opt.applyGradientsAsync(named as tfTypes.NamedTensorMap);
          } finally {
            tf.dispose(Object.values(named).filter((t): t is tfTypes.Tensor => t !== null));
          }
        },
        setLearningRate(lr, group) {
          opt.setLearningRate(lr, group);
          return undefined;
        },
        exportState: () => opt.exportState(),
        importState(bytes) {
          opt.importState(bytes);
          return undefined;
        },
        async renew() {
          opt.dispose();
          opt = make();
        },
        async read() {
          const out: Reading = { params: new Map(), buffers: new Map() };
          for (const [name, v] of variables) {
            out.params.set(name, await data(v));
            const b = opt.momentumBuffer(prefix + name);
            out.buffers.set(name, b && (await data(b)));
          }
          return out;
        },
        async close() {
          opt.dispose();
          for (const v of variables.values()) v.dispose();
        },
      };
    },
  };
}

/**
 * @accsgd/webgpu-kernel's WebGPUAccSGD, one createFlatStorage per group, on `device`. Gradients
 * are written into the group's flat grads buffer right before step(): a step reads that buffer
 * when it runs, so a step may not be issued while an earlier one is pending (barrier 'steps').
 */
export async function webgpuKernelDriver(device: GPUDevice): Promise<Driver> {
  const { createFlatStorage, WebGPUAccSGD: Optimizer } = await import('@accsgd/webgpu-kernel');
  return {
    name: 'webgpu-kernel',
    exact: false,
    async open(problem) {
      const storages: FlatStorage[] = problem.groups.map((g) =>
        createFlatStorage(
          device,
          g.params.map((p) => ({ name: p.name, shape: p.shape })),
        ),
      );
      const storageOf = new Map<string, FlatStorage>();
      problem.groups.forEach((g, i) => {
        for (const p of g.params) {
          storageOf.set(p.name, storages[i]!);
          storages[i]!.write(p.name, 'params', p.init);
        }
      });
      const hypers = groupsInput(problem);
      const make = () =>
        Optimizer.create(
          device,
          storages.map((s, i) => ({ ...hypers[i]!, params: s.params, grads: s.grads, segments: s.segments })),
          hypers[0]!,
        );
      let opt: WebGPUAccSGD = await make();
      return {
        barriers: { step: 'steps' },
        step(grads) {
          const present: Record<string, boolean> = {};
          for (const [name, g] of Object.entries(grads)) {
            present[name] = g !== null;
            if (g) storageOf.get(name)!.write(name, 'grads', g);
          }
          return opt.step(present);
        },
        setLearningRate(lr, group) {
          opt.setLearningRate(lr, group);
          return undefined;
        },
        exportState: () => opt.exportState(),
        importState: (bytes) => opt.importState(bytes),
        async renew() {
          opt.destroy();
          opt = await make();
        },
        async read() {
          const { params, buffers } = await opt.read();
          return { params: new Map(params), buffers: new Map(buffers) };
        },
        async close() {
          opt.destroy();
          for (const s of storages) s.destroy();
        },
      };
    },
  };
}

export type OnnxRuntime = 'node-cpu' | 'web-wasm' | 'node-webgpu';

/** @accsgd/onnx-training's OnnxAccSGD on one ONNX Runtime and execution provider. */
export async function onnxDriver(runtime: OnnxRuntime): Promise<Driver> {
  const { OnnxAccSGD: Optimizer } = await import('@accsgd/onnx-training');
  const ort = runtime === 'web-wasm' ? await import('onnxruntime-web') : await import('onnxruntime-node');
  const executionProvider = runtime === 'node-cpu' ? 'cpu' : runtime === 'web-wasm' ? 'wasm' : 'webgpu';
  return {
    name: `onnx-training/${runtime}`,
    exact: runtime !== 'node-webgpu',
    async open(problem) {
      const hypers = groupsInput(problem);
      const make = (values: (name: string) => Float32Array) =>
        Optimizer.create(
          problem.groups.map((g, i) => ({
            ...hypers[i]!,
            params: g.params.map((p) => ({ name: p.name, shape: p.shape, data: values(p.name) })),
          })),
          hypers[0]!,
          {
            ort: ort as never,
            executionProvider,
            strictPlacement: executionProvider === 'webgpu',
          },
        );
      const init = new Map(allParams(problem).map((p) => [p.name, p.init]));
      let opt: OnnxAccSGD = await make((n) => init.get(n)!);
      return {
        // setLearningRate is synchronous and refuses to overtake pending calls.
        barriers: { lr: 'all' },
        step: (grads) => opt.step(grads),
        setLearningRate(lr, group) {
          opt.setLearningRate(lr, group);
          return undefined;
        },
        exportState: () => opt.exportState(),
        importState: (bytes) => opt.importState(bytes),
        async renew() {
          const { params } = await opt.read();
          await opt.dispose();
          opt = await make((n) => params.get(n)!);
        },
        async read() {
          const { params, buffers } = await opt.read();
          return { params: new Map(params), buffers: new Map(buffers) };
        },
        close: () => opt.dispose(),
      };
    },
  };
}
