import { AccSGDConfigError, AccSGDStateError } from './errors.js';
import type { Hyperparams } from './hyperparams.js';

/** The reference's derived quantities, computed once per group per step in float64, in this order. */
export interface Coefficients {
  largeLr: number;
  alpha: number;
  beta: number;
  zeta: number;
}

export function deriveCoefficients(h: Hyperparams): Coefficients {
  const largeLr = (h.lr * h.kappa) / h.smallConst;
  const alpha = 1 - (h.smallConst * h.smallConst * h.xi) / h.kappa;
  const beta = 1 - alpha;
  const zeta = h.smallConst / (h.smallConst + beta);
  return { largeLr, alpha, beta, zeta };
}

/**
 * The six multipliers of the fused single-pass update, weight decay folded in:
 *
 *   buf' = bufFromBuf * buf + bufFromParam * p + bufFromGrad * g
 *   p'   = paramFromParam * p + paramFromGrad * g + paramFromBuf * buf'
 *
 * Expanding the reference with g <- g + wd*p gives
 *   buf' = alpha*buf + beta*(1 - largeLr*wd)*p - beta*largeLr*g
 *   p'   = zeta*(1 - lr*wd)*p - zeta*lr*g + (1 - zeta)*buf'
 * Every multiplier is formed in float64 from the float64 coefficients; a float32 kernel rounds
 * each multiplier once, which is what the accuracy contract in SPEC.md budgets for.
 */
export interface FusedCoefficients {
  bufFromBuf: number;
  bufFromParam: number;
  bufFromGrad: number;
  paramFromParam: number;
  paramFromGrad: number;
  paramFromBuf: number;
}

export function fusedCoefficients(h: Hyperparams): FusedCoefficients {
  const { largeLr, alpha, beta, zeta } = deriveCoefficients(h);
  return {
    bufFromBuf: alpha,
    bufFromParam: beta * (1 - largeLr * h.weightDecay),
    bufFromGrad: -beta * largeLr,
    paramFromParam: zeta * (1 - h.lr * h.weightDecay),
    paramFromGrad: -zeta * h.lr,
    paramFromBuf: 1 - zeta,
  };
}

/** The fused multipliers in a fixed order, for uniform buffers and kernel arguments. */
export function fusedCoefficientArray(h: Hyperparams): [number, number, number, number, number, number] {
  const c = fusedCoefficients(h);
  return [c.bufFromBuf, c.bufFromParam, c.bufFromGrad, c.paramFromParam, c.paramFromGrad, c.paramFromBuf];
}

/** Largest finite float32. */
const FLOAT32_MAX = 3.4028234663852886e38;

/** Why a set of hyperparameters cannot run in float32 (SPEC §1), or null when it can. */
export interface Float32MultiplierProblem {
  /** The hyperparameter responsible, for AccSGDConfigError. */
  field: keyof Hyperparams;
  /** The multiplier of SPEC §2.1 (or the first-step sum) that breaks. */
  multiplier: string;
  formula: string;
  /** Its float64 value and its value rounded to float32. */
  value: number;
  rounded: number;
}

/**
 * Checks the six fused multipliers of SPEC §2.1 and the first-step sum bufFromBuf + bufFromParam
 * as a float32 kernel receives them (rounded once): each must be finite, and non-zero unless its
 * float64 value is zero. Validation in float64 cannot see this: lr = 1e38 is valid, yet
 * bufFromGrad = -beta * largeLr = -7e38 overflows float32 (a zero gradient then gives NaN), and
 * lr = 1e-46 rounds paramFromGrad = -zeta * lr to 0 (the gradient is ignored).
 */
export function float32MultiplierProblem(h: Hyperparams): Float32MultiplierProblem | null {
  const c = fusedCoefficients(h);
  const { zeta } = deriveCoefficients(h);
  // The field blamed is the one that drives the multiplier out of range: bufFromGrad is
  // -smallConst * xi * lr (kappa cancels), paramFromGrad -zeta * lr, and the weight-decay
  // products grow with weightDecay.
  const smallest = (...fields: (keyof Hyperparams)[]) =>
    fields.reduce((a, b) => (Math.abs(h[b]) < Math.abs(h[a]) ? b : a));
  const checks: [string, string, number, keyof Hyperparams, keyof Hyperparams][] = [
    // [multiplier, formula, float64 value, blamed on overflow, blamed on underflow]
    [
      'bufFromGrad',
      '-beta * largeLr',
      c.bufFromGrad,
      h.xi > h.lr ? 'xi' : 'lr',
      smallest('lr', 'xi', 'smallConst'),
    ],
    ['paramFromGrad', '-zeta * lr', c.paramFromGrad, 'lr', zeta < h.lr ? 'smallConst' : 'lr'],
    ['paramFromParam', 'zeta * (1 - lr * weightDecay)', c.paramFromParam, 'weightDecay', 'smallConst'],
    ['bufFromParam', 'beta * (1 - largeLr * weightDecay)', c.bufFromParam, 'weightDecay', 'xi'],
    [
      'bufFromBuf + bufFromParam',
      "alpha + beta * (1 - largeLr * weightDecay), the first step's multiplier of p",
      c.bufFromBuf + c.bufFromParam,
      'weightDecay',
      'xi',
    ],
    ['bufFromBuf', 'alpha', c.bufFromBuf, 'xi', 'xi'],
    ['paramFromBuf', '1 - zeta', c.paramFromBuf, 'smallConst', 'smallConst'],
  ];
  for (const [multiplier, formula, value, overflowField, underflowField] of checks) {
    const rounded = Math.fround(value);
    if (!Number.isFinite(rounded)) return { field: overflowField, multiplier, formula, value, rounded };
    if (rounded === 0 && value !== 0) return { field: underflowField, multiplier, formula, value, rounded };
  }
  return null;
}

/**
 * Throws AccSGDConfigError, naming the responsible field, when the hyperparameters are valid in
 * float64 but their float32 multipliers are not finite, or are zero where the float64 value is
 * not (SPEC §1). Every float32 adapter calls this wherever it accepts hyperparameters. Returns `h`.
 */
export function assertFloat32Multipliers<H extends Hyperparams>(h: H): H {
  const problem = float32MultiplierProblem(h);
  if (!problem) return h;
  const { field, multiplier, formula, value, rounded } = problem;
  const what = Number.isFinite(rounded)
    ? `rounds to 0 in float32 (the smallest float32 is 1.4e-45)`
    : `overflows float32 (the largest float32 is ${FLOAT32_MAX.toExponential(4)})`;
  throw new AccSGDConfigError(
    field,
    h[field],
    'a value for which the float32 multipliers of SPEC §2.1 are finite and non-zero',
    `is out of range for float32: the multiplier ${multiplier} = ${formula} = ${value} ${what} with ${describe(h)}`,
  );
}

/**
 * The same check for the groups of a state file being imported into a float32 adapter: throws
 * AccSGDStateError ("group i: lr ...") so that importState keeps its single error kind.
 */
export function assertFloat32StateGroups(
  groups: readonly { hyperparams: Hyperparams }[],
  isFloat32: (group: number) => boolean = () => true,
): void {
  groups.forEach((g, i) => {
    if (!isFloat32(i)) return;
    try {
      assertFloat32Multipliers(g.hyperparams);
    } catch (error) {
      if (error instanceof AccSGDConfigError) throw new AccSGDStateError(`group ${i}: ${error.message}`);
      throw error;
    }
  });
}

function describe(h: Hyperparams): string {
  return `lr = ${h.lr}, kappa = ${h.kappa}, xi = ${h.xi}, smallConst = ${h.smallConst}, weightDecay = ${h.weightDecay}`;
}
