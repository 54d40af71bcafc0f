/**
 * The AccSGD multi-tensor update as one WGSL compute program, and the pipeline that runs it.
 *
 * One dispatch updates one binding window of a parameter group's flat storage: every tensor of the
 * group lives at its own offset in one params buffer (and at the same offset in the grads and
 * momentum buffers), and a segment table says where each tensor starts and ends and what to do
 * with it this step. Each invocation reads p, g and buf once and writes p and buf once (20 bytes
 * per float32 element), which is the memory floor of AccSGD.
 */

/** Storage precision of parameters and gradients. Arithmetic and momentum buffers are always float32. */
export type StorageType = 'float32' | 'float16';

/**
 * 64 invocations per workgroup: a multiple of every SIMD width in use (NVIDIA 32, AMD 64, Intel
 * 8/16/32, SwiftShader 4/8), well inside the portable limit of 256, and, since the kernel is
 * memory bound and shares nothing between invocations, larger workgroups buy nothing. 64 float32
 * elements are also exactly 256 bytes, the usual minStorageBufferOffsetAlignment, so tensors placed
 * at aligned offsets never share a workgroup.
 */
export const WORKGROUP_SIZE = 64;

/**
 * Elements each invocation updates (strided by WORKGROUP_SIZE, so accesses stay coalesced). Fewer,
 * fuller workgroups cut the per-workgroup cost, which dominates on CPU implementations such as
 * SwiftShader, and on GPUs a few independent loads in flight per invocation help hide latency.
 */
export const ELEMENTS_PER_INVOCATION = 8;
export const ELEMENTS_PER_WORKGROUP = WORKGROUP_SIZE * ELEMENTS_PER_INVOCATION;

/** Segment flags (bit set in the segment table's `flags` word). */
export const SEGMENT_ACTIVE = 1;
export const SEGMENT_INITIALISE = 2;

/** Bytes per segment-table entry: start, end, flags, padding (all u32). */
export const SEGMENT_ENTRY_BYTES = 16;
export const SEGMENT_ENTRY_WORDS = SEGMENT_ENTRY_BYTES / 4;

/**
 * The uniform block, one per binding window, as 32-bit words:
 *   0..6  the fused coefficients (float32): bufFromBuf, bufFromParam, bufFromGrad, paramFromParam,
 *         paramFromGrad, paramFromBuf, and bufFromBuf + bufFromParam (formed in float64 on the host)
 *         for a tensor's first step, where the buffer is a copy of p
 *   7     windowStart (u32): element index in the group's flat storage of the window's first element
 *   8     windowLength (u32): elements in the window
 *   9     segmentCount (u32)
 *   10    lookup (u32): 0 when every element of the window belongs to an active segment that already
 *         has a buffer, so the segment table need not be read; 1 otherwise
 *   11    padding
 */
export const UNIFORM_WORDS = 12;
export const UNIFORM_BYTES = UNIFORM_WORDS * 4;

const UNIFORM_DECLARATION = /* wgsl */ `struct Uniforms {
  bufFromBuf: f32,
  bufFromParam: f32,
  bufFromGrad: f32,
  paramFromParam: f32,
  paramFromGrad: f32,
  paramFromBuf: f32,
  bufFromParamFirstStep: f32,
  windowStart: u32,
  windowLength: u32,
  segmentCount: u32,
  lookup: u32,
  padding: u32,
}`;

/**
 * The WGSL source of the update for a storage type. The float32 variant is also shipped as
 * `accsgd-update.wgsl` beside this file (a test checks they are equal).
 */
export function accsgdUpdateWGSL(storage: StorageType = 'float32'): string {
  const T = storage === 'float16' ? 'f16' : 'f32';
  const enable = storage === 'float16' ? 'enable f16;\n\n' : '';
  return `${enable}// AccSGD fused multi-tensor update (@accsgd/webgpu-kernel), ${storage} parameter storage.
// For each element of an active segment, with coefficients from @accsgd/core:
//   buf' = bufFromBuf * buf + bufFromParam * p + bufFromGrad * g   (buf := p on a tensor's first step)
//   p'   = paramFromParam * p + paramFromGrad * g + paramFromBuf * buf'

${UNIFORM_DECLARATION}

struct Segment {
  start: u32,
  end: u32,
  flags: u32,
  padding: u32,
}

const SEGMENT_ACTIVE: u32 = ${SEGMENT_ACTIVE}u;
const SEGMENT_INITIALISE: u32 = ${SEGMENT_INITIALISE}u;

@group(0) @binding(0) var<uniform> u: Uniforms;
@group(0) @binding(1) var<storage, read> segments: array<Segment>;
@group(0) @binding(2) var<storage, read_write> params: array<${T}>;
@group(0) @binding(3) var<storage, read> grads: array<${T}>;
@group(0) @binding(4) var<storage, read_write> buffers: array<f32>;

fn update(i: u32) {
  var flags = SEGMENT_ACTIVE;
  if (u.lookup != 0u) {
    // The last segment starting at or before this element (segments are sorted and disjoint).
    let element = u.windowStart + i;
    var lo = 0u;
    var hi = u.segmentCount;
    while (lo < hi) {
      let mid = (lo + hi) / 2u;
      if (segments[mid].start <= element) {
        lo = mid + 1u;
      } else {
        hi = mid;
      }
    }
    if (lo == 0u) {
      return;
    }
    let segment = segments[lo - 1u];
    if (element >= segment.end || (segment.flags & SEGMENT_ACTIVE) == 0u) {
      return;
    }
    flags = segment.flags;
  }
  let p = f32(params[i]);
  let g = f32(grads[i]);
  var b: f32;
  if ((flags & SEGMENT_INITIALISE) != 0u) {
    b = u.bufFromParamFirstStep * p + u.bufFromGrad * g;
  } else {
    b = u.bufFromBuf * buffers[i] + u.bufFromParam * p + u.bufFromGrad * g;
  }
  buffers[i] = b;
  params[i] = ${T}(u.paramFromParam * p + u.paramFromGrad * g + u.paramFromBuf * b);
}

// See WORKGROUP_SIZE and ELEMENTS_PER_INVOCATION in accsgd-update.ts for the sizes.
@compute @workgroup_size(${WORKGROUP_SIZE})
fn main(
  @builtin(workgroup_id) workgroup: vec3<u32>,
  @builtin(num_workgroups) workgroups: vec3<u32>,
  @builtin(local_invocation_index) lane: u32,
) {
  // Dispatches beyond maxComputeWorkgroupsPerDimension are folded into two dimensions. A workgroup
  // covers ${WORKGROUP_SIZE * ELEMENTS_PER_INVOCATION} consecutive elements; neighbouring invocations touch neighbouring elements.
  let first = (workgroup.y * workgroups.x + workgroup.x) * ${WORKGROUP_SIZE * ELEMENTS_PER_INVOCATION}u + lane;
  for (var k = 0u; k < ${ELEMENTS_PER_INVOCATION}u; k++) {
    let i = first + k * ${WORKGROUP_SIZE}u;
    if (i >= u.windowLength) {
      return;
    }
    update(i);
  }
}
`;
}

export interface AccSGDPipeline {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  storage: StorageType;
}

const pipelineCache = new WeakMap<GPUDevice, Map<StorageType, AccSGDPipeline>>();

/**
 * The compute pipeline for a storage type, created once per device and cached (a learning-rate
 * change only rewrites the uniform block). Throws whatever the device throws; callers wrap this
 * in error scopes.
 */
export function accsgdUpdatePipeline(device: GPUDevice, storage: StorageType = 'float32'): AccSGDPipeline {
  let perDevice = pipelineCache.get(device);
  if (!perDevice) {
    perDevice = new Map();
    pipelineCache.set(device, perDevice);
  }
  const cached = perDevice.get(storage);
  if (cached) return cached;
  const module = device.createShaderModule({
    label: `accsgd-update (${storage})`,
    code: accsgdUpdateWGSL(storage),
  });
  const layout = device.createBindGroupLayout({
    label: `accsgd-update (${storage})`,
    entries: [
      {
        binding: 0,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type: 'uniform', minBindingSize: UNIFORM_BYTES },
      },
      { binding: 1, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'read-only-storage' } },
      { binding: 2, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'storage' } },
      { binding: 3, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'read-only-storage' } },
      { binding: 4, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'storage' } },
    ],
  });
  const pipeline = device.createComputePipeline({
    label: `accsgd-update (${storage})`,
    layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
    compute: { module, entryPoint: 'main' },
  });
  const entry = { pipeline, layout, storage };
  perDevice.set(storage, entry);
  return entry;
}

/**
 * Workgroup counts for `elements` invocations of WORKGROUP_SIZE, folded into two dimensions when
 * one would exceed `maxPerDimension`. The shader recovers the linear index from num_workgroups.
 */
export function dispatchSize(elements: number, maxPerDimension: number): [number, number] {
  const workgroups = Math.ceil(elements / ELEMENTS_PER_WORKGROUP);
  if (workgroups <= maxPerDimension) return [workgroups, 1];
  const y = Math.ceil(workgroups / maxPerDimension);
  const x = Math.ceil(workgroups / y);
  if (y > maxPerDimension)
    throw new RangeError(`${elements} elements need more than ${maxPerDimension}^2 workgroups`);
  return [x, y];
}

/** Drops a cached pipeline (after its creation reported an error, so the next try starts afresh). */
export function forgetAccsgdUpdatePipeline(device: GPUDevice, storage: StorageType = 'float32'): void {
  pipelineCache.get(device)?.delete(storage);
}
