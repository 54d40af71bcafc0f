import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Hyperparams, resolveHyperparams } from './hyperparams.js';
import { AccSGD } from './optimizer.js';
import { referenceStep } from './reference.js';

/**
 * Property: random sequences of step (with skipped parameters), setLearningRate, exportState and
 * importState across groups, on the CPU optimizer, agree with a straightforward model of the
 * bookkeeping (step counts, hyperparameters, which parameters have a buffer) and with the float64
 * reference step for values; and a run that exports and re-imports into a fresh optimizer at
 * random points writes byte-identical state files to an uninterrupted one.
 */

const hyper = fc
  .record({
    lr: fc.double({ min: 0, max: 1, noNaN: true }),
    kappa: fc.double({ min: 1, max: 1e5, noNaN: true }),
    xiFraction: fc.double({ min: 0.01, max: 1, noNaN: true }),
    smallConst: fc.double({ min: 0.05, max: 1, noNaN: true }),
    weightDecay: fc.oneof(fc.constant(0), fc.double({ min: 0, max: 0.1, noNaN: true })),
  })
  .map(({ xiFraction, ...h }) => ({ ...h, xi: (xiFraction * h.kappa) / (h.smallConst * h.smallConst) }));

type Op =
  | { kind: 'step'; present: boolean[] }
  | { kind: 'lr'; group: number | null; lr: number }
  | { kind: 'export' }
  | { kind: 'import'; which: number }
  | { kind: 'restart' };

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('step' as const),
      present: fc.array(fc.boolean(), { minLength: 8, maxLength: 8 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('lr' as const),
      group: fc.option(fc.integer({ min: 0, max: 2 })),
      lr: fc.double({ min: 0, max: 1, noNaN: true }),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'export' as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('import' as const), which: fc.nat() }) },
  { weight: 2, arbitrary: fc.constant({ kind: 'restart' as const }) },
);

interface Model {
  params: number[][];
  buffers: (number[] | null)[];
  groups: { h: Hyperparams; step: number }[];
}

describe('bookkeeping: steps, learning rates, exports and imports', () => {
  it('match a reference model, and survive export / re-import into a fresh optimizer byte for byte', () => {
    fc.assert(
      fc.property(
        fc.array(hyper, { minLength: 1, maxLength: 3 }),
        fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 8 }),
        fc.array(op, { minLength: 1, maxLength: 30 }),
        fc.infiniteStream(fc.double({ min: -10, max: 10, noNaN: true })),
        (groupHypers, lengths, ops, values) => {
          const vals = values[Symbol.iterator]();
          const next = () => vals.next().value as number;
          const G = groupHypers.length;
          // Parameters in group order (the optimizer's index order): parameter k in group k % G.
          const groupOf = lengths.map((_, k) => k % G);
          const order = groupHypers.flatMap((_, g) =>
            lengths.map((_, k) => k).filter((k) => groupOf[k] === g),
          );
          const n = order.map((k) => lengths[k]!);
          const group = order.map((k) => groupOf[k]!);
          const init = n.map((len) => Array.from({ length: len }, next));
          const open = (params: Float64Array[]) =>
            new AccSGD(
              groupHypers.map((h, g) => ({
                ...h,
                params: params.filter((_, i) => group[i] === g),
                names: order.map((_, i) => `p${i}`).filter((_, i) => group[i] === g),
              })),
              groupHypers[0]!,
            );
          const paramsA = init.map((p) => Float64Array.from(p));
          let paramsB = init.map((p) => Float64Array.from(p));
          const a = open(paramsA);
          let b = open(paramsB);
          const model: Model = {
            params: init.map((p) => [...p]),
            buffers: n.map(() => null),
            groups: groupHypers.map((h) => ({ h: resolveHyperparams(h), step: 0 })),
          };
          const exportsA: Uint8Array[] = [];
          const exportsB: Uint8Array[] = [];
          const saved: Model[] = [];

          for (const o of ops) {
            if (o.kind === 'step') {
              const grads = n.map((len, i) =>
                o.present[i] ? Float64Array.from({ length: len }, next) : null,
              );
              expect(a.step(grads)).toEqual({ applied: true });
              expect(b.step(grads)).toEqual({ applied: true });
              const touched = new Set<number>();
              grads.forEach((g, i) => {
                if (!g) return;
                const r = referenceStep(
                  model.params[i]!,
                  model.buffers[i] ?? null,
                  g,
                  model.groups[group[i]!]!.h,
                );
                model.params[i] = [...r.param];
                model.buffers[i] = [...r.buffer];
                touched.add(group[i]!);
              });
              for (const g of touched) model.groups[g]!.step++;
            } else if (o.kind === 'lr') {
              const g = o.group === null ? undefined : o.group % G;
              a.setLearningRate(o.lr, g);
              b.setLearningRate(o.lr, g);
              model.groups.forEach((m, i) => {
                if (g === undefined || g === i) m.h = { ...m.h, lr: o.lr };
              });
            } else if (o.kind === 'export') {
              exportsA.push(a.exportState());
              exportsB.push(b.exportState());
              expect(exportsB.at(-1)).toEqual(exportsA.at(-1));
              saved.push(structuredClone(model));
            } else if (o.kind === 'import') {
              if (saved.length === 0) continue;
              const k = o.which % saved.length;
              a.importState(exportsA[k]!);
              b.importState(exportsB[k]!);
              // The file holds buffers, hyperparameters and steps; parameters stay as they are.
              model.buffers = structuredClone(saved[k]!.buffers);
              model.groups = structuredClone(saved[k]!.groups);
            } else {
              const bytes = b.exportState();
              paramsB = paramsB.map((p) => Float64Array.from(p));
              b = open(paramsB);
              b.importState(bytes);
            }
            // Bookkeeping, exactly.
            const expected = model.groups.map((m, g) => ({
              hyperparams: m.h,
              params: order.map((_, i) => `p${i}`).filter((_, i) => group[i] === g),
              step: m.step,
            }));
            expect(a.paramGroups).toEqual(expected);
            expect(b.paramGroups).toEqual(expected);
            n.forEach((_, i) => {
              expect(a.buffer(i) === null).toBe(model.buffers[i] === null);
              expect(b.buffer(i) === null).toBe(model.buffers[i] === null);
            });
          }
          // The two runs: identical state files and parameters, bit for bit.
          expect(b.exportState()).toEqual(a.exportState());
          paramsA.forEach((p, i) => expect(paramsB[i]).toEqual(p));
          // Values: the float64 reference, to 1e-12 relative.
          model.params.forEach((truth, i) => {
            const buffer = model.buffers[i] ?? [];
            const scale = Math.max(1e-300, ...truth.map(Math.abs), ...buffer.map(Math.abs));
            truth.forEach((t, j) => expect(Math.abs(paramsA[i]![j]! - t) / scale).toBeLessThan(1e-12));
            buffer.forEach((t, j) => expect(Math.abs(a.buffer(i)![j]! - t) / scale).toBeLessThan(1e-12));
          });
        },
      ),
      { numRuns: 200, seed: 20261202 },
    );
  });
});
