import { AccSGDConfigError } from '@accsgd/core';
import '@tensorflow/tfjs-backend-cpu';
import { describe, expect, it } from 'vitest';
import { accsgd } from './accsgd-optimizer.js';

// Issue 18, section 5: accsgd({ lr: 0.1, kappa: 0.5 }) blamed the default xi the user never set and
// printed 9.799999999999999. The check is @accsgd/core's; this is the tfjs entry point of it.
describe('accsgd() with kappa, xi and smallConst that do not fit together', () => {
  it('names the value the user set (kappa), says what it must be, and rounds for people', () => {
    let error: unknown;
    try {
      accsgd({ lr: 0.1, kappa: 0.5 });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(AccSGDConfigError);
    expect(error).toMatchObject({ field: 'kappa', value: 0.5, expected: '>= smallConst^2 * xi = 4.9' });
    expect((error as Error).message).toContain('xi = 10 (the default)');
    expect((error as Error).message).toContain('beta = smallConst^2 * xi / kappa = 9.8 must be in (0, 1]');
    expect((error as Error).message).not.toContain('9.799999999999999');
  });
});
