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
