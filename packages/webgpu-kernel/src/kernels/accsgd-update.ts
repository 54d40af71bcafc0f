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
 * Elements each invocation updates per pass of its grid-stride loop, WORKGROUP_SIZE apart, so every
 * access of a workgroup is one contiguous, coalesced run of ELEMENTS_PER_CHUNK elements. The
 * updates are written out (unrolled) in the source: several independent loads in flight per
 * invocation hide latency on GPUs, and CPU implementations such as SwiftShader pay for every loop
 * iteration and branch, not for straight-line code.
 */
export const ELEMENTS_PER_INVOCATION = 8;
/** Elements a workgroup updates per pass of the grid-stride loop. */
export const ELEMENTS_PER_CHUNK = WORKGROUP_SIZE * ELEMENTS_PER_INVOCATION;

/**
 * Workgroups per dispatch when the device is a GPU. The kernel is a grid-stride loop, so any count
 * covers any window; 4,096 workgroups of 64 (262,144 invocations, each with 8 loads in flight) fill
 * the largest GPUs (an H100/H200 holds about 4,200 such workgroups at once) while keeping the loop
 * short for small tensors (a dispatch never has more workgroups than chunks).
 */
export const GPU_WORKGROUPS_PER_DISPATCH = 4096;
/**
 * Workgroups per dispatch on CPU implementations (the fallback adapter, e.g. SwiftShader), where
 * every workgroup costs a fixed setup and invocations are emulated a few lanes at a time: a few
 * dozen workgroups keep every core busy and pay that cost a few dozen times, not once per chunk.
 */
export const CPU_WORKGROUPS_PER_DISPATCH = 64;

/**
 * The default workgroups per dispatch for a device: CPU_WORKGROUPS_PER_DISPATCH on a fallback (CPU)
 * adapter such as SwiftShader, GPU_WORKGROUPS_PER_DISPATCH otherwise (and when the device does not
 * say what it is).
 */
export function defaultWorkgroupsPerDispatch(device: GPUDevice): number {
  // GPUDevice.adapterInfo is recent (Chrome 132); without it, assume a GPU.
  const info = (device as Partial<Pick<GPUDevice, 'adapterInfo'>>).adapterInfo;
  const cpu = info?.isFallbackAdapter === true || info?.architecture === 'swiftshader';
  return cpu ? CPU_WORKGROUPS_PER_DISPATCH : GPU_WORKGROUPS_PER_DISPATCH;
}

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
  const CHUNK = ELEMENTS_PER_CHUNK;
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

// One element: p, g and buf read once, p and buf written once. On a tensor's first step (init) the
// buffer starts as a copy of p, folded into bufFromParamFirstStep; select, not a branch, so that
// the (unused) old buffer value never reaches the arithmetic.
fn update(i: u32, init: bool) {
  let p = f32(params[i]);
  let g = f32(grads[i]);
  let old = select(buffers[i], 0.0, init);
  let fromParam = select(u.bufFromParam, u.bufFromParamFirstStep, init);
  let b = select(u.bufFromBuf, 0.0, init) * old + fromParam * p + u.bufFromGrad * g;
  buffers[i] = b;
  params[i] = ${T}(u.paramFromParam * p + u.paramFromGrad * g + u.paramFromBuf * b);
}

// See WORKGROUP_SIZE, ELEMENTS_PER_INVOCATION and the workgroups per dispatch in accsgd-update.ts.
@compute @workgroup_size(${WORKGROUP_SIZE})
fn main(
  @builtin(workgroup_id) workgroup: vec3<u32>,
  @builtin(num_workgroups) workgroups: vec3<u32>,
  @builtin(local_invocation_index) lane: u32,
) {
  // A grid-stride loop over chunks of ${CHUNK} consecutive elements, one chunk per workgroup per pass;
  // lane k of a workgroup updates elements k, k + ${WORKGROUP_SIZE}, ... of its chunk, so neighbouring
  // invocations touch neighbouring elements. Dispatches beyond maxComputeWorkgroupsPerDimension are
  // folded into two dimensions.
  let length = u.windowLength;
  let stride = workgroups.x * workgroups.y * ${CHUNK}u;
  // The segment of the elements reached: without lookup, one active segment over the whole window.
  // Elements only grow along the loop, so the segment is found by moving forward through the table.
  var next = 0u;
  var segmentStart = 0u;
  var segmentEnd = 0xffffffffu;
  var segmentFlags = SEGMENT_ACTIVE;
  if (u.lookup != 0u) {
    segmentEnd = 0u;
  }
  for (var chunk = (workgroup.y * workgroups.x + workgroup.x) * ${CHUNK}u; chunk < length; chunk += stride) {
    let first = u.windowStart + chunk;
    let end = first + min(${CHUNK}u, length - chunk);
    if (first >= segmentEnd) {
      seek(&next, first);
      if (next >= u.segmentCount) {
        break;
      }
      segmentStart = segments[next].start;
      segmentEnd = segments[next].end;
      segmentFlags = segments[next].flags;
    }
    let i = chunk + lane;
    if (segmentStart <= first && end <= segmentEnd) {
      // The whole chunk lies in one segment (always so without lookup).
      if ((segmentFlags & SEGMENT_ACTIVE) == 0u) {
        continue;
      }
      let init = (segmentFlags & SEGMENT_INITIALISE) != 0u;
      if (end - first == ${CHUNK}u) {
        update(i + 0u, init);
        update(i + 64u, init);
        update(i + 128u, init);
        update(i + 192u, init);
        update(i + 256u, init);
        update(i + 320u, init);
        update(i + 384u, init);
        update(i + 448u, init);
      } else {
        for (var j = i; j < length; j += ${WORKGROUP_SIZE}u) {
          update(j, init);
        }
      }
    } else {
      // Segment boundaries or gaps inside the chunk: each element finds its own segment.
      var at = next;
      var segment = segments[at];
      for (var j = i; j < length && j < chunk + ${CHUNK}u; j += ${WORKGROUP_SIZE}u) {
        let element = u.windowStart + j;
        if (element >= segment.end) {
          seek(&at, element);
          if (at >= u.segmentCount) {
            break;
          }
          segment = segments[at];
        }
        if (element >= segment.start && (segment.flags & SEGMENT_ACTIVE) != 0u) {
          update(j, (segment.flags & SEGMENT_INITIALISE) != 0u);
        }
      }
    }
  }
}

// Moves *at forward to the first segment that ends after element (segments are sorted and
// disjoint, so their ends increase); segmentCount when there is none.
fn seek(at: ptr<function, u32>, element: u32) {
  var lo = *at;
  var hi = u.segmentCount;
  while (lo < hi) {
    let mid = (lo + hi) / 2u;
    if (segments[mid].end <= element) {
      lo = mid + 1u;
    } else {
      hi = mid;
    }
  }
  *at = lo;
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
 * Workgroup counts for a window of `elements`: one workgroup per chunk of ELEMENTS_PER_CHUNK, at most
 * `maxWorkgroups` (the grid-stride loop covers the rest) and at most maxPerDimension^2, folded into
 * two dimensions when one would exceed `maxPerDimension`. The shader recovers the linear index from
 * num_workgroups; workgroups past the last chunk (from folding) do nothing.
 */
export function dispatchSize(
  elements: number,
  maxPerDimension: number,
  maxWorkgroups: number = Number.POSITIVE_INFINITY,
): [number, number] {
  const workgroups = Math.max(
    1,
    Math.min(Math.ceil(elements / ELEMENTS_PER_CHUNK), maxWorkgroups, maxPerDimension * maxPerDimension),
  );
  if (workgroups <= maxPerDimension) return [workgroups, 1];
  const y = Math.ceil(workgroups / maxPerDimension);
  const x = Math.ceil(workgroups / y);
  return [x, y];
}

/** Drops a cached pipeline (after its creation reported an error, so the next try starts afresh). */
export function forgetAccsgdUpdatePipeline(device: GPUDevice, storage: StorageType = 'float32'): void {
  pipelineCache.get(device)?.delete(storage);
}
