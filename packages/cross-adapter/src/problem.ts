import { type Hyperparams, resolveHyperparams, validateHyperparams } from '@accsgd/core';
import fc from 'fast-check';

/** A parameter of the generated problem: name, shape and float32 initial values. */
export interface ParamSpec {
  name: string;
  shape: number[];
  init: Float32Array;
}

export interface GroupSpec {
  hyperparams: Hyperparams;
  params: ParamSpec[];
}

export interface Problem {
  groups: GroupSpec[];
}

/** How a parameter without a gradient is passed: a null entry, or no entry at all. */
export type Skip = 'null' | 'absent';

export type Op =
  /** grads[name]: the gradient, or how the parameter is skipped. */
  | { kind: 'step'; grads: Record<string, Float32Array | Skip> }
  /** group undefined: every group. */
  | { kind: 'lr'; lr: number; group: number | undefined }
  | { kind: 'export' }
  /** Imports the `which % exports so far`-th earlier export (a no-op before the first export). */
  | { kind: 'import'; which: number; fresh: boolean };

export interface Case {
  problem: Problem;
  ops: Op[];
}

export function allParams(problem: Problem): ParamSpec[] {
  return problem.groups.flatMap((g) => g.params);
}

export function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, d) => a * d, 1);
}

/** Float32 values, with the edge cases fast-check likes (-0, tiny and subnormal values) included. */
const values = (n: number) => fc.float32Array({ min: -4, max: 4, noNaN: true, minLength: n, maxLength: n });

/** A learning rate (float64, as a user would pass it): 0 now and then. */
const lrArb = fc.oneof(
  { weight: 1, arbitrary: fc.constant(0) },
  { weight: 6, arbitrary: fc.double({ min: 1e-4, max: 0.5, noNaN: true }) },
);

/** Valid hyperparameters whose float32 multipliers are valid too (SPEC §1). */
const hyperArb = fc
  .record({
    lr: lrArb,
    kappa: fc.double({ min: 1, max: 1e4, noNaN: true }),
    xiFraction: fc.double({ min: 0.01, max: 1, noNaN: true }),
    smallConst: fc.double({ min: 0.1, max: 1, noNaN: true }),
    weightDecay: fc.oneof(fc.constant(0), fc.double({ min: 0, max: 0.1, noNaN: true })),
  })
  .map(({ xiFraction, ...h }) =>
    resolveHyperparams({ ...h, xi: (xiFraction * h.kappa) / (h.smallConst * h.smallConst) }),
  )
  .filter((h) => {
    try {
      validateHyperparams(h, { precision: 'float32' });
      return true;
    } catch {
      return false;
    }
  });

const shapeArb = fc.oneof(
  fc.tuple(fc.integer({ min: 1, max: 12 })).map(([n]) => [n]),
  fc.tuple(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 5 })).map(([a, b]) => [a, b]),
);

const problemArb: fc.Arbitrary<Problem> = fc
  .array(fc.tuple(hyperArb, fc.array(shapeArb, { minLength: 1, maxLength: 3 })), {
    minLength: 1,
    maxLength: 3,
  })
  .chain((groups) => {
    const shapes = groups.flatMap(([, s]) => s);
    return fc.tuple(fc.constant(groups), fc.tuple(...shapes.map((s) => values(sizeOf(s)))));
  })
  .map(([groups, inits]) => {
    let k = 0;
    return {
      groups: groups.map(([hyperparams, shapes], g) => ({
        hyperparams,
        params: shapes.map((shape, i) => ({
          name: `g${g}/p${i}`,
          shape,
          init: inits[k++]!,
        })),
      })),
    };
  });

function opArb(problem: Problem): fc.Arbitrary<Op> {
  const params = allParams(problem);
  const step = fc
    .tuple(
      ...params.map((p) =>
        fc.oneof(
          { weight: 3, arbitrary: values(sizeOf(p.shape)) as fc.Arbitrary<Float32Array | Skip> },
          { weight: 1, arbitrary: fc.constantFrom<Skip>('null', 'absent') },
        ),
      ),
    )
    .map((gs): Op => ({ kind: 'step', grads: Object.fromEntries(params.map((p, i) => [p.name, gs[i]!])) }));
  const lr = fc
    .tuple(lrArb, fc.option(fc.integer({ min: 0, max: problem.groups.length - 1 }), { nil: undefined }))
    .map(([lr, group]): Op => ({ kind: 'lr', lr, group }))
    // Every group the change reaches must accept the rate (float32 multipliers, SPEC §1).
    .filter((op) => {
      if (op.kind !== 'lr') return false;
      const targets = op.group === undefined ? problem.groups : [problem.groups[op.group]!];
      return targets.every((g) => {
        try {
          validateHyperparams({ ...g.hyperparams, lr: op.lr }, { precision: 'float32' });
          return true;
        } catch {
          return false;
        }
      });
    });
  return fc.oneof(
    { weight: 6, arbitrary: step },
    { weight: 2, arbitrary: lr },
    { weight: 2, arbitrary: fc.constant<Op>({ kind: 'export' }) },
    {
      weight: 3,
      arbitrary: fc
        .tuple(fc.nat({ max: 7 }), fc.boolean())
        .map(([which, fresh]): Op => ({ kind: 'import', which, fresh })),
    },
  );
}

export const caseArb: fc.Arbitrary<Case> = problemArb.chain((problem) =>
  fc.array(opArb(problem), { minLength: 1, maxLength: 12 }).map((ops) => ({ problem, ops })),
);

/** The gradients of a step op as a record: null entries for 'null', no entry for 'absent'. */
export function gradRecord(op: Extract<Op, { kind: 'step' }>): Record<string, Float32Array | null> {
  const out: Record<string, Float32Array | null> = {};
  for (const [name, g] of Object.entries(op.grads)) {
    if (g === 'absent') continue;
    out[name] = g === 'null' ? null : g;
  }
  return out;
}

/** A short human-readable description of a case (for failure messages). */
export function describeCase(c: Case): string {
  const fmt = (a: Float32Array) => `[${Array.from(a).join(', ')}]`;
  const lines = c.problem.groups.map(
    (g, i) =>
      `group ${i}: ${JSON.stringify(g.hyperparams)}; ${g.params.map((p) => `${p.name} ${JSON.stringify(p.shape)} = ${fmt(p.init)}`).join('; ')}`,
  );
  for (const op of c.ops) {
    if (op.kind === 'step')
      lines.push(
        `step ${Object.entries(op.grads)
          .map(([n, g]) => `${n}: ${typeof g === 'string' ? g : fmt(g)}`)
          .join('; ')}`,
      );
    else if (op.kind === 'lr') lines.push(`setLearningRate(${op.lr}, ${op.group ?? 'all'})`);
    else if (op.kind === 'export') lines.push('exportState');
    else
      lines.push(`importState(export #${op.which} mod count${op.fresh ? ', into a fresh optimizer' : ''})`);
  }
  return lines.join('\n');
}

/** Counts what a case exercises, for the coverage line the test prints. */
export function tally(c: Case, into: Record<string, number>): void {
  const add = (key: string, n = 1) => {
    into[key] = (into[key] ?? 0) + n;
  };
  add('cases');
  if (c.problem.groups.length > 1) add('cases with 2-3 groups');
  let exports = 0;
  for (const op of c.ops) {
    if (op.kind === 'step') {
      add('steps');
      const gs = Object.values(op.grads);
      if (gs.some((g) => typeof g === 'string')) add('steps skipping a parameter');
      add('parameters skipped as null', gs.filter((g) => g === 'null').length);
      add('parameters skipped as absent', gs.filter((g) => g === 'absent').length);
      if (gs.every((g) => typeof g === 'string')) add('steps with no gradient at all');
    } else if (op.kind === 'lr')
      add(op.group === undefined ? 'setLearningRate (all groups)' : 'setLearningRate (one group)');
    else if (op.kind === 'export') {
      exports++;
      add('exportState');
    } else if (exports > 0)
      add(op.fresh ? 'importState into a fresh optimizer' : 'importState into the same optimizer');
  }
}
