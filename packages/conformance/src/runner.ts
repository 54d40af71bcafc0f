import {
  accuracyBound,
  accuracyFloor,
  type ConformanceAdapter,
  type ConformanceDType,
  type ConformanceProblem,
  type ConformanceSession,
  type ConformanceSnapshot,
  closedLoopBound,
  closedLoopError,
  decodeState,
  encodeState,
  HYPERPARAM_NAMES,
  leastSquaresGradient,
  relativeError,
  resolveHyperparams,
} from '@accsgd/core';
import type { GoldenCase } from './golden-format.js';
import { listGoldenCases, loadGoldenCase } from './golden-source.js';

/** One row of a conformance report. */
export interface CheckResult {
  check: string;
  passed: boolean;
  /** Largest relative error seen, for numeric checks. */
  maxError?: number;
  /** The bound it was held to at the step where the error was largest relative to its bound. */
  bound?: number;
  /** What failed, or what was checked. */
  detail: string;
  /** The check does not apply: the adapter lacks an optional part of the contract (detail says which). */
  skipped?: boolean;
  /** For a trajectory that left its bound: where it first did. */
  divergence?: Divergence;
  ms: number;
}

/** One parameter's value or momentum buffer compared with the truth after a step. */
export interface OutOfBound {
  tensor: string;
  quantity: 'param' | 'buffer';
  /** Relative error and the bound it exceeded; absent when the buffer is missing or present wrongly. */
  error?: number;
  bound?: number;
}

/**
 * The first step of a golden trajectory at which the adapter left the truth: the tensor and
 * quantity (parameter or momentum buffer) found first, and every other one out of bound at that step.
 */
export interface Divergence extends OutOfBound {
  /** The golden case the trajectory comes from (a bad-input check replays `defaults`). */
  case: string;
  /** 1-based step of the case. */
  step: number;
  /** Every parameter and buffer out of bound at that step, in the problem's order (the first is this). */
  outOfBound: OutOfBound[];
}

export interface ConformanceReport {
  adapter: string;
  dtype: ConformanceDType;
  passed: boolean;
  results: CheckResult[];
}

export interface RunOptions {
  /** Only checks whose name contains one of these strings. */
  only?: string[];
  /** Called after each check, e.g. for progress output. */
  onResult?: (result: CheckResult) => void;
}

/** A check: a name and a body that throws ConformanceFailure (or anything) to fail. */
export interface ConformanceCheck {
  name: string;
  run(
    adapter: ConformanceAdapter,
  ): Promise<{ maxError?: number; bound?: number; detail: string; skipped?: boolean }>;
}

export class ConformanceFailure extends Error {
  override readonly name = 'ConformanceFailure';
  constructor(
    message: string,
    readonly maxError?: number,
    readonly bound?: number,
    readonly divergence?: Divergence,
  ) {
    super(message);
  }
}

/** Tracks the worst error relative to its bound across a trajectory. */
class ErrorTracker {
  maxError = 0;
  bound = 0;
  private worstRatio = -1;
  /** floors[t - 1]: each parameter's accuracy floor after step t (SPEC §3). */
  private readonly floors: Map<string, number>[];
  private readonly caseName: string;
  constructor(
    private readonly dtype: ConformanceDType,
    c: GoldenCase,
  ) {
    this.caseName = c.name;
    // The floor of a tensor after step t uses the largest sum of |multipliers| its group has had
    // in steps 1..t, following the case's learning-rate changes.
    const hyper = c.problem.groups.map((g) => [g.hyperparams]);
    this.floors = c.steps.map((st) => {
      for (const { group, lr } of st.learningRates)
        hyper[group]!.push({ ...c.problem.groups[group]!.hyperparams, lr });
      const floors = new Map<string, number>();
      c.problem.groups.forEach((g, i) => {
        const floor = accuracyFloor(dtype, hyper[i]!);
        for (const n of g.params) floors.set(n, floor);
      });
      return floors;
    });
  }

  /**
   * Compares a snapshot with the truth after `step`; throws on a violation, naming the first one and
   * listing every parameter and buffer out of bound at that step (which of the two left its bound
   * is what points at the buffer update or the parameter update).
   */
  compare(got: ConformanceSnapshot, truth: ConformanceSnapshot, step: number, context: string): void {
    const bound = accuracyBound(this.dtype, step);
    const violations: { failure: ConformanceFailure; out: OutOfBound }[] = [];
    for (const [name, expected] of Object.entries(truth.params)) {
      const floor = this.floors[step - 1]?.get(name) ?? 0;
      const param = this.check(
        got.params[name],
        expected,
        bound,
        floor,
        `${context}, step ${step}, param "${name}"`,
      );
      if (param)
        violations.push({ failure: param, out: { tensor: name, quantity: 'param', ...numbers(param) } });
      const expectedBuffer = truth.buffers[name] ?? null;
      const gotBuffer = got.buffers[name] ?? null;
      if ((expectedBuffer === null) !== (gotBuffer === null)) {
        violations.push({
          failure: new ConformanceFailure(
            `${context}, step ${step}: buffer of "${name}" is ${gotBuffer ? 'present' : 'absent'}, expected ${expectedBuffer ? 'present' : 'absent (no gradient yet)'}`,
          ),
          out: { tensor: name, quantity: 'buffer' },
        });
      } else if (expectedBuffer && gotBuffer) {
        const buffer = this.check(
          gotBuffer,
          expectedBuffer,
          bound,
          floor,
          `${context}, step ${step}, buffer of "${name}"`,
        );
        if (buffer)
          violations.push({ failure: buffer, out: { tensor: name, quantity: 'buffer', ...numbers(buffer) } });
      }
    }
    const [first] = violations;
    if (!first) return;
    const others = violations.slice(1).map(({ out }) => describeOutOfBound(out));
    throw new ConformanceFailure(
      others.length
        ? `${first.failure.message}; also out of bound at step ${step}: ${others.join(', ')}`
        : first.failure.message,
      first.failure.maxError,
      first.failure.bound,
      { case: this.caseName, step, ...first.out, outOfBound: violations.map((v) => v.out) },
    );
  }

  /** The violation of one tensor against its truth, or undefined when within the bound. */
  private check(
    got: Float64Array | undefined,
    truth: Float64Array,
    bound: number,
    floor: number,
    where: string,
  ): ConformanceFailure | undefined {
    if (!got) return new ConformanceFailure(`${where}: missing from read()`);
    const error = relativeError(got, truth, floor);
    if (error / bound > this.worstRatio) {
      this.worstRatio = error / bound;
      this.maxError = error;
      this.bound = bound;
    }
    if (error <= bound) return undefined;
    return new ConformanceFailure(
      `${where}: relative error ${error.toExponential(3)} exceeds the bound ${bound.toExponential(3)} (${describeWorst(got, truth)})`,
      error,
      bound,
    );
  }
}

function numbers(failure: ConformanceFailure): { error?: number; bound?: number } {
  return failure.maxError === undefined ? {} : { error: failure.maxError, bound: failure.bound };
}

function describeOutOfBound(out: OutOfBound): string {
  const what = out.quantity === 'param' ? `param "${out.tensor}"` : `buffer of "${out.tensor}"`;
  return out.error === undefined ? `${what} (presence)` : `${what} (error ${out.error.toExponential(2)})`;
}

function describeWorst(got: Float64Array, truth: Float64Array): string {
  let worst = 0;
  for (let i = 1; i < truth.length; i++) {
    if (!(Math.abs(got[worst]! - truth[worst]!) >= Math.abs(got[i]! - truth[i]!))) worst = i;
  }
  return `worst at index ${worst}: got ${got[worst]}, expected ${truth[worst]}`;
}

async function withSession<T>(
  adapter: ConformanceAdapter,
  problem: ConformanceProblem,
  body: (s: ConformanceSession) => Promise<T>,
): Promise<T> {
  const session = await adapter.open(problem);
  try {
    return await body(session);
  } finally {
    await session.close();
  }
}

async function applyStep(session: ConformanceSession, step: GoldenCase['steps'][number]): Promise<void> {
  for (const { group, lr } of step.learningRates) await session.setLearningRate(lr, group);
  // The adapter gets its own copies, compared afterwards: SPEC §2 rule 3 (never mutate them).
  const grads = Object.fromEntries(
    Object.entries(step.grads).map(([name, grad]) => [name, grad && Float64Array.from(grad)]),
  );
  await session.step(grads);
  for (const [name, grad] of Object.entries(grads)) {
    const given = step.grads[name]!;
    if (grad && !sameValues(grad, given)) {
      throw new ConformanceFailure(
        `step() changed the caller's gradient of "${name}" (first at index ${firstDifference(grad, given)}: ${given[firstDifference(grad, given)]} became ${grad[firstDifference(grad, given)]}); SPEC §2 rule 3: gradients are never mutated (weight decay is added to a copy)`,
      );
    }
  }
}

function firstDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return i;
  return -1;
}

/** Runs steps [from, to) of a golden case, comparing after each. */
async function follow(
  session: ConformanceSession,
  c: GoldenCase,
  from: number,
  to: number,
  tracker: ErrorTracker,
  context: string,
) {
  for (let i = from; i < to; i++) {
    await applyStep(session, c.steps[i]!);
    tracker.compare(await session.read(), c.steps[i]!.expected, i + 1, context);
  }
}

function goldenCheck(c: GoldenCase): ConformanceCheck {
  return {
    name: `golden: ${c.name}`,
    async run(adapter) {
      const tracker = new ErrorTracker(adapter.dtype, c);
      await withSession(adapter, c.problem, (s) => follow(s, c, 0, c.steps.length, tracker, c.name));
      return {
        maxError: tracker.maxError,
        bound: tracker.bound,
        detail: `${c.steps.length} steps: ${c.description}`,
      };
    },
  };
}

/** Export mid-run, close, reopen on the current params, import, continue: same bound as uninterrupted. */
function resumeCheck(c: GoldenCase): ConformanceCheck {
  return {
    name: `resume: ${c.name}`,
    async run(adapter) {
      const tracker = new ErrorTracker(adapter.dtype, c);
      const split = Math.max(1, Math.floor(c.steps.length / 2));
      const { state, params } = await withSession(adapter, c.problem, async (s) => {
        await follow(s, c, 0, split, tracker, `${c.name} before export`);
        return { state: await s.exportState(), params: (await s.read()).params };
      });
      const reopened: ConformanceProblem = {
        groups: c.problem.groups,
        params: Object.fromEntries(
          Object.entries(c.problem.params).map(([n, p]) => [n, { shape: p.shape, init: params[n]! }]),
        ),
      };
      await withSession(adapter, reopened, async (s) => {
        await s.importState(state);
        await follow(s, c, split, c.steps.length, tracker, `${c.name} after import`);
      });
      return {
        maxError: tracker.maxError,
        bound: tracker.bound,
        detail: `exported after step ${split} of ${c.steps.length}, resumed in a new session`,
      };
    },
  };
}

function sameValues(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return false;
  return true;
}

function assertSnapshotsEqual(
  got: ConformanceSnapshot,
  expected: ConformanceSnapshot,
  context: string,
): void {
  for (const [name, value] of Object.entries(expected.params)) {
    if (!got.params[name] || !sameValues(got.params[name]!, value))
      throw new ConformanceFailure(`${context}: param "${name}" changed`);
    const buffer = expected.buffers[name] ?? null;
    const gotBuffer = got.buffers[name] ?? null;
    if (
      (buffer === null) !== (gotBuffer === null) ||
      (buffer && gotBuffer && !sameValues(buffer, gotBuffer))
    ) {
      throw new ConformanceFailure(`${context}: buffer of "${name}" changed`);
    }
  }
}

/** The state file holds exactly the session's buffers and groups, and survives import into a fresh session. */
function stateRoundTripCheck(c: GoldenCase): ConformanceCheck {
  return {
    name: `state file: round trip (${c.name})`,
    async run(adapter) {
      const steps = Math.min(c.steps.length, 6);
      const { bytes, snapshot } = await withSession(adapter, c.problem, async (s) => {
        for (let i = 0; i < steps; i++) await applyStep(s, c.steps[i]!);
        return { bytes: await s.exportState(), snapshot: await s.read() };
      });
      const state = decodeState(bytes);
      const expectedLrs = lrsAfter(c, steps);
      if (state.groups.length !== c.problem.groups.length) {
        throw new ConformanceFailure(
          `state has ${state.groups.length} groups, expected ${c.problem.groups.length}`,
        );
      }
      state.groups.forEach((g, i) => {
        const wanted = c.problem.groups[i]!;
        if (
          !sameValues(
            g.params.slice().sort() as unknown as number[],
            wanted.params.slice().sort() as unknown as number[],
          )
        ) {
          throw new ConformanceFailure(`group ${i} lists [${g.params}], expected [${wanted.params}]`);
        }
        const expected = resolveHyperparams({ ...wanted.hyperparams, lr: expectedLrs[i]! });
        for (const key of HYPERPARAM_NAMES) {
          if (g.hyperparams[key] !== expected[key]) {
            throw new ConformanceFailure(
              `group ${i} has ${key} ${g.hyperparams[key]}, expected ${expected[key]}`,
            );
          }
        }
        const stepsTaken = c.steps
          .slice(0, steps)
          .filter((st) => wanted.params.some((n) => st.grads[n])).length;
        if (g.step !== stepsTaken)
          throw new ConformanceFailure(`group ${i} has step ${g.step}, expected ${stepsTaken}`);
      });
      for (const [name, buffer] of Object.entries(snapshot.buffers)) {
        const stored = state.buffers.get(name);
        if ((buffer === null) !== (stored === undefined)) {
          throw new ConformanceFailure(
            `state file ${stored ? 'has' : 'lacks'} a buffer for "${name}", read() says ${buffer ? 'present' : 'absent'}`,
          );
        }
        const storedDtype = stored?.data instanceof Float64Array ? 'float64' : 'float32';
        if (stored && storedDtype !== adapter.dtype) {
          throw new ConformanceFailure(
            `buffer of "${name}" is stored as ${storedDtype}; the adapter computes in ${adapter.dtype}`,
          );
        }
        if (buffer && stored && !sameValues(stored.data, buffer))
          throw new ConformanceFailure(`stored buffer of "${name}" differs from read()`);
        if (stored && !sameValues(stored.shape, c.problem.params[name]!.shape)) {
          throw new ConformanceFailure(
            `stored buffer of "${name}" has shape [${stored.shape}], expected [${c.problem.params[name]!.shape}]`,
          );
        }
      }
      const reopened = { groups: c.problem.groups, params: mapParams(c.problem, snapshot.params) };
      await withSession(adapter, reopened, async (s) => {
        await s.importState(bytes);
        assertSnapshotsEqual(await s.read(), snapshot, 'after import into a fresh session');
        const again = decodeState(await s.exportState());
        // SPEC §4: an import replaces hyperparameters and step counts too, so a re-export repeats them.
        state.groups.forEach((g, i) => {
          const re = again.groups[i];
          if (re?.step !== g.step) {
            throw new ConformanceFailure(
              `after import into a fresh session, group ${i} re-exports step ${re?.step}, expected the imported ${g.step} (SPEC §4: importing replaces step counts)`,
            );
          }
          for (const key of HYPERPARAM_NAMES) {
            if (re.hyperparams[key] !== g.hyperparams[key]) {
              throw new ConformanceFailure(
                `after import into a fresh session, group ${i} re-exports ${key} ${re.hyperparams[key]}, expected the imported ${g.hyperparams[key]}`,
              );
            }
          }
        });
        for (const [name, b] of state.buffers) {
          if (!sameValues(again.buffers.get(name)?.data ?? [], b.data))
            throw new ConformanceFailure(`re-exported buffer of "${name}" differs`);
        }
      });
      return {
        detail: `${state.buffers.size} buffers, ${state.groups.length} groups, ${bytes.length} bytes; decoded by the core's strict parser and re-imported exactly`,
      };
    },
  };
}

function mapParams(
  problem: ConformanceProblem,
  values: Record<string, Float64Array>,
): ConformanceProblem['params'] {
  return Object.fromEntries(
    Object.entries(problem.params).map(([n, p]) => [n, { shape: p.shape, init: values[n]! }]),
  );
}

function lrsAfter(c: GoldenCase, steps: number): number[] {
  const lrs = c.problem.groups.map((g) => g.hyperparams.lr);
  for (const st of c.steps.slice(0, steps)) for (const { group, lr } of st.learningRates) lrs[group] = lr;
  return lrs;
}

/**
 * Runs `attempt`, which must reject with an AccSGD error whose name matches `expectedName`, and
 * checks that the session's params and buffers are byte-identical afterwards.
 */
async function expectRejected(
  session: ConformanceSession,
  what: string,
  expectedName: RegExp,
  attempt: () => Promise<unknown>,
): Promise<string> {
  const before = await session.read();
  const groupsBefore = decodeState(await session.exportState()).groups;
  let error: unknown;
  try {
    await attempt();
  } catch (e) {
    error = e;
  }
  if (error === undefined) throw new ConformanceFailure(`${what} was accepted; expected a rejection`);
  const name = (error as Error)?.name ?? '';
  if (!expectedName.test(name)) {
    throw new ConformanceFailure(
      `${what} was rejected with ${name || typeof error} (${(error as Error)?.message}); expected ${expectedName.source}`,
    );
  }
  assertSnapshotsEqual(await session.read(), before, `after ${what}`);
  const groupsAfter = decodeState(await session.exportState()).groups;
  if (JSON.stringify(groupsAfter) !== JSON.stringify(groupsBefore)) {
    throw new ConformanceFailure(
      `after ${what}: the exported groups changed from ${JSON.stringify(groupsBefore)} to ${JSON.stringify(groupsAfter)}`,
    );
  }
  return `${name}: ${(error as Error).message}`;
}

/**
 * A valid state file that does not fit the session: one group of `params` with hyperparameters and
 * a step count unlike any golden case's, so that a partly applied import would show.
 */
function foreignState(params: string[], buffered: string, shape: number[]): Uint8Array {
  const elements = shape.reduce((a, b) => a * b, 1);
  return encodeState({
    groups: [
      { hyperparams: { lr: 0.7, kappa: 500, xi: 5, smallConst: 0.5, weightDecay: 0.1 }, params, step: 9 },
    ],
    buffers: new Map([[buffered, { shape, data: new Float32Array(elements) }]]),
  });
}

interface BadInput {
  name: string;
  expected: RegExp;
  /** Steps of the base case run before the bad input, so buffers exist. */
  attempt(session: ConformanceSession, c: GoldenCase): Promise<unknown>;
}

const BAD_INPUTS: BadInput[] = [
  {
    name: 'gradient of the wrong length (first tensor)',
    expected: /^AccSGDGradientError$/,
    attempt: (s, c) =>
      s.step({ ...c.steps[2]!.grads, w: new Float64Array(c.problem.params.w!.init.length + 1) }),
  },
  {
    name: 'gradient of the wrong length (last tensor, after a valid one)',
    expected: /^AccSGDGradientError$/,
    attempt: (s, c) =>
      s.step({ ...c.steps[2]!.grads, b: new Float64Array(c.problem.params.b!.init.length - 1) }),
  },
  {
    name: 'gradient for an unknown parameter',
    expected: /^AccSGDGradientError$/,
    attempt: (s, c) => s.step({ ...c.steps[2]!.grads, nonexistent: new Float64Array(3) }),
  },
  {
    name: 'non-finite gradient (NaN in the last tensor)',
    expected: /^AccSGDGradientError$/,
    attempt: (s, c) => {
      const grad = Float64Array.from(c.steps[2]!.grads.b!);
      grad[grad.length - 1] = Number.NaN;
      return s.step({ ...c.steps[2]!.grads, b: grad });
    },
  },
  {
    name: 'infinite gradient',
    expected: /^AccSGDGradientError$/,
    attempt: (s, c) => {
      const grad = Float64Array.from(c.steps[2]!.grads.w!);
      grad[0] = Number.NEGATIVE_INFINITY;
      return s.step({ ...c.steps[2]!.grads, w: grad });
    },
  },
  {
    name: 'negative learning rate',
    expected: /^AccSGDConfigError$/,
    attempt: (s) => s.setLearningRate(-0.1, 0),
  },
  {
    name: 'NaN learning rate',
    expected: /^AccSGDConfigError$/,
    attempt: (s) => s.setLearningRate(Number.NaN, 0),
  },
  {
    name: 'learning rate for a group that does not exist',
    expected: /^AccSGDConfigError$/,
    attempt: (s) => s.setLearningRate(0.1, 7),
  },
  {
    name: 'state file that is not a state file',
    expected: /^AccSGDStateError$/,
    attempt: (s) => s.importState(new TextEncoder().encode('not a state file')),
  },
  {
    name: 'state file for other parameter names',
    expected: /^AccSGDStateError$/,
    attempt: (s, c) => s.importState(foreignState(['x', 'y'], 'x', c.problem.params.w!.shape)),
  },
  {
    name: 'state file with a buffer of the wrong shape',
    expected: /^AccSGDStateError$/,
    attempt: (s) => s.importState(foreignState(['w', 'b'], 'w', [3, 4])),
  },
];

function badInputChecks(base: GoldenCase): ConformanceCheck[] {
  const checks: ConformanceCheck[] = BAD_INPUTS.map((bad) => ({
    name: `bad input: ${bad.name}`,
    async run(adapter) {
      const tracker = new ErrorTracker(adapter.dtype, base);
      // The rejection happens after step 2; steps 3.. then still follow the truth, which proves
      // that nothing (lr, buffers, step counts) changed.
      const detail = await withSession(adapter, base.problem, async (s) => {
        await follow(s, base, 0, 2, tracker, base.name);
        const message = await expectRejected(s, bad.name, bad.expected, () => bad.attempt(s, base));
        await follow(s, base, 2, 5, tracker, `${base.name} after the rejected input`);
        return message;
      });
      return { maxError: tracker.maxError, bound: tracker.bound, detail };
    },
  }));
  const invalidProblems: [string, ConformanceProblem['groups'][number]['hyperparams']][] = [
    ['lr < 0', { lr: -1 }],
    ['smallConst > 1', { lr: 0.1, smallConst: 1.5 }],
    ['kappa = 0', { lr: 0.1, kappa: 0 }],
    ['xi > kappa / smallConst^2 (beta > 1)', { lr: 0.1, kappa: 10, xi: 100 }],
    ['weightDecay < 0', { lr: 0.1, weightDecay: -0.01 }],
    ['lr = Infinity', { lr: Number.POSITIVE_INFINITY }],
    // SPEC §1: a misspelt key must not fall back to a default.
    ['an unknown key (learningRate)', { lr: 0.1, learningRate: 0.01 } as { lr: number }],
  ];
  // SPEC §1: valid in float64, but a float32 multiplier overflows (a zero gradient would give NaN)
  // or rounds to 0 (the gradient would be ignored). Float64 adapters may accept these.
  const float32Only = new Map<string, string>([
    ['lr = 1e38 (float32 multiplier overflows)', 'lr'],
    ['lr = 1e-46 (float32 multiplier underflows)', 'lr'],
  ]);
  invalidProblems.push(['lr = 1e38 (float32 multiplier overflows)', { lr: 1e38 }]);
  invalidProblems.push(['lr = 1e-46 (float32 multiplier underflows)', { lr: 1e-46 }]);
  for (const [label, hyperparams] of invalidProblems) {
    checks.push({
      name: `bad input: open with ${label}`,
      async run(adapter) {
        const field = float32Only.get(label);
        if (field !== undefined && adapter.dtype !== 'float32')
          return { detail: `not applicable: ${label} is valid for a ${adapter.dtype} adapter (SPEC §1)` };
        const problem = { ...base.problem, groups: [{ ...base.problem.groups[0]!, hyperparams }] };
        let error: unknown;
        try {
          const session = await adapter.open(problem);
          await session.close();
        } catch (e) {
          error = e;
        }
        if (!error) throw new ConformanceFailure(`open() accepted ${label}`);
        if ((error as Error).name !== 'AccSGDConfigError') {
          throw new ConformanceFailure(
            `open() rejected ${label} with ${(error as Error).name}, expected AccSGDConfigError`,
          );
        }
        if (field !== undefined && !new RegExp(`\\b${field}\\b`).test((error as Error).message)) {
          throw new ConformanceFailure(
            `open() rejected ${label} with an AccSGDConfigError that does not name ${field}: ${(error as Error).message}`,
          );
        }
        return { detail: `AccSGDConfigError: ${(error as Error).message}` };
      },
    });
  }
  return checks;
}

/** Deterministic float32-representable values in [-1, 1), never exactly 0. */
function probeValues(count: number, seed: number): Float64Array {
  let state = seed >>> 0 || 1;
  return Float64Array.from({ length: count }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return Math.fround((state / 2 ** 32) * 2 - 1) || 0.5;
  });
}

/** Rows of the closed loop's X: a training batch's worth, enough that X p mixes every element. */
const PROBE_ROWS = 3;

/**
 * In use (SPEC §5.1): before the first step and after every step, the framework's own compute path
 * consumes each live parameter (X^T (X p - y) by its matMul), and the result must match what read()
 * reports. A framework that caches work per tensor and an adapter that writes parameters behind
 * its back agree in memory and disagree here.
 */
function closedLoopCheck(c: GoldenCase): ConformanceCheck {
  return {
    name: `in use: ${c.name}`,
    async run(adapter) {
      let worstRatio = -1;
      let maxError = 0;
      let bound = 0;
      let probes = 0;
      const skipped = await withSession(adapter, c.problem, async (s) => {
        const compute = s.leastSquaresGradient?.bind(s);
        if (!compute) return true;
        const probe = async (when: string) => {
          const { params } = await s.read();
          for (const [index, [name, { init }]] of Object.entries(c.problem.params).entries()) {
            const n = init.length;
            const x = probeValues(PROBE_ROWS * n, 17 + index);
            const y = probeValues(PROBE_ROWS, 71 + index);
            const got = await compute(name, x, y);
            const error = closedLoopError(got, leastSquaresGradient(x, params[name]!, y));
            const limit = closedLoopBound(n, PROBE_ROWS);
            probes++;
            if (error / limit > worstRatio) [worstRatio, maxError, bound] = [error / limit, error, limit];
            if (!(error <= limit)) {
              throw new ConformanceFailure(
                `${c.name}, ${when}, param "${name}": the framework computed X^T(Xp - y) with other values than read() reports (error ${error.toExponential(3)}, bound ${limit.toExponential(3)}); the framework's compute path sees stale or different parameters`,
                error,
                limit,
              );
            }
          }
        };
        await probe('before step 1');
        for (let i = 0; i < c.steps.length; i++) {
          await applyStep(s, c.steps[i]!);
          await probe(`after step ${i + 1}`);
        }
        return false;
      });
      if (skipped) {
        return {
          skipped: true,
          detail: 'skipped: the adapter has no leastSquaresGradient (the optional closed loop, SPEC §5.1)',
        };
      }
      return {
        maxError,
        bound,
        detail: `${probes} matMul round trips through the framework's own ops, ${c.steps.length} steps`,
      };
    },
  };
}

/** Every check of the suite, in order. Loads the committed golden vectors. */
export async function conformanceChecks(): Promise<ConformanceCheck[]> {
  const cases = await Promise.all((await listGoldenCases()).map((n) => loadGoldenCase(n)));
  const byName = new Map(cases.map((c) => [c.name, c]));
  return [
    ...cases.map(goldenCheck),
    ...cases.filter((c) => c.steps.length >= 2).map(resumeCheck),
    ...['defaults', 'groups', 'missing-gradients'].map((n) => closedLoopCheck(byName.get(n)!)),
    stateRoundTripCheck(byName.get('missing-gradients')!),
    stateRoundTripCheck(byName.get('groups')!),
    ...badInputChecks(byName.get('defaults')!),
  ];
}

/** The checks whose names contain one of `only` (all when absent); none selected is an error. */
export function selectChecks(checks: ConformanceCheck[], only?: string[]): ConformanceCheck[] {
  if (!only) return checks;
  const selected = checks.filter((c) => only.some((o) => c.name.includes(o)));
  if (selected.length === 0) {
    throw new Error(
      `no check name contains any of ${JSON.stringify(only)}; names look like "golden: defaults", "resume: groups", "bad input: ..."`,
    );
  }
  return selected;
}

export async function runChecks(
  adapter: ConformanceAdapter,
  checks: ConformanceCheck[],
  options: RunOptions = {},
): Promise<ConformanceReport> {
  const selected = selectChecks(checks, options.only);
  const results: CheckResult[] = [];
  for (const check of selected) {
    const started = performance.now();
    let result: CheckResult;
    try {
      const outcome = await check.run(adapter);
      result = { check: check.name, passed: true, ...outcome, ms: performance.now() - started };
    } catch (error) {
      const failure = error instanceof ConformanceFailure ? error : undefined;
      result = {
        check: check.name,
        passed: false,
        maxError: failure?.maxError,
        bound: failure?.bound,
        ...(failure?.divergence ? { divergence: failure.divergence } : {}),
        detail: failure
          ? failure.message
          : `threw ${(error as Error)?.name ?? typeof error}: ${(error as Error)?.message ?? String(error)}`,
        ms: performance.now() - started,
      };
    }
    results.push(result);
    options.onResult?.(result);
  }
  return { adapter: adapter.name, dtype: adapter.dtype, passed: results.every((r) => r.passed), results };
}

/** Runs the whole suite against one adapter. */
export async function runConformance(
  adapter: ConformanceAdapter,
  options: RunOptions = {},
): Promise<ConformanceReport> {
  return runChecks(adapter, await conformanceChecks(), options);
}

/**
 * Portability: state exported by `from` after half of each case continues in `to`, and the rest of
 * the trajectory stays within the looser of the two adapters' bounds.
 */
export async function runPortability(
  from: ConformanceAdapter,
  to: ConformanceAdapter,
  options: RunOptions = {},
): Promise<ConformanceReport> {
  const cases = await Promise.all((await listGoldenCases()).map((n) => loadGoldenCase(n)));
  const dtype: ConformanceDType = from.dtype === 'float32' || to.dtype === 'float32' ? 'float32' : 'float64';
  const checks = cases
    .filter((c) => c.steps.length >= 2)
    .map(
      (c): ConformanceCheck => ({
        name: `portability: ${c.name}`,
        async run() {
          const tracker = new ErrorTracker(dtype, c);
          const split = Math.max(1, Math.floor(c.steps.length / 2));
          const { state, params } = await withSession(from, c.problem, async (s) => {
            await follow(s, c, 0, split, tracker, `${c.name} in ${from.name}`);
            return { state: await s.exportState(), params: (await s.read()).params };
          });
          await withSession(
            to,
            { groups: c.problem.groups, params: mapParams(c.problem, params) },
            async (s) => {
              await s.importState(state);
              await follow(s, c, split, c.steps.length, tracker, `${c.name} in ${to.name}`);
            },
          );
          return {
            maxError: tracker.maxError,
            bound: tracker.bound,
            detail: `${from.name} -> ${to.name} after step ${split}`,
          };
        },
      }),
    );
  const report = await runChecks(from, checks, options);
  return { ...report, adapter: `${from.name} -> ${to.name}`, dtype };
}
