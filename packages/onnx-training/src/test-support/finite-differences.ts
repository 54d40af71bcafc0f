import * as ort from 'onnxruntime-node';
import { expect } from 'vitest';
import { type AutodiffOptions, buildGradientModel } from '../autodiff/gradient.js';
import { type ForwardSpec, forwardModel, positive, random } from './forward-models.js';

/**
 * Every backward rule against central finite differences, in float64 on onnxruntime-node cpu: the
 * forward model is written in float64, buildGradientModel differentiates it (the same code that
 * builds float32 train steps), and the loss output of the same session is evaluated at x +- h.
 *
 * Step h = 1e-5: the central difference's truncation error is h^2/6 |f'''| ~ 2e-11 for these O(1)
 * functions and its rounding error eps |L| / h ~ 2e-16 * 10 / 1e-5 = 2e-10, so an error above
 * TOLERANCE = 1e-7 (relative to max(1, |gradient|)) means a wrong rule, not noise. A wrong rule is
 * off by O(|gradient|) (a missing broadcast sum, a transposed factor). Inputs of Relu are kept away
 * from 0 (|x| >= 0.1 >> h), of Log, Sqrt and Div's denominator in [0.5, 2].
 */
export const H = 1e-5;
export const TOLERANCE = 1e-7;

/**
 * ONNX Runtime's CPU has no float64 Erf, so Erf and exact Gelu are checked in float32: h = 4e-3
 * balances truncation (h^2/6 |third derivative| ~ 5e-6) and rounding (6e-8 |L| / h ~ 2e-5); a
 * wrong rule is still off by O(|gradient|), far above 2e-4.
 */
export const H_FLOAT32 = 4e-3;
export const TOLERANCE_FLOAT32 = 2e-4;

export interface Case {
  name: string;
  spec: Omit<ForwardSpec, 'double'>;
  /** Inputs to differentiate (all float inputs by default) and their values (random by default). */
  values?: Record<string, number[]>;
  loss?: AutodiffOptions['loss'];
  /** Checked in float32 (ops ONNX Runtime's CPU lacks in float64). */
  float32?: true;
  /**
   * A float32 case's step and tolerance when not H_FLOAT32 / TOLERANCE_FLOAT32: a loss that is
   * piecewise quadratic in each input (convolutions, pools under mse) has no truncation error, so
   * a larger step only shrinks the rounding error eps |L| / h (ops/ops.test.ts says why per case).
   */
  step?: { h: number; tolerance: number };
}

/**
 * Differentiates the case's model with respect to every float input and compares each element of
 * each gradient with the central difference of the loss; returns the worst error (expect fails on
 * one above tolerance). `k` seeds the random values.
 */
export async function checkAgainstFiniteDifferences(c: Case, k: number): Promise<number> {
  const bytes = forwardModel({ ...c.spec, double: !c.float32 });
  const [h, tolerance, type] = c.float32
    ? ([c.step?.h ?? H_FLOAT32, c.step?.tolerance ?? TOLERANCE_FLOAT32, 'float32'] as const)
    : ([H, TOLERANCE, 'float64'] as const);
  const Data = c.float32 ? Float32Array : Float64Array;
  const names = Object.keys(c.spec.inputs);
  const gm = buildGradientModel(bytes, { loss: c.loss ?? 'mse', inputs: names, trainable: [] });
  const session = await ort.InferenceSession.create(gm.model, { executionProviders: ['cpu'] });
  const values = new Map<string, Float32Array | Float64Array>();
  gm.inputs.forEach((input, j) => {
    const n = input.shape.reduce((a, b) => a * b, 1);
    const given = c.values?.[input.name];
    const data =
      input.name === gm.labels?.name && c.loss === 'softmax-cross-entropy'
        ? positive(n, 100 + k, 0, 1) // soft labels
        : (given ?? random(n, 1000 * k + j + 1));
    values.set(input.name, Data.from(data));
  });
  const run = async () => {
    const feeds: Record<string, ort.Tensor> = {};
    for (const input of gm.inputs)
      feeds[input.name] = new ort.Tensor(type, values.get(input.name)!, input.shape);
    return session.run(feeds);
  };
  const out = await run();
  let caseWorst = 0;
  for (const name of names) {
    const analytic = out[gm.gradients.get(name)!]!.data as Float32Array | Float64Array;
    const x = values.get(name)!;
    expect(analytic.length).toBe(x.length);
    for (let i = 0; i < x.length; i++) {
      const saved = x[i]!;
      x[i] = saved + h;
      const plus = Number((await run())[gm.loss]!.data[0]);
      x[i] = saved - h;
      const minus = Number((await run())[gm.loss]!.data[0]);
      x[i] = saved;
      const numeric = (plus - minus) / (2 * h);
      const error = Math.abs(analytic[i]! - numeric) / Math.max(1, Math.abs(analytic[i]!));
      caseWorst = Math.max(caseWorst, error);
      expect(error, `${name}[${i}]: autodiff ${analytic[i]} vs finite difference ${numeric}`).toBeLessThan(
        tolerance,
      );
    }
  }
  await session.release();
  return caseWorst;
}
