import {
  AccSGDConfigError,
  AccSGDGradientError,
  assertFloat32Multipliers,
  assertFloat32StateGroups,
  assertStateFits,
  type ConformanceAdapter,
  type ConformanceProblem,
  type ConformanceSession,
  decodeState,
  deriveCoefficients,
  encodeState,
  HYPERPARAM_NAMES,
  type Hyperparams,
  resolveHyperparams,
} from '@accsgd/core';

/**
 * Adapters that are each one plausible mistake away from correct, to prove that the suite
 * rejects them, plus two strict float32 emulations that must pass (to prove the float32 bound is
 * not tighter than real float32 hardware). They emulate a float32 device: every operation is
 * rounded with Math.fround, and every coefficient is rounded to float32 once.
 */

type Variant =
  | 'correct-float32-fused'
  | 'correct-float32-reference'
  | 'beta-for-alpha'
  | 'wrong-zeta'
  | 'zero-buffer-init'
  | 'weight-decay-after-update'
  | 'ignores-learning-rate-change'
  | 'missing-gradient-as-zeros'
  | 'float32-coefficients'
  | 'float32-multipliers-unchecked'
  | 'stale-parameters-in-use'
  | 'accepts-unknown-hyperparameters'
  | 'ignores-imported-step-counts'
  | 'mutates-caller-gradient'
  | 'skips-first-buffer-update';

export const MUTANT_DESCRIPTIONS: Record<Exclude<Variant, `correct-${string}`>, string> = {
  'beta-for-alpha': 'buf <- beta*buf + ... : beta used where alpha belongs',
  'wrong-zeta': 'zeta = smallConst / (smallConst + alpha) instead of smallConst / (smallConst + beta)',
  'zero-buffer-init': 'momentum buffer initialised to zeros instead of a copy of p',
  'weight-decay-after-update': 'weight decay applied to p after the update instead of added to the gradient',
  'ignores-learning-rate-change': 'setLearningRate accepted but not used',
  'missing-gradient-as-zeros': 'a missing gradient is treated as a zero gradient (buffer and p still move)',
  'float32-coefficients': 'alpha rounded to float32 before beta = 1 - alpha is formed',
  'float32-multipliers-unchecked':
    'hyperparameters validated in float64 only: lr = 1e38 (a float32 multiplier overflows) and lr = 1e-46 (one rounds to 0) accepted',
  'stale-parameters-in-use':
    "right in memory, wrong in use: the framework's matMul keeps a packed copy of each parameter from its first use (as tfjs-backend-wasm's XNNPACK cache did with weights updated in place)",
  'accepts-unknown-hyperparameters': 'unknown hyperparameter keys (a misspelt learningRate) silently ignored',
  'ignores-imported-step-counts':
    "a state import restores buffers and hyperparameters but not the groups' step counts",
  'mutates-caller-gradient': "weight decay added into the caller's gradient in place, as the reference does",
  'skips-first-buffer-update':
    "a tensor's first step only creates the buffer (a copy of p) and updates p from it, skipping the buffer update",
};

/**
 * Which checks must catch each mutant (`checks`), and whether they must catch it by the numbers,
 * missing the bound by a wide margin (`numeric`), rather than by a rule check.
 */
export const MUTANT_CAUGHT_BY: Record<
  keyof typeof MUTANT_DESCRIPTIONS,
  { checks: RegExp; numeric: boolean }
> = {
  'beta-for-alpha': { checks: /^(golden|resume)/, numeric: true },
  'wrong-zeta': { checks: /^(golden|resume)/, numeric: true },
  'zero-buffer-init': { checks: /^(golden|resume)/, numeric: true },
  'weight-decay-after-update': { checks: /^(golden|resume)/, numeric: true },
  'ignores-learning-rate-change': { checks: /^(golden|resume)/, numeric: true },
  'missing-gradient-as-zeros': { checks: /^(golden|resume)/, numeric: true },
  'float32-coefficients': { checks: /^(golden|resume)/, numeric: true },
  'float32-multipliers-unchecked': { checks: /^bad input: open with lr = 1e(38|-46) /, numeric: false },
  'stale-parameters-in-use': { checks: /^in use: /, numeric: true },
  'accepts-unknown-hyperparameters': { checks: /^bad input: open with an unknown key/, numeric: false },
  'ignores-imported-step-counts': { checks: /^state file: round trip/, numeric: false },
  'mutates-caller-gradient': { checks: /^(golden|resume): weight-decay/, numeric: false },
  'skips-first-buffer-update': { checks: /^(golden|resume)/, numeric: true },
};

const f = Math.fround;

function stepTensor(
  variant: Variant,
  h: Hyperparams,
  p: Float32Array,
  g: Float32Array,
  buf: Float32Array,
  skipBufferUpdate = false,
): void {
  let { largeLr, alpha, beta, zeta } = deriveCoefficients(h);
  if (variant === 'float32-coefficients') {
    alpha = f(1 - f(f(h.smallConst * h.smallConst) * h.xi) / f(h.kappa));
    beta = f(1 - alpha);
    zeta = f(h.smallConst / f(h.smallConst + beta));
  }
  if (variant === 'wrong-zeta') zeta = h.smallConst / (h.smallConst + alpha);
  const wd = variant === 'weight-decay-after-update' ? 0 : h.weightDecay;
  if (variant === 'correct-float32-reference') {
    // The reference's seven in-place float32 tensor ops, scalars rounded to float32 as PyTorch does.
    const [c1, c2, c3, c4, c5, c6] = [1 / beta - 1, -largeLr, beta, -h.lr, zeta, 1 - zeta].map(f) as number[];
    for (let i = 0; i < p.length; i++) {
      const gi = wd !== 0 ? f(g[i]! + f(f(wd) * p[i]!)) : g[i]!;
      let b = f(buf[i]! * c1!);
      b = f(b + f(c2! * gi));
      b = f(b + p[i]!);
      b = f(b * c3!);
      buf[i] = b;
      p[i] = f(f(f(p[i]! + f(c4! * gi)) * c5!) + f(c6! * b));
    }
    return;
  }
  const c = [
    variant === 'beta-for-alpha' ? beta : alpha,
    beta * (1 - largeLr * wd),
    -beta * largeLr,
    zeta * (1 - h.lr * wd),
    -zeta * h.lr,
    1 - zeta,
  ].map(f) as [number, number, number, number, number, number];
  for (let i = 0; i < p.length; i++) {
    const b = skipBufferUpdate ? buf[i]! : f(f(f(c[0] * buf[i]!) + f(c[1] * p[i]!)) + f(c[2] * g[i]!));
    buf[i] = b;
    let next = f(f(f(c[3] * p[i]!) + f(c[4] * g[i]!)) + f(c[5] * b));
    if (variant === 'weight-decay-after-update') next = f(next - f(f(h.lr * h.weightDecay) * next));
    p[i] = next;
  }
}

function emulatedAdapter(variant: Variant): ConformanceAdapter {
  return {
    name: variant.startsWith('correct-')
      ? `emulated/${variant.slice('correct-'.length)}`
      : `mutant/${variant}`,
    dtype: 'float32',
    async open(problem: ConformanceProblem): Promise<ConformanceSession> {
      const hyper = problem.groups.map((g) =>
        resolveHyperparams(
          variant === 'accepts-unknown-hyperparameters'
            ? (Object.fromEntries(
                Object.entries(g.hyperparams).filter(([k]) =>
                  (HYPERPARAM_NAMES as readonly string[]).includes(k),
                ),
              ) as typeof g.hyperparams)
            : g.hyperparams,
        ),
      );
      // A float32 device receives float32 multipliers: they must be finite and non-zero (SPEC §1).
      const float32Checked = variant !== 'float32-multipliers-unchecked';
      if (float32Checked) for (const h of hyper) assertFloat32Multipliers(h);
      /** What the emulated framework's matMul packed from each parameter on first use. */
      const packed = new Map<string, Float32Array>();
      const steps = problem.groups.map(() => 0);
      const params = new Map(Object.entries(problem.params).map(([n, p]) => [n, Float32Array.from(p.init)]));
      let buffers = new Map<string, Float32Array>();
      const groupOf = new Map(problem.groups.flatMap((g, i) => g.params.map((n) => [n, i] as const)));
      return {
        async step(grads) {
          for (const [name, grad] of Object.entries(grads)) {
            const p = params.get(name);
            if (!p) throw new AccSGDGradientError(name, 'unknown parameter');
            if (grad && grad.length !== p.length)
              throw new AccSGDGradientError(name, `has ${grad.length} elements, expected ${p.length}`);
            if (grad?.some((v) => !Number.isFinite(v))) throw new AccSGDGradientError(name, 'is not finite');
          }
          const touched = new Set<number>();
          for (const [name, p] of params) {
            let grad = grads[name] ?? null;
            if (!grad && variant === 'missing-gradient-as-zeros' && buffers.has(name))
              grad = new Float64Array(p.length);
            if (!grad) continue;
            let buf = buffers.get(name);
            const firstStep = !buf;
            if (!buf) {
              buf = variant === 'zero-buffer-init' ? new Float32Array(p.length) : Float32Array.from(p);
              buffers.set(name, buf);
            }
            const h = hyper[groupOf.get(name)!]!;
            if (variant === 'mutates-caller-gradient' && h.weightDecay !== 0) {
              for (let i = 0; i < grad.length; i++) grad[i] = f(grad[i]! + f(f(h.weightDecay) * p[i]!));
              stepTensor(variant, { ...h, weightDecay: 0 }, p, Float32Array.from(grad), buf);
            } else {
              const skip = variant === 'skips-first-buffer-update' && firstStep;
              stepTensor(variant, h, p, Float32Array.from(grad), buf, skip);
            }
            touched.add(groupOf.get(name)!);
          }
          for (const g of touched) steps[g]!++;
        },
        async setLearningRate(lr, group) {
          const current = hyper[group];
          if (!current) throw new AccSGDConfigError('group', group, `an index in [0, ${hyper.length - 1}]`);
          const next = resolveHyperparams({ ...current!, lr });
          if (float32Checked) assertFloat32Multipliers(next);
          if (variant !== 'ignores-learning-rate-change') hyper[group] = next;
        },
        async read() {
          return {
            params: Object.fromEntries([...params].map(([n, p]) => [n, Float64Array.from(p)])),
            buffers: Object.fromEntries(
              [...params.keys()].map((n) => [n, buffers.has(n) ? Float64Array.from(buffers.get(n)!) : null]),
            ),
          };
        },
        async exportState() {
          return encodeState({
            groups: problem.groups.map((g, i) => ({
              hyperparams: hyper[i]!,
              params: g.params,
              step: steps[i]!,
            })),
            buffers: new Map([...buffers].map(([n, b]) => [n, { shape: problem.params[n]!.shape, data: b }])),
          });
        },
        async importState(bytes) {
          const state = decodeState(bytes);
          if (float32Checked) assertFloat32StateGroups(state.groups);
          assertStateFits(state, {
            groups: problem.groups,
            shapes: new Map(Object.entries(problem.params).map(([n, p]) => [n, p.shape])),
          });
          state.groups.forEach((g, i) => {
            hyper[i] = g.hyperparams;
            if (variant !== 'ignores-imported-step-counts') steps[i] = g.step;
          });
          buffers = new Map([...state.buffers].map(([n, b]) => [n, Float32Array.from(b.data)]));
        },
        async close() {},
        async leastSquaresGradient(name, x, y) {
          const live = params.get(name);
          if (!live) throw new AccSGDGradientError(name, 'unknown parameter');
          if (variant === 'stale-parameters-in-use' && !packed.has(name)) packed.set(name, live.slice());
          const p = variant === 'stale-parameters-in-use' ? packed.get(name)! : live;
          return matMulLeastSquares(x, p, y);
        },
      };
    },
  };
}

/** X^T (X p - y) in float32 arithmetic, as an emulated framework's matMul would compute it. */
function matMulLeastSquares(x: Float64Array, p: Float32Array, y: Float64Array): Float64Array {
  const n = p.length;
  const residual = Array.from(y, (yr, r) => {
    let sum = 0;
    for (let k = 0; k < n; k++) sum = f(sum + f(f(x[r * n + k]!) * p[k]!));
    return f(sum - f(yr));
  });
  return Float64Array.from({ length: n }, (_, j) => {
    let sum = 0;
    for (let r = 0; r < residual.length; r++) sum = f(sum + f(f(x[r * n + j]!) * residual[r]!));
    return sum;
  });
}

/** Strict float32 emulation of the fused update: must pass the suite. */
export const correctFloat32Fused = () => emulatedAdapter('correct-float32-fused');
/** Strict float32 emulation of the reference's seven tensor ops: must pass the suite. */
export const correctFloat32Reference = () => emulatedAdapter('correct-float32-reference');

export const betaForAlpha = () => emulatedAdapter('beta-for-alpha');
export const wrongZeta = () => emulatedAdapter('wrong-zeta');
export const zeroBufferInit = () => emulatedAdapter('zero-buffer-init');
export const weightDecayAfterUpdate = () => emulatedAdapter('weight-decay-after-update');
export const ignoresLearningRateChange = () => emulatedAdapter('ignores-learning-rate-change');
export const missingGradientAsZeros = () => emulatedAdapter('missing-gradient-as-zeros');
export const float32Coefficients = () => emulatedAdapter('float32-coefficients');
export const float32MultipliersUnchecked = () => emulatedAdapter('float32-multipliers-unchecked');
export const staleParametersInUse = () => emulatedAdapter('stale-parameters-in-use');
export const acceptsUnknownHyperparameters = () => emulatedAdapter('accepts-unknown-hyperparameters');
export const ignoresImportedStepCounts = () => emulatedAdapter('ignores-imported-step-counts');
export const mutatesCallerGradient = () => emulatedAdapter('mutates-caller-gradient');
export const skipsFirstBufferUpdate = () => emulatedAdapter('skips-first-buffer-update');

/** Export name of each mutant factory, for the CLI's --export. */
export const MUTANT_EXPORTS: Record<keyof typeof MUTANT_DESCRIPTIONS, string> = {
  'beta-for-alpha': 'betaForAlpha',
  'wrong-zeta': 'wrongZeta',
  'zero-buffer-init': 'zeroBufferInit',
  'weight-decay-after-update': 'weightDecayAfterUpdate',
  'ignores-learning-rate-change': 'ignoresLearningRateChange',
  'missing-gradient-as-zeros': 'missingGradientAsZeros',
  'float32-coefficients': 'float32Coefficients',
  'float32-multipliers-unchecked': 'float32MultipliersUnchecked',
  'stale-parameters-in-use': 'staleParametersInUse',
  'accepts-unknown-hyperparameters': 'acceptsUnknownHyperparameters',
  'ignores-imported-step-counts': 'ignoresImportedStepCounts',
  'mutates-caller-gradient': 'mutatesCallerGradient',
  'skips-first-buffer-update': 'skipsFirstBufferUpdate',
};
