import { leastSquaresGradient } from './closed-loop.js';
import type {
  ConformanceAdapter,
  ConformanceDType,
  ConformanceProblem,
  ConformanceSession,
} from './contract.js';
import { AccSGDConfigError } from './errors.js';
import type { FloatArray } from './fused-update.js';
import { AccSGD } from './optimizer.js';

/**
 * The CPU optimizer as a conformance adapter: `conformanceAdapter({ dtype: 'float32' | 'float64' })`.
 */
export function conformanceAdapter(options: { dtype?: ConformanceDType } = {}): ConformanceAdapter {
  const dtype = options.dtype ?? 'float32';
  if (dtype !== 'float32' && dtype !== 'float64')
    throw new AccSGDConfigError('dtype', dtype, '"float32" or "float64"');
  const Array_ = dtype === 'float64' ? Float64Array : Float32Array;
  return {
    name: `core/${dtype}`,
    dtype,
    async open(problem: ConformanceProblem): Promise<ConformanceSession> {
      const params = new Map<string, FloatArray>();
      for (const [name, { init }] of Object.entries(problem.params)) params.set(name, Array_.from(init));
      const optimizer = new AccSGD(
        problem.groups.map((g) => ({
          ...g.hyperparams,
          params: g.params.map((n) => params.get(n)!),
          names: g.params,
          shapes: g.params.map((n) => problem.params[n]!.shape),
        })),
        problem.groups[0]!.hyperparams,
      );
      return {
        async step(grads) {
          const converted: Record<string, FloatArray | null> = {};
          for (const [name, grad] of Object.entries(grads)) converted[name] = grad && Array_.from(grad);
          optimizer.step(converted);
        },
        async setLearningRate(lr, group) {
          optimizer.setLearningRate(lr, group);
        },
        async read() {
          const out = {
            params: {} as Record<string, Float64Array>,
            buffers: {} as Record<string, Float64Array | null>,
          };
          for (const [name, param] of params) {
            out.params[name] = Float64Array.from(param);
            const buffer = optimizer.buffer(name);
            out.buffers[name] = buffer && Float64Array.from(buffer);
          }
          return out;
        },
        async exportState() {
          return optimizer.exportState();
        },
        async importState(bytes) {
          optimizer.importState(bytes);
        },
        async close() {},
        async leastSquaresGradient(name, x, y) {
          // The CPU optimizer's "framework" is the arrays it updates in place: compute from them.
          const param = params.get(name);
          if (!param) throw new AccSGDConfigError('name', name, `a parameter of this session`);
          return leastSquaresGradient(x, param, y).gradient;
        },
      };
    },
  };
}
