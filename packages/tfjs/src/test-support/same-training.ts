import { expect } from 'vitest';
import { type FitComparison, relativeDifference } from './fit-comparison.js';

/**
 * model.fit with the fused kernel against model.fit with tfjs ops (fused: false), same initial
 * weights, same 48 batches. The forward and backward passes are the same ops in both runs; only
 * the update differs, by float32 rounding: measured at most 4.5e-6 relative on cpu, 3.5e-6 on wasm,
 * and 0 on webgpu (both paths are the same f32 operations in WGSL there). 1e-4 leaves 20x; stale
 * weights (the wasm kernel's old in-place write) made the loss rise, a difference of order 1.
 */
const WEIGHT_TOLERANCE = 1e-4;

export function expectSameTraining(result: FitComparison): void {
  expect(result.steps).toBe(48);
  const { fused, composite } = result;
  // It trains: the loss falls by more than half over the run, on both paths.
  expect(fused.losses.at(-1)!).toBeLessThan(fused.losses[0]! * 0.5);
  expect(composite.losses.at(-1)!).toBeLessThan(composite.losses[0]! * 0.5);
  expect(fused.weights.length).toBe(4);
  fused.weights.forEach((w, i) => {
    expect(relativeDifference(w, composite.weights[i]!), `weight ${i}`).toBeLessThan(WEIGHT_TOLERANCE);
  });
  fused.losses.forEach((loss, epoch) => {
    expect(
      Math.abs(loss - composite.losses[epoch]!) / composite.losses[epoch]!,
      `loss ${epoch}`,
    ).toBeLessThan(WEIGHT_TOLERANCE);
  });
}
