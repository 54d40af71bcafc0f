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
 * How the kernel addresses storage: 'scalar' reads and writes one element per access; 'vec4' reads
 * and writes vec4<f32> (four consecutive elements) per access. CPU implementations such as
 * SwiftShader turn per-invocation-indexed scalar storage accesses into gathers, and GPUs move 16-byte
 * accesses at full width, so vec4 is much faster where it is correct: when the window start, the
 * window length and the start and end of every tensor the window touches are multiples of
 * VEC4_ELEMENTS (see vec4Eligible). The host picks the program per binding window; float16 storage
 * is always scalar.
 */
export type AccessType = 'scalar' | 'vec4';

/** Elements per vec4 access. */
export const VEC4_ELEMENTS = 4;

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
 *   11    group (u32): the group's index, which picks its word of the status buffer
 *   12..18  the scale of each coefficient 0..6 (float32): 1, or 2^-64 for a coefficient that is
 *         subnormal in float32, which words 0..6 then hold times 2^64 (exact, and normal). WGSL lets
 *         a device flush subnormal values to zero (SwiftShader does), which would drop the term of
 *         lr = 1e-40's subnormal gradient multipliers; (c 2^64 x) 2^-64 keeps it, and equals c x
 *         whenever c x is normal. A scale of 1 changes nothing.
 *   19    padding
 */
export const UNIFORM_WORDS = 20;
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
  group: u32,
  bufFromBufScale: f32,
  bufFromParamScale: f32,
  bufFromGradScale: f32,
  paramFromParamScale: f32,
  paramFromGradScale: f32,
  paramFromBufScale: f32,
  bufFromParamFirstStepScale: f32,
  padding: u32,
}`;

/**
 * The status buffer (u32 words) of the non-finite check: word 0 is non-zero when the scan found a
 * non-finite gradient in an active tensor this step (the update entry point then does nothing);
 * word 1 + g is the lowest flat-storage element index of group g with one (0xffffffff: none).
 */
export const STATUS_NONE = 0xffffffff;
export function statusWords(groups: number): number {
  return 1 + groups;
}

/**
 * vec4 accesses each invocation makes per pass of the vec4 program's grid-stride loop, WORKGROUP_SIZE
 * apart (32 elements). On SwiftShader 8 measured a little faster than 4 and much faster than 2; on
 * GPUs 8 independent 16-byte loads per array keep enough bytes in flight.
 */
export const VEC4_PER_INVOCATION = 8;

/** Accesses (elements, or vec4s) one workgroup makes per pass of its grid-stride loop with an access type. */
function accessesPerChunk(access: AccessType): number {
  return WORKGROUP_SIZE * (access === 'vec4' ? VEC4_PER_INVOCATION : ELEMENTS_PER_INVOCATION);
}

/** Elements one workgroup updates per pass of its grid-stride loop with an access type. */
export function elementsPerChunk(access: AccessType = 'scalar'): number {
  return access === 'vec4' ? accessesPerChunk(access) * VEC4_ELEMENTS : ELEMENTS_PER_CHUNK;
}

/**
 * Whether the vec4 program may update a window: its start and length, and the start and end of
 * every tensor (segment) it touches, are multiples of VEC4_ELEMENTS, so every vec4 lies wholly
 * inside one tensor or wholly inside a gap, and the bindings hold whole vec4s. Only float32 storage.
 */
export function vec4Eligible(
  storage: StorageType,
  windowStart: number,
  windowLength: number,
  segments: Iterable<{ offset: number; size: number }>,
): boolean {
  if (storage !== 'float32') return false;
  if (windowStart % VEC4_ELEMENTS !== 0 || windowLength % VEC4_ELEMENTS !== 0) return false;
  for (const { offset, size } of segments) {
    if (offset % VEC4_ELEMENTS !== 0 || size % VEC4_ELEMENTS !== 0) return false;
  }
  return true;
}

/**
 * The WGSL source of the update for a storage type and access type. The float32 scalar variant is
 * also shipped as `accsgd-update.wgsl` beside this file (a test checks they are equal).
 */
export function accsgdUpdateWGSL(storage: StorageType = 'float32', access: AccessType = 'scalar'): string {
  if (access === 'vec4' && storage !== 'float32') {
    throw new RangeError(`the vec4 kernel needs float32 storage, not ${storage}`);
  }
  const vec = access === 'vec4';
  const T = storage === 'float16' ? 'f16' : 'f32';
  // Array element types and the float32 value of one access.
  const S = vec ? 'vec4<f32>' : T;
  const F = vec ? 'vec4<f32>' : 'f32';
  // CHUNK counts accesses (elements or vec4s); CHUNK_ELEMENTS counts elements; W scales an access index to elements.
  const CHUNK = accessesPerChunk(access);
  const CHUNK_ELEMENTS = elementsPerChunk(access);
  // The unrolled accesses of a full chunk: lane offsets 0, WORKGROUP_SIZE, 2 * WORKGROUP_SIZE, ...
  const offsets = Array.from({ length: CHUNK / WORKGROUP_SIZE }, (_, k) => `i + ${k * WORKGROUP_SIZE}u`);
  const unrolled = (line: (at: string) => string) => offsets.map((at) => `        ${line(at)}`).join('\n');
  const W = vec ? ` * ${VEC4_ELEMENTS}u` : '';
  const loop = (
    call: string,
    fullChunk: string = unrolled((at) => `${call}(${at}, init);`),
  ) => `  let length = u.windowLength${vec ? ` / ${VEC4_ELEMENTS}u` : ''};
  let stride = workgroups.x * workgroups.y * ${CHUNK}u;
  let firstChunk = (workgroup.y * workgroups.x + workgroup.x) * ${CHUNK}u;
  if (u.lookup == 0u) {
    // Every element of the window is in an active segment that has a buffer (no gaps, no tensor
    // without a gradient or on its first step): no table and no branch per chunk, which CPU
    // implementations such as SwiftShader pay dearly for.
    let init = false;
    var chunk = firstChunk;
    for (; chunk + ${CHUNK}u <= length; chunk += stride) {
      let i = chunk + lane;
${fullChunk}
    }
    for (var j = chunk + lane; j < length; j += ${WORKGROUP_SIZE}u) {
      ${call}(j, init);
    }
  } else {
    // The segment of the elements reached, found by moving forward through the table: elements only
    // grow along the loop.
    var next = 0u;
    var segmentStart = 0u;
    var segmentEnd = 0u;
    var segmentFlags = 0u;
    for (var chunk = firstChunk; chunk < length; chunk += stride) {
      let first = u.windowStart + chunk${W};
      let end = first + min(${CHUNK}u, length - chunk)${W};
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
        // The whole chunk lies in one segment.
        if ((segmentFlags & SEGMENT_ACTIVE) == 0u) {
          continue;
        }
        let init = (segmentFlags & SEGMENT_INITIALISE) != 0u;
        if (end - first == ${CHUNK_ELEMENTS}u) {
${fullChunk}
        } else {
          for (var j = i; j < length; j += ${WORKGROUP_SIZE}u) {
            ${call}(j, init);
          }
        }
      } else {
        // Segment boundaries or gaps inside the chunk: each element finds its own segment.
        var at = next;
        var segment = segments[at];
        for (var j = i; j < length && j < chunk + ${CHUNK}u; j += ${WORKGROUP_SIZE}u) {
          let element = u.windowStart + j${W};
          if (element >= segment.end) {
            seek(&at, element);
            if (at >= u.segmentCount) {
              break;
            }
            segment = segments[at];
          }
          if (element >= segment.start && (segment.flags & SEGMENT_ACTIVE) != 0u) {
            ${call}(j, (segment.flags & SEGMENT_INITIALISE) != 0u);
          }
        }
      }
    }
  }
`;
  const scanEntry = `// The non-finite check of a step (not for nonFinite 'allow'): the same walk over active segments as
// main, recording the lowest element index with a non-finite gradient in the group's status word.

// Which elements of access i hold a non-finite gradient, tested on the bits (exponent all ones),
// which no fast-math assumption can drop.
fn nonFiniteLanes(i: u32) -> ${vec ? 'vec4<bool>' : 'bool'} {
  let exponent = ${vec ? 'vec4<u32>(0x7f800000u)' : '0x7f800000u'};
  return (bitcast<${vec ? 'vec4<u32>' : 'u32'}>(${F}(grads[i])) & exponent) == exponent;
}

fn nonFinite(i: u32) -> bool {
  return ${vec ? 'any(nonFiniteLanes(i))' : 'nonFiniteLanes(i)'};
}

fn check(i: u32, init: bool) {
  let bad = nonFiniteLanes(i);
  if (${vec ? 'any(bad)' : 'bad'}) {
    let element = u.windowStart + i${W}${vec ? ' + select(select(select(3u, 2u, bad.z), 1u, bad.y), 0u, bad.x)' : ''};
    atomicMin(&status[1u + u.group], element);
    atomicStore(&status[0], 1u);
  }
}

@compute @workgroup_size(${WORKGROUP_SIZE})
fn scan(
  @builtin(workgroup_id) workgroup: vec3<u32>,
  @builtin(num_workgroups) workgroups: vec3<u32>,
  @builtin(local_invocation_index) lane: u32,
) {
  // Non-finite gradients are rare, so the first walk only accumulates whether this invocation saw
  // one, without a branch per chunk; only then does a second, plainer walk find and record the
  // element (plainer because on SwiftShader every dispatch pays for the size of the code).
  var found = false;
  {
${loop(
  'check',
  unrolled((at) => `found = found | nonFinite(${at});`),
)}  }
  if (found) {
${loop(
  'check',
  `        for (var j = i; j < chunk + ${CHUNK}u; j += ${WORKGROUP_SIZE}u) {
          check(j, init);
        }`,
)}  }
}
`;
  const enable = storage === 'float16' ? 'enable f16;\n\n' : '';
  const header = vec
    ? `${enable}// AccSGD fused multi-tensor update (@accsgd/webgpu-kernel), ${storage} parameter storage, vec4 accesses.
// Only for windows whose start, length and every segment start and end are multiples of 4 elements
// (the host checks): index i below counts vec4s, element indices are 4 * i.
`
    : `${enable}// AccSGD fused multi-tensor update (@accsgd/webgpu-kernel), ${storage} parameter storage.
`;
  return `${header}// For each element of an active segment, with coefficients from @accsgd/core:
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
@group(0) @binding(2) var<storage, read_write> params: array<${S}>;
@group(0) @binding(3) var<storage, read> grads: array<${S}>;
@group(0) @binding(4) var<storage, read_write> buffers: array<${F}>;
@group(0) @binding(5) var<storage, read_write> status: array<atomic<u32>>;

// One element: p, g and buf read once, p and buf written once. On a tensor's first step (init) the
// buffer starts as a copy of p, folded into bufFromParamFirstStep; select, not a branch, so that
// the (unused) old buffer value never reaches the arithmetic. Each product is scaled by its
// coefficient's scale (1, or 2^-64 for a coefficient kept from flushing to zero; see Uniforms).
fn update(i: u32, init: bool) {
  let p = ${F}(params[i]);
  let g = ${F}(grads[i]);
  let old = select(buffers[i], ${vec ? `${F}(0.0)` : '0.0'}, init);
  let fromParam = select(u.bufFromParam, u.bufFromParamFirstStep, init);
  let fromParamScale = select(u.bufFromParamScale, u.bufFromParamFirstStepScale, init);
  let b = (select(u.bufFromBuf, 0.0, init) * old) * u.bufFromBufScale + (fromParam * p) * fromParamScale
    + (u.bufFromGrad * g) * u.bufFromGradScale;
  buffers[i] = b;
  params[i] = ${S}((u.paramFromParam * p) * u.paramFromParamScale + (u.paramFromGrad * g) * u.paramFromGradScale
    + (u.paramFromBuf * b) * u.paramFromBufScale);
}

// See WORKGROUP_SIZE, ELEMENTS_PER_INVOCATION and the workgroups per dispatch in accsgd-update.ts.
@compute @workgroup_size(${WORKGROUP_SIZE})
fn main(
  @builtin(workgroup_id) workgroup: vec3<u32>,
  @builtin(num_workgroups) workgroups: vec3<u32>,
  @builtin(local_invocation_index) lane: u32,
) {
  // Predicated on this step's non-finite scan (see scan): nothing changes when it found one.
  if (atomicLoad(&status[0]) != 0u) {
    return;
  }
  // A grid-stride loop over chunks of ${CHUNK_ELEMENTS} consecutive elements, one chunk per workgroup per pass;
  // lane k of a workgroup updates ${vec ? 'vec4s' : 'elements'} k, k + ${WORKGROUP_SIZE}, ... of its chunk, so neighbouring
  // invocations touch neighbouring elements. Dispatches beyond maxComputeWorkgroupsPerDimension are
  // folded into two dimensions.
${loop('update')}}

${scanEntry}
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
  /** The non-finite scan (entry point `scan`) of the same module and layout. */
  scan: GPUComputePipeline;
  /** The bind group layout, shared by the scalar and vec4 pipelines of a storage type, so one bind group serves both. */
  layout: GPUBindGroupLayout;
  storage: StorageType;
  access: AccessType;
}

const layoutCache = new WeakMap<GPUDevice, Map<StorageType, GPUBindGroupLayout>>();
const pipelineCache = new WeakMap<GPUDevice, Map<string, AccSGDPipeline>>();

/** The bind group layout of the update for a storage type, one per device. */
function accsgdUpdateLayout(device: GPUDevice, storage: StorageType): GPUBindGroupLayout {
  let perDevice = layoutCache.get(device);
  if (!perDevice) {
    perDevice = new Map();
    layoutCache.set(device, perDevice);
  }
  const cached = perDevice.get(storage);
  if (cached) return cached;
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
      { binding: 5, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'storage' } },
    ],
  });
  perDevice.set(storage, layout);
  return layout;
}

/**
 * The compute pipeline for a storage type and access type, created once per device and cached (a
 * learning-rate change only rewrites the uniform block). Throws whatever the device throws; callers
 * wrap this in error scopes.
 */
export function accsgdUpdatePipeline(
  device: GPUDevice,
  storage: StorageType = 'float32',
  access: AccessType = 'scalar',
): AccSGDPipeline {
  let perDevice = pipelineCache.get(device);
  if (!perDevice) {
    perDevice = new Map();
    pipelineCache.set(device, perDevice);
  }
  const key = `${storage}/${access}`;
  const cached = perDevice.get(key);
  if (cached) return cached;
  const label = `accsgd-update (${storage}, ${access})`;
  const module = device.createShaderModule({ label, code: accsgdUpdateWGSL(storage, access) });
  const layout = accsgdUpdateLayout(device, storage);
  const pipelineLayout = device.createPipelineLayout({ bindGroupLayouts: [layout] });
  const pipeline = device.createComputePipeline({
    label,
    layout: pipelineLayout,
    compute: { module, entryPoint: 'main' },
  });
  const scan = device.createComputePipeline({
    label: `${label} scan`,
    layout: pipelineLayout,
    compute: { module, entryPoint: 'scan' },
  });
  const entry = { pipeline, scan, layout, storage, access };
  perDevice.set(key, entry);
  return entry;
}

/**
 * Workgroup counts for a window of `elements`: one workgroup per chunk of `chunkElements`
 * (ELEMENTS_PER_CHUNK for the scalar program, elementsPerChunk('vec4') for the vec4 one), at most
 * `maxWorkgroups` (the grid-stride loop covers the rest) and at most maxPerDimension^2, folded into
 * two dimensions when one would exceed `maxPerDimension`. The shader recovers the linear index from
 * num_workgroups; workgroups past the last chunk (from folding) do nothing.
 */
export function dispatchSize(
  elements: number,
  maxPerDimension: number,
  maxWorkgroups: number = Number.POSITIVE_INFINITY,
  chunkElements: number = ELEMENTS_PER_CHUNK,
): [number, number] {
  const workgroups = Math.max(
    1,
    Math.min(Math.ceil(elements / chunkElements), maxWorkgroups, maxPerDimension * maxPerDimension),
  );
  if (workgroups <= maxPerDimension) return [workgroups, 1];
  const y = Math.ceil(workgroups / maxPerDimension);
  const x = Math.ceil(workgroups / y);
  return [x, y];
}

/** Drops cached pipelines and layout of a storage type (after their creation reported an error, so the next try starts afresh). */
export function forgetAccsgdUpdatePipeline(device: GPUDevice, storage: StorageType = 'float32'): void {
  const pipelines = pipelineCache.get(device);
  pipelines?.delete(`${storage}/scalar`);
  pipelines?.delete(`${storage}/vec4`);
  layoutCache.get(device)?.delete(storage);
}
