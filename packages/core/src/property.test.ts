import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { resolveHyperparams } from './hyperparams.js';
import { AccSGD } from './optimizer.js';

/**
 * Property: for random shapes, valid hyperparameters, gradient patterns with missing tensors and
 * learning-rate changes, the CPU optimizer (fused, float64) equals an independent float64
 * evaluation of the spec's formula, written here from SPEC.md, to 1e-12 relative.
 */

function independentStep(
  p: number[],
  buf: number[] | null,
  g: number[],
  h: ReturnType<typeof resolveHyperparams>,
) {
  const largeLr = (h.lr * h.kappa) / h.smallConst;
  const beta = (h.smallConst * h.smallConst * h.xi) / h.kappa;
  const zeta = h.smallConst / (h.smallConst + beta);
  const gg = g.map((gi, i) => gi + h.weightDecay * p[i]!);
  const b0 = buf ?? p;
  const nb = b0.map((bi, i) => beta * ((1 / beta - 1) * bi - largeLr * gg[i]! + p[i]!));
  const np = p.map((pi, i) => zeta * (pi - h.lr * gg[i]!) + (1 - zeta) * nb[i]!);
  return { p: np, buf: nb };
}

const hyper = fc
  .record({
    lr: fc.double({ min: 0, max: 1, noNaN: true }),
    kappa: fc.double({ min: 1, max: 1e5, noNaN: true }),
    xiFraction: fc.double({ min: 0.01, max: 1, noNaN: true }),
    smallConst: fc.double({ min: 0.05, max: 1, noNaN: true }),
    weightDecay: fc.oneof(fc.constant(0), fc.double({ min: 0, max: 0.1, noNaN: true })),
  })
  .map(({ xiFraction, ...h }) => ({ ...h, xi: (xiFraction * h.kappa) / (h.smallConst * h.smallConst) }));

const value = fc.double({ min: -10, max: 10, noNaN: true });

describe('CPU optimizer = independent float64 evaluation', () => {
  it('holds for random problems', () => {
    fc.assert(
      fc.property(
        fc.array(hyper, { minLength: 1, maxLength: 3 }),
        fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 5 }),
        fc.integer({ min: 1, max: 8 }),
        fc.infiniteStream(value),
        fc.infiniteStream(fc.boolean()),
        fc.infiniteStream(fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { freq: 4 })),
        (groupHypers, lengths, steps, values, present, lrChanges) => {
          const vals = values[Symbol.iterator]();
          const pres = present[Symbol.iterator]();
          const lrs = lrChanges[Symbol.iterator]();
          const next = () => vals.next().value as number;
          const groupOf = lengths.map((_, i) => i % groupHypers.length);
          const truth = lengths.map((n) => Array.from({ length: n }, next));
          const params = truth.map((t) => Float64Array.from(t));
          const buffers: (number[] | null)[] = lengths.map(() => null);
          const hs = groupHypers.map((h) => resolveHyperparams(h));
          const opt = new AccSGD(
            groupHypers.map((h, gi) => ({ ...h, params: params.filter((_, i) => groupOf[i] === gi) })),
            groupHypers[0]!,
          );
          const order = groupHypers.flatMap((_, gi) =>
            params.map((_, i) => i).filter((i) => groupOf[i] === gi),
          );
          for (let s = 0; s < steps; s++) {
            hs.forEach((h, gi) => {
              const lr = lrs.next().value as number | null;
              if (lr !== null) {
                opt.setLearningRate(lr, gi);
                hs[gi] = { ...h, lr };
              }
            });
            const grads = lengths.map((n) =>
              pres.next().value ? Float64Array.from({ length: n }, next) : null,
            );
            opt.step(order.map((i) => grads[i]));
            grads.forEach((g, i) => {
              if (!g) return;
              const r = independentStep(truth[i]!, buffers[i]!, [...g], hs[groupOf[i]!]!);
              truth[i] = r.p;
              buffers[i] = r.buf;
            });
          }
          order.forEach((i, k) => {
            const scale = Math.max(1e-300, ...truth[i]!.map(Math.abs), ...(buffers[i] ?? []).map(Math.abs));
            truth[i]!.forEach((t, j) => expect(Math.abs(params[i]![j]! - t) / scale).toBeLessThan(1e-12));
            const buf = opt.buffer(k);
            if (buffers[i] === null) expect(buf).toBeNull();
            else buffers[i]!.forEach((t, j) => expect(Math.abs(buf![j]! - t) / scale).toBeLessThan(1e-12));
          });
        },
      ),
      { numRuns: 300, seed: 20261128 },
    );
  });
});
