import { AccSGD } from '@accsgd/core';

/**
 * SGD, heavy ball and Nesterov as small functional steps over float64 vectors, updating `param`
 * (and the momentum buffer `buf`) in place from the gradient `grad` taken at `param`. They act
 * elementwise, so one vector can hold many independent runs side by side.
 */

/** SGD: p <- p - lr * g. */
export function sgdStep(param: Float64Array, grad: Float64Array, lr: number): void {
  for (let i = 0; i < param.length; i++) param[i]! -= lr * grad[i]!;
}

/**
 * Heavy ball (Polyak), in PyTorch's form: buf <- m * buf + g; p <- p - lr * buf. Equivalently
 * p_{t+1} = p_t - lr * g_t + m * (p_t - p_{t-1}). The buffer starts at zero.
 */
export function heavyBallStep(
  param: Float64Array,
  buf: Float64Array,
  grad: Float64Array,
  lr: number,
  momentum: number,
): void {
  for (let i = 0; i < param.length; i++) {
    const b = momentum * buf[i]! + grad[i]!;
    buf[i] = b;
    param[i]! -= lr * b;
  }
}

/**
 * Nesterov (NAG), in PyTorch's form: buf <- m * buf + g; p <- p - lr * (g + m * buf). This is
 * Sutskever et al.'s NAG with the stored iterate at the look-ahead point, so the gradient is
 * taken at `param`. The buffer starts at zero.
 */
export function nesterovStep(
  param: Float64Array,
  buf: Float64Array,
  grad: Float64Array,
  lr: number,
  momentum: number,
): void {
  for (let i = 0; i < param.length; i++) {
    const g = grad[i]!;
    const b = momentum * buf[i]! + g;
    buf[i] = b;
    param[i]! -= lr * (g + momentum * b);
  }
}

export type MethodName = 'SGD' | 'HB' | 'NAG' | 'AccSGD';
export const METHODS: readonly MethodName[] = ['SGD', 'HB', 'NAG', 'AccSGD'];

export type Hyper = Readonly<Record<string, number>>;

/** A stepper over one parameter vector: call step(grad) once per iteration. */
export interface Stepper {
  step(grad: Float64Array): void;
  /** The live momentum buffer (null for SGD, and for AccSGD before its first step). */
  buffer(): Float64Array | null;
}

/** AccSGD's smallConst, fixed for the experiment. */
export const SMALL_CONST = 0.7;

/** Creates the method's stepper over `param` (updated in place) with hyperparameters `h`. */
export function createStepper(method: MethodName, param: Float64Array, h: Hyper): Stepper {
  switch (method) {
    case 'SGD': {
      const lr = need(h, 'lr');
      return { step: (g) => sgdStep(param, g, lr), buffer: () => null };
    }
    case 'HB': {
      const lr = need(h, 'lr');
      const m = need(h, 'momentum');
      const buf = new Float64Array(param.length);
      return { step: (g) => heavyBallStep(param, buf, g, lr, m), buffer: () => buf };
    }
    case 'NAG': {
      const lr = need(h, 'lr');
      const m = need(h, 'momentum');
      const buf = new Float64Array(param.length);
      return { step: (g) => nesterovStep(param, buf, g, lr, m), buffer: () => buf };
    }
    case 'AccSGD': {
      // The real optimizer from @accsgd/core, in float64.
      const opt = new AccSGD([param], {
        lr: need(h, 'lr'),
        kappa: need(h, 'kappa'),
        xi: need(h, 'xi'),
        smallConst: SMALL_CONST,
      });
      const grads = [null as unknown as Float64Array];
      return {
        step: (g) => {
          grads[0] = g;
          opt.step(grads);
        },
        buffer: () => opt.buffer(0) as Float64Array | null,
      };
    }
  }
}

function need(h: Hyper, key: string): number {
  const v = h[key];
  if (v === undefined) throw new Error(`missing hyperparameter ${key}`);
  return v;
}
