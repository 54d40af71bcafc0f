import { assertFloat32Multipliers } from './coefficients.js';
import { AccSGDConfigError } from './errors.js';

/** The five hyperparameters of one parameter group, all resolved. Names follow the reference (camelCase). */
export interface Hyperparams {
  /** Short step, as for plain SGD. */
  lr: number;
  /** Long step (condition number estimate). */
  kappa: number;
  /** Statistical advantage parameter. */
  xi: number;
  /** Constant in (0, 1] that trades the long step against the short one. */
  smallConst: number;
  /** L2 penalty added to the gradient as `weightDecay * p`. */
  weightDecay: number;
}

/** What a user passes: `lr` plus any of the others; omitted ones take their defaults. */
export type HyperparamsInput = { lr: number } & Partial<Omit<Hyperparams, 'lr'>>;

export const HYPERPARAM_DEFAULTS: Readonly<Omit<Hyperparams, 'lr'>> = Object.freeze({
  kappa: 1000,
  xi: 10,
  smallConst: 0.7,
  weightDecay: 0,
});

export const HYPERPARAM_NAMES = ['lr', 'kappa', 'xi', 'smallConst', 'weightDecay'] as const;

const RANGES: Record<keyof Hyperparams, { expected: string; ok: (v: number) => boolean }> = {
  lr: { expected: 'a finite number >= 0', ok: (v) => v >= 0 },
  kappa: { expected: 'a finite number > 0', ok: (v) => v > 0 },
  xi: { expected: 'a finite number > 0', ok: (v) => v > 0 },
  smallConst: { expected: 'a finite number in (0, 1]', ok: (v) => v > 0 && v <= 1 },
  weightDecay: { expected: 'a finite number >= 0', ok: (v) => v >= 0 },
};

/**
 * Fills defaults (from `inherited`, then the spec's defaults) and validates every field.
 * Throws AccSGDConfigError naming the first bad field, its value and the allowed range.
 * Unknown keys are rejected too, so a typo such as `learningRate` cannot be silently ignored.
 */
export function resolveHyperparams(
  input: Partial<Hyperparams> | undefined,
  inherited?: Partial<Hyperparams>,
  allowedExtraKeys: readonly string[] = [],
): Hyperparams {
  const source = (input ?? {}) as Record<string, unknown>;
  for (const key of Object.keys(source)) {
    if (!(HYPERPARAM_NAMES as readonly string[]).includes(key) && !allowedExtraKeys.includes(key)) {
      throw new AccSGDConfigError(
        key,
        source[key],
        `one of ${HYPERPARAM_NAMES.join(', ')}`,
        `is not an AccSGD hyperparameter (expected one of ${HYPERPARAM_NAMES.join(', ')})`,
      );
    }
  }
  const pick = (name: keyof Hyperparams): unknown =>
    source[name] !== undefined
      ? source[name]
      : inherited?.[name] !== undefined
        ? inherited[name]
        : (HYPERPARAM_DEFAULTS as Partial<Hyperparams>)[name];
  const resolved = {} as Hyperparams;
  for (const name of HYPERPARAM_NAMES) {
    resolved[name] = pick(name) as number;
  }
  return validateHyperparams(resolved, {
    given: HYPERPARAM_NAMES.filter((name) => source[name] !== undefined),
  });
}

/** A number as people write it: 9.799999999999999 is 9.8 (six significant digits). */
const human = (x: number): string => String(Number(x.toPrecision(6)));

/**
 * Validates a complete set of hyperparameters and returns it unchanged. With
 * `{ precision: 'float32' }` it also checks the float32 multipliers (SPEC §1): every float32
 * adapter must, since validation in float64 passes lr = 1e38 and lr = 1e-46.
 */
export function validateHyperparams(
  h: Hyperparams,
  options: {
    precision?: 'float32' | 'float64';
    /**
     * The fields the caller set (the rest are defaults or inherited): when kappa, xi and
     * smallConst do not fit together, the error names one the caller set, not a default.
     */
    given?: readonly (keyof Hyperparams)[];
  } = {},
): Hyperparams {
  for (const name of HYPERPARAM_NAMES) {
    const value = h[name];
    const range = RANGES[name];
    if (value === undefined && name === 'lr') {
      throw new AccSGDConfigError(
        'lr',
        value,
        range.expected,
        'is required (AccSGD has no default learning rate)',
      );
    }
    if (typeof value !== 'number' || !Number.isFinite(value) || !range.ok(value)) {
      throw new AccSGDConfigError(name, value, range.expected);
    }
  }
  // beta must lie in (0, 1]: beyond 1 the buffer update extrapolates and the method diverges; at 0
  // the coefficient 1/beta is infinite. It is checked as the update forms it, 1 - alpha, which
  // rounds to 0 when smallConst^2 * xi / kappa is below float64 resolution near 1.
  const ratio = (h.smallConst * h.smallConst * h.xi) / h.kappa;
  const beta = 1 - (1 - ratio);
  if (!(beta > 0 && beta <= 1)) {
    // Blame a field the caller set: xi first (the usual culprit), then kappa, then smallConst.
    const given = options.given ?? HYPERPARAM_NAMES;
    const field = (['xi', 'kappa', 'smallConst'] as const).find((f) => given.includes(f)) ?? 'xi';
    const shown = (f: keyof Hyperparams) =>
      `${f} = ${human(h[f])}${given.includes(f) ? '' : ' (the default)'}`;
    const others = (['kappa', 'xi', 'smallConst'] as const)
      .filter((f) => f !== field)
      .map(shown)
      .join(' and ');
    const limit = {
      xi: { bound: `<= kappa / smallConst^2 = ${human(h.kappa / (h.smallConst * h.smallConst))}` },
      kappa: { bound: `>= smallConst^2 * xi = ${human(h.smallConst * h.smallConst * h.xi)}` },
      smallConst: { bound: `<= sqrt(kappa / xi) = ${human(Math.sqrt(h.kappa / h.xi))}` },
    }[field].bound;
    const why =
      beta > 1
        ? `so ${field} must be ${limit}`
        : `and 1 - alpha rounds to ${beta} in float64; raise xi or lower kappa`;
    throw new AccSGDConfigError(
      field,
      h[field],
      beta > 1 ? limit : 'a value for which beta = smallConst^2 * xi / kappa is in (0, 1]',
      `is out of range for ${others}: beta = smallConst^2 * xi / kappa = ${human(ratio)} must be in (0, 1], ${why}`,
    );
  }
  const largeLr = (h.lr * h.kappa) / h.smallConst;
  if (!Number.isFinite(largeLr)) {
    throw new AccSGDConfigError(
      'lr',
      h.lr,
      'small enough that lr * kappa / smallConst is finite',
      `is too large: lr * kappa / smallConst = ${largeLr} overflows`,
    );
  }
  return options.precision === 'float32' ? assertFloat32Multipliers(h) : h;
}

export interface Advice {
  /** Which setting the advice is about. */
  field: keyof Hyperparams;
  message: string;
}

/**
 * The reference authors' tuning guidance, returned as messages for settings outside the
 * advised ranges. Library code never prints these; an application may.
 * `batchSize` (optional) lets the advice mention how xi should scale with the batch.
 */
export function adviseHyperparams(h: Hyperparams, context: { batchSize?: number } = {}): Advice[] {
  const advice: Advice[] = [];
  const sqrtKappa = Math.sqrt(h.kappa);
  if (h.xi < 1) {
    advice.push({
      field: 'xi',
      message: `xi = ${h.xi} is below 1; the authors advise xi between 1 and sqrt(kappa) = ${sqrtKappa.toPrecision(4)}. Too small a xi slows convergence.`,
    });
  } else if (h.xi > sqrtKappa) {
    advice.push({
      field: 'xi',
      message: `xi = ${h.xi} is above sqrt(kappa) = ${sqrtKappa.toPrecision(4)}; the authors advise xi between 1 and sqrt(kappa). Too large a xi causes oscillation or divergence.`,
    });
  }
  if (h.kappa < 100) {
    advice.push({
      field: 'kappa',
      message: `kappa = ${h.kappa} is below the advised range: use 1e2..1e3 for shallow nets and easy data, 1e4 or more for deep nets (ResNets on CIFAR/ImageNet).`,
    });
  }
  if (context.batchSize !== undefined && context.batchSize >= 512 && h.xi < sqrtKappa / 2) {
    advice.push({
      field: 'xi',
      message: `batch size ${context.batchSize} is large: the authors advise xi closer to sqrt(kappa) = ${sqrtKappa.toPrecision(4)} for large batches (raise xi by sqrt(k) when the batch grows k-fold).`,
    });
  }
  if (h.lr === 0) {
    advice.push({
      field: 'lr',
      message: 'lr = 0: parameters will only move towards the momentum buffer, never along the gradient.',
    });
  }
  return advice;
}

/**
 * The authors' debugging guide, for applications that show hints next to a loss curve. Their
 * "set lr as you would for SGD, heavy ball or Nesterov momentum" is replaced by what this project
 * measured: a momentum optimizer's lr is not AccSGD's (see fromMomentum()).
 */
export const TUNING_GUIDE: readonly string[] = Object.freeze([
  'Slow convergence: lr too low, kappa too high, or xi too small.',
  'Oscillation or divergence: lr too high or xi too large.',
  'Sigmoid networks: slow convergence after a rapid initial drop means the settings are over-aggressive.',
  "lr is the short step, plain SGD's: a momentum-0.9 optimizer's lr moves about 10x as far; measured on an MNIST MLP and a small MNIST conv net, start AccSGD at about 3x a good momentum-0.9 lr (fromMomentum()), searching lower first.",
  'xi between 1 and sqrt(kappa); closer to sqrt(kappa) for large batches (raise xi by sqrt(k) when the batch grows k-fold).',
  'kappa 1e2..1e3 for shallow nets and easy data; 1e4 or more for deep nets (ResNets, CIFAR/ImageNet).',
]);
