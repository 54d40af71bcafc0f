import { findNodeWebGPU } from '@accsgd/conformance';
import { accsgd } from '@accsgd/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { bandwidth, STEP_BYTES_PER_ELEMENT, wgslCopy } from './gpu-copy.js';
import { type Target, verdict } from './stats.js';
import { timeInterleaved } from './timing.js';
import { LAYOUTS, type Row, type SectionResult } from './types.js';

const LR = 0.01;
/** The targets for the fused step's ratio to momentum (none for webgpu in this report). */
export const TFJS_TARGETS: Record<string, Target> = {
  wasm: { op: '<=', limit: 0.5 },
  cpu: { op: '<=', limit: 0.1 },
};

/**
 * @accsgd/tfjs's fused AccSGD (default nonFinite, and 'allow') beside tf.train.momentum(lr, 0.9) on
 * one backend, the same variables and gradients, as packages/tfjs/bench/step.bench.ts measures it.
 */
export async function runTfjs(backend: string, repeats: number): Promise<SectionResult> {
  const section = `tfjs:${backend}`;
  let info: string | undefined;
  tf.env().set('IS_TEST', true);
  if (backend === 'cpu') await import('@tensorflow/tfjs-backend-cpu');
  else if (backend === 'wasm') await import('@tensorflow/tfjs-backend-wasm');
  else if (backend === 'webgpu') {
    const found = await findNodeWebGPU();
    if (!found.available) return { section, rows: [], skipped: found.reason };
    info = `WebGPU adapter (Dawn): ${found.description}`;
    await import('@tensorflow/tfjs-backend-webgpu');
  } else throw new Error(`unknown tfjs backend ${backend}`);
  if (!(await tf.setBackend(backend)))
    return { section, rows: [], skipped: `tf.setBackend('${backend}') failed` };
  await tf.ready();
  const synchronous = backend === 'cpu' || backend === 'wasm';
  const rows: Row[] = [];
  let run = 0;
  for (const layout of LAYOUTS) {
    const { tensors, size } = layout;
    const prefix = `throughput${run++}`;
    const variables = Array.from({ length: tensors }, (_, i) =>
      tf.tidy(() => tf.variable(tf.randomUniform([size], -1, 1, 'float32', i + 1), true, `${prefix}/v${i}`)),
    );
    const grads = variables.map((v, i) => ({
      name: v.name,
      tensor: tf.tidy(() => tf.randomUniform([size], -0.1, 0.1, 'float32', 1000 + i)),
    }));
    const last = variables[variables.length - 1]!;
    // cpu and wasm finish every kernel inside the call; on webgpu a one-element read-back waits
    // for the queued work (see the tfjs bench for why cpu and wasm must not read back).
    const settle = async () => {
      if (synchronous) return;
      const one = tf.tidy(() => tf.slice(tf.reshape(last, [-1]), 0, 1));
      await one.data();
      one.dispose();
    };
    const stepOf = (optimizer: tf.Optimizer) => async () => {
      const async = (
        optimizer as { applyGradientsAsync?: (g: { name: string; tensor: tf.Tensor }[]) => Promise<void> }
      ).applyGradientsAsync;
      if (async) await async.call(optimizer, grads);
      else optimizer.applyGradients(grads);
      await settle();
    };
    const optimizers = {
      momentum: tf.train.momentum(LR, 0.9),
      fused: accsgd({ lr: LR }),
      allow: accsgd({ lr: LR, nonFinite: 'allow' }),
    };
    // On webgpu, a WGSL copy kernel on tfjs's own device, interleaved with the steps: the
    // roofline each step's effective bandwidth is compared with.
    const device = backend === 'webgpu' ? (tf.backend() as unknown as { device: GPUDevice }).device : null;
    const copy = device ? wgslCopy(device, tensors * size) : null;
    const ms = await timeInterleaved(
      {
        momentum: stepOf(optimizers.momentum),
        fused: stepOf(optimizers.fused),
        allow: stepOf(optimizers.allow),
        copy: copy ? copy.run : () => {},
      },
      repeats,
    );
    copy?.destroy();
    const target = TFJS_TARGETS[backend];
    for (const [variant, stepMs] of [
      ['AccSGD fused, default nonFinite', ms.fused],
      ["AccSGD fused, nonFinite 'allow'", ms.allow],
    ] as const) {
      const ratio = stepMs / ms.momentum;
      rows.push({
        framework: '@accsgd/tfjs',
        backend: backend === 'webgpu' ? `webgpu (${info?.replace(/^.*: /, '')})` : backend,
        layout: layout.label,
        variant,
        ms: stepMs,
        baseline: `tf.train.momentum(${LR}, 0.9)`,
        baselineMs: ms.momentum,
        ratio,
        // The target is on the default (fused, checked) step.
        ...(target && variant.includes('default') ? { target, verdict: verdict(ratio, target) } : {}),
        ...(copy
          ? {
              bandwidth: bandwidth(
                { bytes: STEP_BYTES_PER_ELEMENT * tensors * size, ms: stepMs },
                { bytes: copy.bytes, ms: ms.copy },
                `${STEP_BYTES_PER_ELEMENT} B per element; the step's time includes a one-element read-back`,
              ),
            }
          : {}),
      });
    }
    for (const o of Object.values(optimizers)) o.dispose();
    tf.dispose([...variables, ...grads.map((g) => g.tensor)]);
  }
  return { section, rows, ...(info ? { info } : {}) };
}
