import { describe, expect, it } from 'vitest';
import { deriveCoefficients, fusedCoefficients } from './coefficients.js';
import { resolveHyperparams } from './hyperparams.js';

describe('deriveCoefficients', () => {
  it('matches the closed form for the defaults', () => {
    const c = deriveCoefficients(resolveHyperparams({ lr: 0.1 }));
    // largeLr = 0.1*1000/0.7, alpha = 1 - 0.49*10/1000, beta = 1 - alpha, zeta = 0.7/(0.7 + beta)
    expect(c.largeLr).toBeCloseTo(142.857142857143, 12);
    expect(c.alpha).toBeCloseTo(0.9951, 15);
    expect(c.beta).toBeCloseTo(0.0049, 15);
    expect(c.zeta).toBeCloseTo(0.7 / 0.7049, 15);
  });

  it('gives beta = 1, alpha = 0, zeta = 1/2 at kappa = xi = smallConst = 1', () => {
    expect(deriveCoefficients(resolveHyperparams({ lr: 0.5, kappa: 1, xi: 1, smallConst: 1 }))).toEqual({
      largeLr: 0.5,
      alpha: 0,
      beta: 1,
      zeta: 0.5,
    });
  });

  it('forms beta = 1 - alpha in float64, keeping tiny betas', () => {
    const { beta } = deriveCoefficients(resolveHyperparams({ lr: 0.01, kappa: 1e7, xi: 1 }));
    expect(beta / 4.9e-8).toBeCloseTo(1, 8);
  });
});

describe('fusedCoefficients', () => {
  it('expands the reference with weight decay folded in', () => {
    const h = resolveHyperparams({ lr: 0.05, weightDecay: 0.01 });
    const { largeLr, alpha, beta, zeta } = deriveCoefficients(h);
    expect(fusedCoefficients(h)).toEqual({
      bufFromBuf: alpha,
      bufFromParam: beta * (1 - largeLr * 0.01),
      bufFromGrad: -beta * largeLr,
      paramFromParam: zeta * (1 - 0.05 * 0.01),
      paramFromGrad: -zeta * 0.05,
      paramFromBuf: 1 - zeta,
    });
  });

  it('reduces to the plain update without weight decay: p and buf unchanged when g = 0 and buf = p', () => {
    const c = fusedCoefficients(resolveHyperparams({ lr: 0.1 }));
    expect(c.bufFromBuf + c.bufFromParam).toBeCloseTo(1, 15);
    expect(c.paramFromParam + c.paramFromBuf).toBeCloseTo(1, 15);
  });
});
