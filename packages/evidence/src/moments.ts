import { createStepper, type Hyper, type MethodName } from './optimizers.js';
import type { Problem } from './problems.js';

/**
 * The exact expected error E||w_t - w*||_H^2, without sampling.
 *
 * With noiseless labels the gradient at w for input x is x x^T (w - w*), so every method here
 * maps the deviation state s = (w - w*, b) (b: the momentum buffer, as a deviation from w* for
 * AccSGD, whose buffer is a point, and as is for HB/NAG, whose buffer is a sum of gradients)
 * linearly: s' = A(x) s. The second moment S = E[s s^T] then follows S' = E_x[A(x) S A(x)^T].
 * A(x) is affine in x x^T, so the expectation needs the moments of x up to order 4 only, and a
 * quadrature that is exact to that order gives it exactly: the two atoms of the discrete
 * distribution (signs do not matter), and for the Gaussian the 3x3-point Gauss-Hermite product
 * rule (exact for per-coordinate degree <= 5).
 *
 * A(x) is not written down here: it is read off the method's own step (for AccSGD, the
 * @accsgd/core optimizer), stepping each basis state once with the gradient x x^T p.
 */

export interface QuadraturePoint {
  x: readonly [number, number];
  weight: number;
}

/** Points and weights with E_q[f(x)] = E[f(x)] for every f of degree <= 4 in x. */
export function quadrature(problem: Problem): QuadraturePoint[] {
  const s1 = Math.sqrt(problem.h[1] / (problem.name === 'discrete' ? 0.5 : 1));
  if (problem.name === 'discrete') {
    return [
      { x: [1, 0], weight: 0.5 },
      { x: [0, s1], weight: 0.5 },
    ];
  }
  // Probabilists' Gauss-Hermite, 3 points: nodes 0, +-sqrt(3), weights 2/3, 1/6.
  const nodes = [-Math.sqrt(3), 0, Math.sqrt(3)];
  const weights = [1 / 6, 2 / 3, 1 / 6];
  const out: QuadraturePoint[] = [];
  for (let i = 0; i < 3; i++)
    for (let j = 0; j < 3; j++)
      out.push({ x: [nodes[i]!, s1 * nodes[j]!], weight: weights[i]! * weights[j]! });
  return out;
}

/** A(x) (4x4, row-major, state order p0, p1, b0, b1) for each point, read off the method's step. */
export function transitionMatrices(
  method: MethodName,
  hyper: Hyper,
  points: readonly QuadraturePoint[],
): Float64Array[] {
  const lanes = 4 * points.length;
  const param = new Float64Array(2 * lanes);
  const grad = new Float64Array(2 * lanes);
  const stepper = createStepper(method, param, hyper);
  // AccSGD creates its buffer (a copy of p) on the first step: a zero gradient at p = 0 changes nothing.
  if (stepper.buffer() === null && method === 'AccSGD') stepper.step(grad);
  const buf = stepper.buffer();
  points.forEach((point, q) => {
    for (let k = 0; k < 4; k++) {
      const lane = 4 * q + k;
      param[2 * lane] = k === 0 ? 1 : 0;
      param[2 * lane + 1] = k === 1 ? 1 : 0;
      if (buf) {
        buf[2 * lane] = k === 2 ? 1 : 0;
        buf[2 * lane + 1] = k === 3 ? 1 : 0;
      }
      const [x0, x1] = point.x;
      const r = x0 * param[2 * lane]! + x1 * param[2 * lane + 1]!;
      grad[2 * lane] = r * x0;
      grad[2 * lane + 1] = r * x1;
    }
  });
  stepper.step(grad);
  return points.map((_, q) => {
    const a = new Float64Array(16);
    for (let k = 0; k < 4; k++) {
      const lane = 4 * q + k;
      a[0 * 4 + k] = param[2 * lane]!;
      a[1 * 4 + k] = param[2 * lane + 1]!;
      a[2 * 4 + k] = buf ? buf[2 * lane]! : 0;
      a[3 * 4 + k] = buf ? buf[2 * lane + 1]! : 0;
    }
    return a;
  });
}

/** The 16x16 operator vec(S) -> vec(E[A S A^T]) = sum_q w_q (A_q kron A_q) vec(S). */
export function secondMomentOperator(
  matrices: readonly Float64Array[],
  weights: readonly number[],
): Float64Array {
  const t = new Float64Array(256);
  matrices.forEach((a, q) => {
    const w = weights[q]!;
    for (let i = 0; i < 4; i++)
      for (let j = 0; j < 4; j++)
        for (let k = 0; k < 4; k++)
          for (let l = 0; l < 4; l++) t[(i * 4 + j) * 16 + (k * 4 + l)]! += w * a[i * 4 + k]! * a[j * 4 + l]!;
  });
  return t;
}

/** The initial deviation state: w0 = 0, so p - w* = -w*; b = 0 (HB, NAG) or b = p (AccSGD's lazy copy). */
export function initialState(method: MethodName, problem: Problem): [number, number, number, number] {
  const d0 = -problem.wStar[0];
  const d1 = -problem.wStar[1];
  return method === 'AccSGD' ? [d0, d1, d0, d1] : [d0, d1, 0, 0];
}

/** E||w_t - w*||_H^2 for t = 0..steps (exact), for inspection and tests. */
export function expectedErrors(problem: Problem, method: MethodName, hyper: Hyper, steps: number): number[] {
  const out: number[] = [];
  runMoments(problem, method, hyper, steps, (_, e) => {
    out.push(e);
    return false;
  });
  return out;
}

/**
 * Iterations until E||w_t - w*||_H^2 <= tolerance * E||w_0 - w*||_H^2 (exact), or Infinity when
 * not within maxIterations, or when the error exceeds `divergence` times its initial value.
 */
export function expectedIterationsToTarget(
  problem: Problem,
  method: MethodName,
  hyper: Hyper,
  options: { tolerance: number; maxIterations: number; divergence?: number },
): number {
  let initial = Number.NaN;
  const limit = options.divergence ?? 1e8;
  let hit = Number.POSITIVE_INFINITY;
  try {
    runMoments(problem, method, hyper, options.maxIterations, (t, e) => {
      if (t === 0) {
        initial = e;
        return false;
      }
      if (e <= options.tolerance * initial) {
        hit = t;
        return true;
      }
      return !(e <= limit * initial); // stop on divergence (or NaN)
    });
  } catch {
    return Number.POSITIVE_INFINITY; // invalid setting (the AccSGD constructor validates)
  }
  return hit;
}

function runMoments(
  problem: Problem,
  method: MethodName,
  hyper: Hyper,
  steps: number,
  visit: (t: number, error: number) => boolean,
): void {
  const points = quadrature(problem);
  const op = secondMomentOperator(
    transitionMatrices(method, hyper, points),
    points.map((p) => p.weight),
  );
  const s0 = initialState(method, problem);
  let s = new Float64Array(16);
  let next = new Float64Array(16);
  for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) s[i * 4 + j] = s0[i]! * s0[j]!;
  const [h0, h1] = problem.h;
  if (visit(0, h0 * s[0]! + h1 * s[5]!)) return;
  for (let t = 1; t <= steps; t++) {
    for (let r = 0; r < 16; r++) {
      let acc = 0;
      const row = r * 16;
      for (let c = 0; c < 16; c++) acc += op[row + c]! * s[c]!;
      next[r] = acc;
    }
    [s, next] = [next, s];
    if (visit(t, h0 * s[0]! + h1 * s[5]!)) return;
  }
}
