import { defaultWorkgroupsPerDispatch, dispatchSize, WORKGROUP_SIZE } from '@accsgd/webgpu-kernel';
import type { Bandwidth } from './types.js';

/** Bytes a WGSL copy kernel moves per float32 element: one read, one write. */
export const COPY_BYTES_PER_ELEMENT = 8;
/** Bytes the fused update moves at least per element: p, g and buf read; p and buf written. */
export const STEP_BYTES_PER_ELEMENT = 20;

/**
 * A WGSL vec4 copy kernel over `elements` float32 values on `device`: the roofline a WGSL update
 * on the same adapter is measured against (on a GPU, about its memory bandwidth; on SwiftShader,
 * what a CPU emulation of storage accesses reaches). Buffers larger than one storage binding are
 * copied in windows, as the update binds them.
 */
export function wgslCopy(
  device: GPUDevice,
  elements: number,
): { run: () => Promise<void>; bytes: number; source: GPUBuffer; target: GPUBuffer; destroy: () => void } {
  const pipeline = device.createComputePipeline({
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
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  const bytes = Math.ceil(elements / 4) * 16;
  const source = device.createBuffer({ size: bytes, usage });
  const target = device.createBuffer({ size: bytes, usage });
  const window = Math.floor(device.limits.maxStorageBufferBindingSize / 256) * 256;
  const windows: { elements: number; bindGroup: GPUBindGroup }[] = [];
  for (let offset = 0; offset < bytes; offset += window) {
    const length = Math.min(window, bytes - offset);
    windows.push({
      elements: length / 4,
      bindGroup: device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: source, offset, size: length } },
          { binding: 1, resource: { buffer: target, offset, size: length } },
        ],
      }),
    });
  }
  const run = async () => {
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
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
    device.queue.submit([encoder.finish()]);
    await device.queue.onSubmittedWorkDone();
  };
  return {
    run,
    bytes: COPY_BYTES_PER_ELEMENT * elements,
    source,
    target,
    destroy: () => {
      source.destroy();
      target.destroy();
    },
  };
}

/** A step's effective bandwidth beside the copy kernel's, both in GB/s (1e9 bytes per second). */
export function bandwidth(
  step: { bytes: number; ms: number },
  copy: { bytes: number; ms: number },
  model: string,
): Bandwidth {
  const stepGBps = step.bytes / (step.ms * 1e6);
  const copyGBps = copy.bytes / (copy.ms * 1e6);
  return { bytes: step.bytes, stepGBps, copyGBps, ratio: stepGBps / copyGBps, model };
}

/** "12.3 GB/s, 0.41x the copy kernel's 30.0 GB/s (20 B per element)". */
export function formatBandwidth(b: Bandwidth): string {
  const gbps = (x: number) => `${x >= 100 ? x.toFixed(0) : x.toPrecision(3)} GB/s`;
  return `${gbps(b.stepGBps)}, ${b.ratio.toFixed(2)}x the WGSL copy kernel's ${gbps(b.copyGBps)} measured in the same run (${b.model})`;
}
