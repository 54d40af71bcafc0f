import { findNodeWebGPU } from '@accsgd/conformance';
import {
  createFlatStorage,
  defaultWorkgroupsPerDispatch,
  dispatchSize,
  WebGPUAccSGD,
  WORKGROUP_SIZE,
} from '@accsgd/webgpu-kernel';
import { timeInterleaved } from './timing.js';
import { LAYOUTS, type Row, type SectionResult } from './types.js';

/**
 * @accsgd/webgpu-kernel's step beside its copy floor, measured as packages/webgpu-kernel/bench/
 * step.bench.js does: the floor is 2.5x a copyBufferToBuffer of the same element count (a step moves
 * 20 bytes per element, a copy 8); also 2.5x a WGSL vec4 copy kernel (the fastest a WGSL update
 * could be on a CPU implementation such as SwiftShader, which emulates storage accesses lane by
 * lane). Each timing is wall time from submit to onSubmittedWorkDone (the same for step and copies).
 * Layouts: one tensor, and 1024 tensors in one group (one multi-tensor dispatch).
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
    const copyPipeline = device.createComputePipeline({
      label: 'throughput: WGSL copy kernel',
      layout: 'auto',
      compute: {
        entryPoint: 'main',
        module: device.createShaderModule({
          code: `@group(0) @binding(0) var<storage, read> source: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> destination: array<vec4<f32>>;
@compute @workgroup_size(${WORKGROUP_SIZE})
fn main(@builtin(workgroup_id) workgroup: vec3<u32>, @builtin(num_workgroups) workgroups: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
  let length = arrayLength(&destination);
  let stride = workgroups.x * workgroups.y * ${WORKGROUP_SIZE}u;
  for (var i = (workgroup.y * workgroups.x + workgroup.x) * ${WORKGROUP_SIZE}u + lane; i < length; i += stride) {
    destination[i] = source[i];
  }
}`,
        }),
      },
    });
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
      const window = Math.floor(device.limits.maxStorageBufferBindingSize / 256) * 256;
      const windows: { elements: number; bindGroup: GPUBindGroup }[] = [];
      for (let offset = 0; offset < bytes; offset += window) {
        const length = Math.min(window, bytes - offset);
        windows.push({
          elements: length / 4,
          bindGroup: device.createBindGroup({
            layout: copyPipeline.getBindGroupLayout(0),
            entries: [
              { binding: 0, resource: { buffer: source, offset, size: length } },
              { binding: 1, resource: { buffer: target, offset, size: length } },
            ],
          }),
        });
      }
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
          kernel: () => {
            const encoder = device.createCommandEncoder();
            const pass = encoder.beginComputePass();
            pass.setPipeline(copyPipeline);
            for (const w of windows) {
              pass.setBindGroup(0, w.bindGroup);
              const [x, y] = dispatchSize(
                w.elements,
                device.limits.maxComputeWorkgroupsPerDimension,
                defaultWorkgroupsPerDispatch(device),
                WORKGROUP_SIZE * 4,
              );
              pass.dispatchWorkgroups(x, y);
            }
            pass.end();
            return submit(encoder);
          },
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
      });
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
