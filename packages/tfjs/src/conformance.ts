import {
  AccSGDConfigError,
  type ConformanceAdapter,
  type ConformanceProblem,
  type ConformanceSession,
  type ConformanceSnapshot,
} from '@accsgd/core';
import * as tf from '@tensorflow/tfjs-core';
import { AccSGDOptimizer } from './accsgd-optimizer.js';

export type TfjsBackendName = 'cpu' | 'wasm' | 'webgl' | 'webgpu';

export interface TfjsConformanceOptions {
  /** The tfjs backend to run on; its package (@tensorflow/tfjs-backend-<name>) must be installed. Default 'cpu'. */
  backend?: TfjsBackendName;
  /** false: run the composite fallback (tfjs ops) instead of the fused kernel. Default true. */
  fused?: boolean;
  /**
   * How each step is taken: 'applyGradientsAsync' (default), or 'applyGradients', the synchronous
   * call model.fit and minimize() make, followed by verifySteps() so that a step the device
   * rejects later (webgpu) is reported by the step that made it.
   */
  api?: 'applyGradientsAsync' | 'applyGradients';
}

const APIS = ['applyGradientsAsync', 'applyGradients'] as const;
const OPTION_KEYS = ['backend', 'fused', 'api'];

const BACKENDS: readonly TfjsBackendName[] = ['cpu', 'wasm', 'webgl', 'webgpu'];

/**
 * Loads a backend package on demand, so importing this module registers nothing, and
 * tfjs-backend-webgpu is only evaluated after the caller has installed `navigator.gpu` (in Node,
 * @accsgd/conformance's findNodeWebGPU() does). Literal specifiers, so bundlers include them.
 */
async function loadBackend(name: TfjsBackendName): Promise<void> {
  if (name === 'cpu') await import('@tensorflow/tfjs-backend-cpu');
  else if (name === 'wasm') await import('@tensorflow/tfjs-backend-wasm');
  else if (name === 'webgl') await import('@tensorflow/tfjs-backend-webgl');
  else {
    await provideNodeWebGPU();
    await import('@tensorflow/tfjs-backend-webgpu');
  }
}

/**
 * In Node there is no navigator.gpu: @accsgd/conformance's findNodeWebGPU() installs one from the
 * `webgpu` package (Dawn), as the conformance CLI's user has it. The specifier is a variable so
 * that browser bundles leave it out.
 */
async function provideNodeWebGPU(): Promise<void> {
  if ((globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu) return;
  const specifier = '@accsgd/conformance';
  const { findNodeWebGPU } = (await import(/* @vite-ignore */ specifier)) as {
    findNodeWebGPU(): Promise<{ available: boolean; reason?: string }>;
  };
  const found = await findNodeWebGPU();
  if (!found.available) throw new Error(`tfjs backend "webgpu": no WebGPU here (${found.reason})`);
}

let sessions = 0;

/**
 * The conformance adapter: `conformanceAdapter({ backend: 'webgpu' })`. Each session makes one
 * tf.Variable per problem parameter (named `accsgd-conformance/<n>/<param>` so sessions never
 * collide), one AccSGDOptimizer with a group per problem group whose state-file names are the
 * problem's names, and disposes all of it on close.
 */
export async function conformanceAdapter(options: TfjsConformanceOptions = {}): Promise<ConformanceAdapter> {
  for (const key of Object.keys(options))
    if (!OPTION_KEYS.includes(key))
      throw new AccSGDConfigError(
        key,
        (options as Record<string, unknown>)[key],
        `one of ${OPTION_KEYS.join(', ')}`,
        `is not an option of @accsgd/tfjs's conformance adapter (expected ${OPTION_KEYS.join(', ')})`,
      );
  const backend = options.backend ?? 'cpu';
  const fused = options.fused ?? true;
  const api = options.api ?? 'applyGradientsAsync';
  if (!BACKENDS.includes(backend))
    throw new AccSGDConfigError('backend', backend, `one of ${BACKENDS.join(', ')}`);
  if (!APIS.includes(api)) throw new AccSGDConfigError('api', api, `one of ${APIS.join(', ')}`);
  await loadBackend(backend);
  if (!(await tf.setBackend(backend))) throw new Error(`tfjs backend "${backend}" failed to initialise`);
  await tf.ready();
  return {
    name: `tfjs/${backend}${fused ? '' : '/composite'}${api === 'applyGradients' ? '/sync' : ''}`,
    dtype: 'float32',
    async open(problem: ConformanceProblem): Promise<ConformanceSession> {
      if (tf.getBackend() !== backend) await tf.setBackend(backend);
      const prefix = `accsgd-conformance/${sessions++}/`;
      // The optimizer first: invalid hyperparameters throw before any variable exists.
      const optimizer = new AccSGDOptimizer({
        lr: problem.groups[0]!.hyperparams.lr,
        fused,
        groups: problem.groups.map((g) => ({
          ...g.hyperparams,
          params: g.params.map((n) => prefix + n),
          names: g.params,
        })),
      });
      const variables = new Map<string, tf.Variable>();
      for (const [name, { shape, init }] of Object.entries(problem.params)) {
        const value = tf.tensor(Float32Array.from(init), shape, 'float32');
        variables.set(name, tf.variable(value, true, prefix + name));
        value.dispose();
      }
      const read = async (t: tf.Tensor | null) =>
        t ? Float64Array.from((await t.data()) as Float32Array) : null;
      return {
        async step(grads) {
          const named: tf.NamedTensorMap = {};
          try {
            for (const [name, values] of Object.entries(grads)) {
              if (!values) continue;
              const size = variables.get(name)?.size;
              // A gradient of the wrong length keeps its own length, for the optimizer to reject.
              const shape = size === values.length ? variables.get(name)!.shape : [values.length];
              named[prefix + name] = tf.tensor(Float32Array.from(values), shape, 'float32');
            }
            if (api === 'applyGradients') {
              optimizer.applyGradients(named);
              await optimizer.verifySteps();
            } else {
              await optimizer.applyGradientsAsync(named);
            }
          } finally {
            tf.dispose(Object.values(named));
          }
        },
        async setLearningRate(lr, group) {
          optimizer.setLearningRate(lr, group);
        },
        async read(): Promise<ConformanceSnapshot> {
          const snapshot: ConformanceSnapshot = { params: {}, buffers: {} };
          for (const [name, variable] of variables) {
            snapshot.params[name] = (await read(variable))!;
            snapshot.buffers[name] = await read(optimizer.momentumBuffer(prefix + name));
          }
          return snapshot;
        },
        exportState: () => optimizer.exportState(),
        async importState(bytes) {
          optimizer.importState(bytes);
        },
        async close() {
          optimizer.dispose();
          for (const variable of variables.values()) variable.dispose();
        },
        async leastSquaresGradient(name, x, y) {
          const variable = variables.get(name);
          if (!variable) throw new AccSGDConfigError('name', name, 'a parameter of this session');
          const n = variable.size;
          const rows = y.length;
          // The variable itself is the matMul's weights operand, as in a Dense layer: a backend
          // that caches work per weights tensor (tfjs-backend-wasm packs them) is exercised here.
          const gradient = tf.tidy(() => {
            const X = tf.tensor2d(Float32Array.from(x), [rows, n]);
            const residual = tf.sub(
              tf.matMul(X, tf.reshape(variable, [n, 1])),
              tf.tensor2d(Float32Array.from(y), [rows, 1]),
            );
            return tf.matMul(X, residual, true, false);
          });
          try {
            return Float64Array.from((await gradient.data()) as Float32Array);
          } finally {
            gradient.dispose();
          }
        },
      };
    },
  };
}
