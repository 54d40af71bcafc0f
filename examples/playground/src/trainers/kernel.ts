import { WebGPUAccSGD } from '@accsgd/webgpu-kernel';
import type * as TF from '@tensorflow/tfjs-core';
import { useTfjs } from '../backends.js';
import type { Batch } from '../data.js';
import { checkParams } from './tfjs.js';
import { forward, lossOf } from './tfjs-model.js';
import { type Checkpoint, type Trainer, type TrainerOptions, UnsupportedCombination } from './types.js';

/** What the page needs of tfjs-backend-webgpu's backend object (public fields, not in tfjs-core's types). */
interface WebGPUBackendLike {
  device: GPUDevice;
}

let trainerCount = 0;

/**
 * tfjs on WebGPU computes the gradients; the update is @accsgd/webgpu-kernel's raw WGSL kernel on
 * the same GPUDevice. Each step: tfjs writes the gradients (dataToGPU: a GPU-side copy), the page
 * copies them into the kernel's gradient buffers, the kernel updates its parameter buffers, and
 * tfjs's variables take the new values from those buffers (a GPU-side copy). Nothing goes through
 * the CPU but the loss.
 */
export async function createKernelTrainer(options: TrainerOptions): Promise<Trainer> {
  const { spec, hyper } = options;
  if (options.optimizer !== 'accsgd')
    throw new UnsupportedCombination(
      `webgpu-kernel runs only AccSGD (it is AccSGD's WGSL kernel); pick tfjs-webgpu for ${options.optimizer}`,
    );
  const tf = await useTfjs('webgpu');
  const device = (tf.backend() as unknown as WebGPUBackendLike).device;
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  const buffers = spec.params.map((p) => {
    const params = device.createBuffer({ size: p.init.byteLength, usage, label: `${p.name} params` });
    const grads = device.createBuffer({ size: p.init.byteLength, usage, label: `${p.name} grads` });
    device.queue.writeBuffer(params, 0, p.init as Float32Array<ArrayBuffer>);
    return { params, grads };
  });
  const prefix = `kernel${++trainerCount}`;
  const variables = spec.params.map((p) =>
    tf.variable(tf.tensor(p.init, p.shape), true, `${prefix}/${p.name}`),
  );
  const byName = Object.fromEntries(spec.params.map((p, i) => [p.name, variables[i]!]));
  const optimizer = await WebGPUAccSGD.create(
    device,
    [
      {
        tensors: spec.params.map((p, i) => ({
          name: p.name,
          params: buffers[i]!.params,
          grads: buffers[i]!.grads,
          elements: p.init.length,
          shape: p.shape,
        })),
      },
    ],
    { lr: hyper.lr, kappa: hyper.kappa, xi: hyper.xi, smallConst: hyper.smallConst },
    { label: prefix },
  );

  const select = async () => {
    if (tf.getBackend() !== 'webgpu') await useTfjs('webgpu');
  };
  /** The variables take the kernel's parameters (tfjs copies the buffer on the GPU). */
  const pullParams = () => {
    spec.params.forEach((p, i) => {
      const fresh = tf.tensor({ buffer: buffers[i]!.params }, p.shape, 'float32');
      variables[i]!.assign(fresh);
      fresh.dispose();
    });
  };

  return {
    backend: 'webgpu-kernel',
    async step(batch: Batch) {
      await select();
      const rows = batch.y.length;
      const x = tf.tensor2d(batch.x, [rows, batch.x.length / rows]);
      const labels = tf.tensor2d(batch.labels, [rows, spec.classes]);
      const { value, grads } = tf.variableGrads(
        () => lossOf(tf, forward(tf, spec, byName, x), labels),
        variables,
      );
      const onGpu: { tensorRef: TF.Tensor }[] = [];
      try {
        const encoder = device.createCommandEncoder({ label: `${prefix} gradients` });
        variables.forEach((v, i) => {
          // dataToGPU submits tfjs's pending work first, so the copy below sees finished gradients.
          const data = grads[v.name]!.dataToGPU();
          onGpu.push(data);
          encoder.copyBufferToBuffer(data.buffer!, 0, buffers[i]!.grads, 0, spec.params[i]!.init.byteLength);
        });
        device.queue.submit([encoder.finish()]);
        await optimizer.step(); // rejects on a non-finite gradient (checked on the GPU), changing nothing
        pullParams();
        return (await value.data())[0]!;
      } finally {
        tf.dispose([x, labels, value, ...Object.values(grads), ...onGpu.map((d) => d.tensorRef)]);
      }
    },
    async predict(xs: Float32Array, count: number) {
      await select();
      const logits = tf.tidy(() => forward(tf, spec, byName, tf.tensor2d(xs, [count, xs.length / count])));
      try {
        return (await logits.data()) as Float32Array;
      } finally {
        logits.dispose();
      }
    },
    async checkpoint() {
      const params = new Map<string, Float32Array>();
      for (const p of spec.params) params.set(p.name, await optimizer.readParam(p.name));
      return { params, state: await optimizer.exportState() };
    },
    async restore(checkpoint: Checkpoint) {
      await select();
      checkParams(spec.params, checkpoint.params);
      await optimizer.importState(checkpoint.state);
      spec.params.forEach((p, i) => {
        device.queue.writeBuffer(
          buffers[i]!.params,
          0,
          checkpoint.params.get(p.name)! as Float32Array<ArrayBuffer>,
        );
      });
      pullParams();
    },
    async dispose() {
      optimizer.destroy();
      tf.dispose(variables);
      for (const b of buffers) {
        b.params.destroy();
        b.grads.destroy();
      }
    },
  };
}
