import { type ConformanceProblem, type Hyperparams, referenceStep, resolveHyperparams } from '@accsgd/core';
import type { GoldenCase, GoldenStep } from './vectors.js';

/**
 * The golden cases, generated from the float64 reference (`referenceStep`, the spec's literal
 * form) on float32-representable inputs drawn from a seeded generator, so the files regenerate
 * byte-identically. Changing anything here changes the committed vectors: run `npm run vectors`.
 */

/** mulberry32: tiny, seedable, identical on every platform. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rng = () => number;
const uniform = (rng: Rng, n: number, scale: number) =>
  Float64Array.from({ length: n }, () => Math.fround((rng() * 2 - 1) * scale));
const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

interface ParamSpec {
  shape: number[];
  /** Magnitude of initial values and gradients. */
  scale?: number;
}

interface CaseSpec {
  name: string;
  description: string;
  seed: number;
  groups: ConformanceProblem['groups'];
  params: Record<string, ParamSpec>;
  steps: number;
  /** Whether `param` has a gradient at `step` (1-based); default always. */
  hasGradient?: (step: number, param: string) => boolean;
  /** Gradient from the current truth; default uniform noise of the parameter's scale. */
  gradient?: (param: string, truth: Float64Array, rng: Rng, step: number) => Float64Array;
  learningRates?: (step: number) => { group: number; lr: number }[];
}

function generate(spec: CaseSpec): GoldenCase {
  const rng = random(spec.seed);
  const names = Object.keys(spec.params);
  const problem: ConformanceProblem = {
    groups: spec.groups,
    params: Object.fromEntries(
      names.map((n) => {
        const { shape, scale = 1 } = spec.params[n]!;
        return [n, { shape, init: uniform(rng, size(shape), scale) }];
      }),
    ),
  };
  const hyper: Hyperparams[] = spec.groups.map((g) => resolveHyperparams(g.hyperparams));
  const groupOf = new Map<string, number>();
  spec.groups.forEach((g, i) => {
    for (const n of g.params) groupOf.set(n, i);
  });
  const params = new Map<string, Float64Array>(
    names.map((n) => [n, Float64Array.from(problem.params[n]!.init)]),
  );
  const buffers = new Map<string, Float64Array | null>(names.map((n) => [n, null]));
  const steps: GoldenStep[] = [];
  for (let step = 1; step <= spec.steps; step++) {
    const learningRates = spec.learningRates?.(step) ?? [];
    for (const { group, lr } of learningRates) hyper[group] = resolveHyperparams({ ...hyper[group]!, lr });
    const grads: Record<string, Float64Array | null> = {};
    for (const n of names) {
      const present = spec.hasGradient?.(step, n) ?? true;
      const scale = spec.params[n]!.scale ?? 1;
      grads[n] = present
        ? (spec.gradient?.(n, params.get(n)!, rng, step) ?? uniform(rng, params.get(n)!.length, scale))
        : null;
    }
    for (const n of names) {
      const grad = grads[n];
      if (!grad) continue;
      const next = referenceStep(params.get(n)!, buffers.get(n)!, grad, hyper[groupOf.get(n)!]!);
      params.set(n, next.param);
      buffers.set(n, next.buffer);
    }
    steps.push({
      learningRates,
      grads,
      expected: {
        params: Object.fromEntries(names.map((n) => [n, Float64Array.from(params.get(n)!)])),
        buffers: Object.fromEntries(
          names.map((n) => [n, buffers.get(n) ? Float64Array.from(buffers.get(n)!) : null]),
        ),
      },
    });
  }
  return { name: spec.name, description: spec.description, problem, steps };
}

const two = { w: { shape: [4, 3] }, b: { shape: [5] } };
const oneGroup = (hyperparams: ConformanceProblem['groups'][number]['hyperparams'], params = ['w', 'b']) => [
  { hyperparams, params },
];

export const GOLDEN_CASE_SPECS: CaseSpec[] = [
  {
    name: 'defaults',
    description: 'lr 0.1 with default kappa 1000, xi 10, smallConst 0.7; 10 steps',
    seed: 1,
    groups: oneGroup({ lr: 0.1 }),
    params: two,
    steps: 10,
  },
  {
    name: 'weight-decay',
    description: 'weightDecay 0.01, lr 0.05; 10 steps',
    seed: 2,
    groups: oneGroup({ lr: 0.05, weightDecay: 0.01 }),
    params: two,
    steps: 10,
  },
  {
    name: 'long-step',
    description: 'kappa 1e4, xi 100; 10 steps',
    seed: 3,
    groups: oneGroup({ lr: 0.01, kappa: 1e4, xi: 100 }),
    params: two,
    steps: 10,
  },
  {
    name: 'very-long-step',
    description:
      'kappa 1e7, xi 1: beta = 4.9e-8 is below float32 resolution near 1, so beta = 1 - alpha must be formed in float64',
    seed: 4,
    groups: oneGroup({ lr: 0.01, kappa: 1e7, xi: 1 }),
    params: two,
    steps: 10,
  },
  {
    name: 'beta-one',
    description: 'kappa = xi = smallConst = 1: beta = 1, alpha = 0 (the buffer forgets itself every step)',
    seed: 5,
    groups: oneGroup({ lr: 0.1, kappa: 1, xi: 1, smallConst: 1 }),
    params: two,
    steps: 10,
  },
  {
    name: 'groups',
    description: 'three groups with different lr, kappa, xi, smallConst and weightDecay',
    seed: 6,
    groups: [
      { hyperparams: { lr: 0.1 }, params: ['a'] },
      {
        hyperparams: { lr: 0.02, kappa: 100, xi: 5, smallConst: 0.5, weightDecay: 0.001 },
        params: ['b', 'c'],
      },
      { hyperparams: { lr: 0.3, kappa: 5000, xi: 70, smallConst: 1, weightDecay: 0.1 }, params: ['d'] },
    ],
    params: { a: { shape: [6] }, b: { shape: [2, 2] }, c: { shape: [3] }, d: { shape: [2, 3, 2] } },
    steps: 12,
  },
  {
    name: 'missing-gradients',
    description:
      'parameters without a gradient at some steps, including the first: skipped entirely, buffers untouched or absent',
    seed: 7,
    groups: oneGroup({ lr: 0.1 }, ['w', 'b', 'never']),
    params: { ...two, never: { shape: [3] } },
    steps: 12,
    hasGradient: (step, p) =>
      p === 'w' ? step !== 3 && step !== 4 : p === 'b' ? step > 2 && step % 3 !== 0 : false,
  },
  {
    name: 'learning-rate-changes',
    description: 'lr changed between steps, per group, including to 0 and back',
    seed: 8,
    groups: [
      { hyperparams: { lr: 0.1 }, params: ['w'] },
      { hyperparams: { lr: 0.05, kappa: 300 }, params: ['b'] },
    ],
    params: two,
    steps: 12,
    learningRates: (step) =>
      step === 3
        ? [{ group: 0, lr: 0.02 }]
        : step === 5
          ? [
              { group: 0, lr: 0 },
              { group: 1, lr: 0.2 },
            ]
          : step === 8
            ? [{ group: 0, lr: 0.5 }]
            : [],
  },
  {
    name: 'magnitudes',
    description: 'large (1e3) and tiny (1e-6) values in separate tensors',
    seed: 9,
    groups: oneGroup({ lr: 0.1 }, ['large', 'tiny']),
    params: { large: { shape: [33], scale: 1e3 }, tiny: { shape: [33], scale: 1e-6 } },
    steps: 10,
  },
  {
    name: 'odd-lengths',
    description: 'lengths 1, 3, 257 and 65537, to reach vector tails and workgroup edges',
    seed: 10,
    groups: oneGroup({ lr: 0.1, weightDecay: 0.001 }, ['n1', 'n3', 'n257', 'n65537']),
    params: { n1: { shape: [1] }, n3: { shape: [3] }, n257: { shape: [257] }, n65537: { shape: [65537] } },
    steps: 2,
  },
  {
    name: 'long-trajectory',
    description: '500 steps on a noisy quadratic (gradient = h*(p - target) + noise), as in training',
    seed: 11,
    groups: oneGroup({ lr: 0.2, kappa: 1000, xi: 10 }, ['x', 'y']),
    params: { x: { shape: [16] }, y: { shape: [7] } },
    steps: 500,
    gradient: (param, truth, rng) => {
      const n = truth.length;
      return Float64Array.from({ length: n }, (_, i) => {
        const curvature = param === 'x' ? 0.02 + (0.98 * i) / (n - 1) : 0.5;
        const target = 0.25 * Math.sin(i + 1);
        return Math.fround(curvature * (truth[i]! - target) + 0.1 * (rng() * 2 - 1));
      });
    },
  },
  {
    name: 'subnormal-params',
    description:
      'all-subnormal parameters and gradients (|x| < 2^-126), one with zero gradients: judged against the floor of SPEC §3, which flush-to-zero meets',
    seed: 12,
    groups: oneGroup({ lr: 0.1 }, ['w', 'b', 'z']),
    params: {
      w: { shape: [4, 3], scale: 1e-39 },
      b: { shape: [5], scale: 1e-41 },
      z: { shape: [3], scale: 1e-39 },
    },
    steps: 10,
    gradient: (param, truth, rng) =>
      param === 'z'
        ? new Float64Array(truth.length)
        : uniform(rng, truth.length, param === 'w' ? 1e-39 : 1e-41),
  },
  {
    name: 'near-min-normal',
    description:
      'values near 2^-126 (scale 1e-37) with lr 1e-40 and weightDecay 0.01: normal inputs, subnormal multipliers and intermediates',
    seed: 13,
    groups: oneGroup({ lr: 1e-40, weightDecay: 0.01 }),
    params: { w: { shape: [4, 3], scale: 1e-37 }, b: { shape: [5], scale: 1e-37 } },
    steps: 10,
  },
];

export function generateGoldenCases(): GoldenCase[] {
  return GOLDEN_CASE_SPECS.map(generate);
}
