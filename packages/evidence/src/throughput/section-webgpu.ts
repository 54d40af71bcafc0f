import { findNodeWebGPU } from '@accsgd/conformance';
import { createFlatStorage, WebGPUAccSGD } from '@accsgd/webgpu-kernel';
import { bandwidth, STEP_BYTES_PER_ELEMENT, wgslCopy } from './gpu-copy.js';
import { timeInterleaved } from './timing.js';
import { LAYOUTS, type Row, type SectionResult } from './types.js';

/**
 * @accsgd/webgpu-kernel's step beside its copy floor, measured as packages/webgpu-kernel/bench/
 * step.bench.js does: the floor is 2.5x a copyBufferToBuffer of the same element count (a step moves
 * 20 bytes per element, a copy 8); also 2.5x a WGSL vec4 copy kernel (the fastest a WGSL update
 * could be on a CPU implementation such as SwiftShader, which emulates storage accesses lane by
 * lane). Each timing is wall time from submit to onSubmittedWorkDone (the same for step and copies).
 * Layouts: one tensor, and 1024 tensors in one group (one multi-tensor dispatch). Each row also
 * carries the step's effective bandwidth (20 bytes per element over its time) and its ratio to
 * the WGSL copy kernel's, so that a run on a real GPU says how close the step is to the roofline.
 */
export async function runWebGPU(repeats: number): Promise<SectionResult> {
  const section = 'webgpu-kernel';
  const found = await findNodeWebGPU();
  if (!found.available) return { section, rows: [], skipped: found.reason };
  const adapter = found.adapter as GPUAdapter;
  const info = `WebGPU adapter (Dawn): ${found.description}`;
  const device = await adapter.requestDevice({
    requiredLimits: {
      maxBufferSize: adapter.limits.maxBufferSize,
      maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
    },
  });
  // Dawn's pending promises do not keep Node's event loop alive on their own.
  const keepAlive = setInterval(() => {}, 1e3);
  try {
    const USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const submit = async (encoder: GPUCommandEncoder) => {
      device.queue.submit([encoder.finish()]);
      await device.queue.onSubmittedWorkDone();
    };
    const rows: Row[] = [];
    for (const layout of LAYOUTS) {
      const { tensors, size } = layout;
      const elements = tensors * size;
      const storage = createFlatStorage(
        device,
        Array.from({ length: tensors }, (_, k) => ({ name: `t${k}`, shape: [size] })),
      );
      const clear = device.createCommandEncoder();
      clear.clearBuffer(storage.params);
      clear.clearBuffer(storage.grads);
      await submit(clear);
      const optimizer = await WebGPUAccSGD.create(
        device,
        [{ params: storage.params, grads: storage.grads, segments: storage.segments }],
        { lr: 0.01 },
      );
      const bytes = elements * 4;
      const source = device.createBuffer({ size: bytes, usage: USAGE });
      const target = device.createBuffer({ size: bytes, usage: USAGE });
      const copyKernel = wgslCopy(device, elements);
      const ms = await timeInterleaved(
        {
          step: async () => {
            await optimizer.step();
            await device.queue.onSubmittedWorkDone();
          },
          copy: () => {
            const encoder = device.createCommandEncoder();
            encoder.copyBufferToBuffer(source, 0, target, 0, bytes);
            return submit(encoder);
          },
          kernel: copyKernel.run,
        },
        repeats,
      );
      rows.push({
        framework: '@accsgd/webgpu-kernel',
        backend: `webgpu (${found.description})`,
        layout: layout.label,
        variant: `WebGPUAccSGD.step, nonFinite 'error' (default), ${optimizer.dispatchesPerStep} dispatch(es)`,
        ms: ms.step,
        baseline: 'copy floor: 2.5x copyBufferToBuffer',
        baselineMs: 2.5 * ms.copy,
        ratio: ms.step / (2.5 * ms.copy),
        note: `WGSL copy kernel floor (2.5x) ${(2.5 * ms.kernel).toFixed(1)} ms: step ${(ms.step / (2.5 * ms.kernel)).toFixed(2)}x that`,
        bandwidth: bandwidth(
          { bytes: STEP_BYTES_PER_ELEMENT * elements, ms: ms.step },
          { bytes: copyKernel.bytes, ms: ms.kernel },
          `${STEP_BYTES_PER_ELEMENT} B per element: p, g, buf read, p, buf written`,
        ),
      });
      copyKernel.destroy();
      optimizer.destroy();
      storage.destroy();
      source.destroy();
      target.destroy();
    }
    return { section, rows, info };
  } finally {
    clearInterval(keepAlive);
    device.destroy();
  }
}
