import { AccSGDConfigError } from './errors.js';
import { HYPERPARAM_DEFAULTS } from './hyperparams.js';

/** What `fromMomentum` takes: the setting of an SGD-with-momentum optimizer that works for you. */
export interface MomentumSetting {
  /** Momentum SGD's learning rate (as in `torch.optim.SGD(lr=...)` or `tf.train.momentum(lr, ...)`). */
  lr: number;
  /** Its momentum, in [0, 1) (0.9 is the usual). */
  momentum: number;
  /** AccSGD's statistical advantage parameter to plan for (default 10). */
  xi?: number;
  /** AccSGD's long step (default 1000). */
  kappa?: number;
  /** AccSGD's smallConst (default 0.7). */
  smallConst?: number;
}

const SETTING_KEYS = ['lr', 'momentum', 'kappa', 'xi', 'smallConst'];

/**
 * A starting point for AccSGD, not a tuned setting. `empirical` and `note` are not enumerable, so
 * the object passes as hyperparameters unchanged.
 */
export interface MomentumStartingPoint {
  lr: number;
  kappa: number;
  xi: number;
  smallConst: number;
  /** Always true: the rule was measured on one model (see `note`); search around it. */
  empirical: true;
  /** Where the rule comes from and what to search next. */
  note: string;
}

/**
 * AccSGD's steady-state step over heavy ball's at the best learning rate of each, measured by
 * @accsgd/evidence's MNIST sweep (784-256-10 MLP, tfjs wasm, validation split; reports/mnist.md,
 * "From a momentum setting to AccSGD"): heavy ball's best lr was 0.1 (momentum 0.9, step 1.0) and
 * AccSGD's best setting kappa 1000, xi 10, lr 0.3 (step 0.3 * 0.7 * 11 / 1.7 = 1.36). The same
 * sweep on a small conv net (5,994 parameters, one epoch, one seed) gave the same pair at kappa
 * 1000, xi 10 (heavy ball 0.1, AccSGD 0.3, 0.11 points below the sweep's best AccSGD setting), and
 * there every AccSGD lr of 1 or more failed. The grids were spaced about 3x apart, so the ratio is
 * known to within about that factor.
 */
export const MOMENTUM_STEP_RATIO = 1.36;

/**
 * A starting AccSGD setting for someone who has a momentum setting that works: the lr at which
 * AccSGD's steady-state step on a constant gradient, lr * smallConst * (1 + xi) / (1 + smallConst),
 * is MOMENTUM_STEP_RATIO times momentum's, lr / (1 - momentum); kappa and xi stay at the advised
 * defaults unless given. The ratio is empirical (two small models, one data set): treat the result
 * as the centre of a small lr search (about 3x either way), not as a tuned value.
 */
export function fromMomentum(setting: MomentumSetting): MomentumStartingPoint {
  if (typeof setting !== 'object' || setting === null)
    throw new AccSGDConfigError('setting', setting, 'an object { lr, momentum, kappa?, xi?, smallConst? }');
  for (const key of Object.keys(setting))
    if (!SETTING_KEYS.includes(key))
      throw new AccSGDConfigError(
        key,
        (setting as unknown as Record<string, unknown>)[key],
        `one of the keys ${SETTING_KEYS.join(', ')}`,
        `is not a key of fromMomentum's setting (expected ${SETTING_KEYS.join(', ')})`,
      );
  const { lr, momentum } = setting;
  if (typeof lr !== 'number' || !Number.isFinite(lr) || !(lr > 0))
    throw new AccSGDConfigError('lr', lr, "a finite number > 0 (the momentum optimizer's learning rate)");
  if (typeof momentum !== 'number' || !Number.isFinite(momentum) || !(momentum >= 0 && momentum < 1))
    throw new AccSGDConfigError(
      'momentum',
      momentum,
      'a number in [0, 1)',
      `must be in [0, 1) (the momentum optimizer's momentum; 1 or more never settles)`,
    );
  const kappa = setting.kappa ?? HYPERPARAM_DEFAULTS.kappa;
  const xi = setting.xi ?? HYPERPARAM_DEFAULTS.xi;
  const smallConst = setting.smallConst ?? HYPERPARAM_DEFAULTS.smallConst;
  for (const [field, v, ok, expected] of [
    ['kappa', kappa, kappa > 0, 'a finite number > 0'],
    ['xi', xi, xi > 0, 'a finite number > 0'],
    ['smallConst', smallConst, smallConst > 0 && smallConst <= 1, 'a finite number in (0, 1]'],
  ] as const)
    if (typeof v !== 'number' || !Number.isFinite(v) || !ok) throw new AccSGDConfigError(field, v, expected);
  const momentumStep = lr / (1 - momentum);
  const accsgdStepPerLr = (smallConst * (1 + xi)) / (1 + smallConst);
  const out = (MOMENTUM_STEP_RATIO * momentumStep) / accsgdStepPerLr;
  // `empirical` and `note` are not enumerable, so the result passes as hyperparameters as it is:
  // new AccSGD(params, fromMomentum(...)) and accsgd(fromMomentum(...)) see lr, kappa, xi, smallConst.
  return Object.defineProperties({ lr: out, kappa, xi, smallConst } as MomentumStartingPoint, {
    empirical: { value: true, enumerable: false },
    note: {
      enumerable: false,
      value: `Empirical starting point: AccSGD's steady-state step lr*smallConst*(1+xi)/(1+smallConst) set to ${MOMENTUM_STEP_RATIO} x momentum's lr/(1-momentum) = ${Number(momentumStep.toPrecision(6))}, a ratio measured on an MNIST MLP and matched on a small MNIST conv net (@accsgd/evidence). Search lr about 3x either way before trusting it, lower first: on the conv net 3x higher failed.`,
    },
  });
}
