/**
 * One synchronous applyGradients with the default non-finite check, on a backend whose gradients
 * live on the GPU: what model.fit does at every step. Runs in Chromium (in-use.browser.test.ts).
 */
import { fusedCoefficients, fusedUpdate, resolveHyperparams } from '@accsgd/core';
import * as tf from '@tensorflow/tfjs-core';
import { accsgd } from '../accsgd-optimizer.js';
import type { TfjsBackendName } from '../conformance.js';

export interface SyncStepOutcome {
  /** The error's name, or null when the step was applied. */
  error: string | null;
  message: string;
  /** The variable after an applied step (null after an error), and what a correct step gives. */
  got: Float32Array | null;
  expected: Float32Array;
  /** Whether the variable still holds the storage it had before the call: no update was written. */
  untouched: boolean;
  /** A second step with a NaN gradient (element 7): how it was reported, and the variable after it. */
  bad: { error: string | null; message: string; after: Float32Array | null };
}

// Large enough that tfjs does not forward the ops to its CPU backend: the data is on the GPU.
const N = 4096;

export async function syncStepOutcome(options: { backend: TfjsBackendName }): Promise<SyncStepOutcome> {
  if (options.backend === 'webgpu') await import('@tensorflow/tfjs-backend-webgpu');
  else if (options.backend === 'webgl') await import('@tensorflow/tfjs-backend-webgl');
  await tf.setBackend(options.backend);
  await tf.ready();
  const before = Float32Array.from({ length: N }, (_, i) => Math.sin(i));
  const gradient = Float32Array.from({ length: N }, (_, i) => Math.cos(i) / 10);
  const v = tf.variable(tf.mul(tf.tensor1d(before), 1), true, 'sync_step_v');
  const g = tf.mul(tf.tensor1d(gradient), 1);
  const h = resolveHyperparams({ lr: 0.1, kappa: 100, xi: 5 });
  const opt = accsgd({ lr: 0.1, kappa: 100, xi: 5 });
  const storage = v.dataId;
  let error: string | null = null;
  let message = '';
  try {
    opt.applyGradients({ sync_step_v: g });
  } catch (e) {
    error = (e as Error).name;
    message = (e as Error).message;
  }
  const untouched = v.dataId === storage;
  const got = error === null ? Float32Array.from((await v.data()) as Float32Array) : null;
  const expected = before.slice();
  fusedUpdate(expected, gradient, new Float32Array(N), fusedCoefficients(h), true);
  const badGradient = gradient.slice();
  badGradient[7] = Number.NaN;
  const gBad = tf.mul(tf.tensor1d(badGradient), 1);
  const bad: SyncStepOutcome['bad'] = { error: null, message: '', after: null };
  try {
    // Where the check runs on the device (webgpu) the step is queued and its verdict read back
    // later: verifySteps() waits for it, as a training loop's next call would see it.
    opt.applyGradients({ sync_step_v: gBad });
    await opt.verifySteps();
  } catch (e) {
    bad.error = (e as Error).name;
    bad.message = (e as Error).message;
  }
  bad.after = Float32Array.from((await v.data()) as Float32Array);
  opt.dispose();
  tf.dispose([v, g, gBad]);
  return { error, message, got, expected, untouched, bad };
}
