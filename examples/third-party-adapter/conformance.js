// A minimal AccSGD adapter on plain Float32Arrays: SPEC.md §5 of @accsgd/core, closed loop (§5.1)
// included. The math comes from @accsgd/core; this file only applies it in float32.
import {
  AccSGDConfigError,
  AccSGDGradientError,
  assertFloat32StateGroups,
  assertStateFits,
  decodeState,
  encodeState,
  fusedCoefficients,
  resolveHyperparams,
  validateHyperparams,
} from '@accsgd/core';

const f = Math.fround;

/** Defaults filled in, every field checked, unknown keys and float32-unsafe values rejected. */
function hyperparams(input) {
  return validateHyperparams(resolveHyperparams(input), { precision: 'float32' });
}

export function conformanceAdapter() {
  return {
    name: 'example/float32',
    dtype: 'float32',
    async open(problem) {
      const params = new Map(); // name -> Float32Array: the live parameters
      const buffers = new Map(); // name -> Float32Array, or null before the first gradient
      const shapes = new Map();
      for (const [name, { shape, init }] of Object.entries(problem.params)) {
        params.set(name, Float32Array.from(init));
        buffers.set(name, null);
        shapes.set(name, shape);
      }
      const groups = problem.groups.map((g) => ({
        hyperparams: hyperparams(g.hyperparams), // AccSGDConfigError for bad input
        params: [...g.params],
        step: 0,
      }));

      return {
        async step(grads) {
          // Check everything before changing anything; copy, never mutate, the caller's arrays.
          const checked = new Map();
          for (const [name, grad] of Object.entries(grads)) {
            const param = params.get(name);
            if (!param) throw new AccSGDGradientError(name, 'no parameter has this name');
            if (grad === null || grad === undefined) continue;
            if (grad.length !== param.length)
              throw new AccSGDGradientError(name, `has ${grad.length} values; expected ${param.length}`);
            const g = Float32Array.from(grad);
            const bad = g.findIndex((v) => !Number.isFinite(v));
            if (bad >= 0) throw new AccSGDGradientError(name, `element ${bad} is ${g[bad]}`);
            checked.set(name, g);
          }
          for (const group of groups) {
            const c = fusedCoefficients(group.hyperparams); // six float64 multipliers (SPEC §2.1)
            const [c0, c1, c2, c3, c4, c5] = [
              c.bufFromBuf,
              c.bufFromParam,
              c.bufFromGrad,
              c.paramFromParam,
              c.paramFromGrad,
              c.paramFromBuf,
            ].map(f); // rounded to float32 once, as a GPU uniform would be
            let stepped = false;
            for (const name of group.params) {
              const g = checked.get(name);
              if (!g) continue; // no gradient: parameter and buffer unchanged
              const p = params.get(name);
              const buf = buffers.get(name) ?? Float32Array.from(p); // lazy: a copy of p
              for (let i = 0; i < p.length; i++) {
                const b = f(f(f(c0 * buf[i]) + f(c1 * p[i])) + f(c2 * g[i]));
                p[i] = f(f(f(c3 * p[i]) + f(c4 * g[i])) + f(c5 * b));
                buf[i] = b;
              }
              buffers.set(name, buf);
              stepped = true;
            }
            if (stepped) group.step += 1; // a group counts steps in which a member had a gradient
          }
        },

        async setLearningRate(lr, group) {
          const target = groups[group];
          if (!Number.isInteger(group) || !target)
            throw new AccSGDConfigError('group', group, `an index below ${groups.length}`);
          target.hyperparams = hyperparams({ ...target.hyperparams, lr });
        },

        async read() {
          const out = { params: {}, buffers: {} };
          for (const [name, p] of params) {
            out.params[name] = Float64Array.from(p);
            const buf = buffers.get(name);
            out.buffers[name] = buf ? Float64Array.from(buf) : null;
          }
          return out;
        },

        async exportState() {
          const state = { groups: groups.map((g) => ({ ...g, params: [...g.params] })), buffers: new Map() };
          for (const [name, buf] of buffers)
            if (buf) state.buffers.set(name, { shape: shapes.get(name), data: buf });
          return encodeState(state);
        },

        async importState(bytes) {
          // decodeState: a well-formed state file; assertStateFits: this session's groups and shapes.
          const state = assertStateFits(decodeState(bytes), { groups, shapes });
          assertFloat32StateGroups(state.groups); // hyperparameters usable in float32, or AccSGDStateError
          // Everything checked: now apply.
          state.groups.forEach((g, i) => {
            groups[i].hyperparams = g.hyperparams;
            groups[i].step = g.step;
          });
          for (const name of params.keys()) {
            const saved = state.buffers.get(name);
            buffers.set(name, saved ? Float32Array.from(saved.data) : null);
          }
        },

        async close() {},

        // The closed loop (SPEC §5.1): X^T (X p - y) from the live parameter, in float32.
        async leastSquaresGradient(name, x, y) {
          const p = params.get(name);
          if (!p) throw new AccSGDConfigError('name', name, 'a parameter of this session');
          const n = p.length;
          const out = new Float32Array(n);
          for (let r = 0; r < y.length; r++) {
            let residual = 0;
            for (let j = 0; j < n; j++) residual = f(residual + f(f(x[r * n + j]) * p[j]));
            residual = f(residual - f(y[r]));
            for (let j = 0; j < n; j++) out[j] = f(out[j] + f(f(x[r * n + j]) * residual));
          }
          return Float64Array.from(out);
        },
      };
    },
  };
}
