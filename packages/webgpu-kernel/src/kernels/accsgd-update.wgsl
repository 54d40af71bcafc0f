// AccSGD fused multi-tensor update (@accsgd/webgpu-kernel), float32 parameter storage.
// For each element of an active segment, with coefficients from @accsgd/core:
//   buf' = bufFromBuf * buf + bufFromParam * p + bufFromGrad * g   (buf := p on a tensor's first step)
//   p'   = paramFromParam * p + paramFromGrad * g + paramFromBuf * buf'

struct Uniforms {
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
}

struct Segment {
  start: u32,
  end: u32,
  flags: u32,
  padding: u32,
}

const SEGMENT_ACTIVE: u32 = 1u;
const SEGMENT_INITIALISE: u32 = 2u;

@group(0) @binding(0) var<uniform> u: Uniforms;
@group(0) @binding(1) var<storage, read> segments: array<Segment>;
@group(0) @binding(2) var<storage, read_write> params: array<f32>;
@group(0) @binding(3) var<storage, read> grads: array<f32>;
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
  params[i] = f32(u.paramFromParam * p + u.paramFromGrad * g + u.paramFromBuf * b);
}

// See WORKGROUP_SIZE and ELEMENTS_PER_INVOCATION in accsgd-update.ts for the sizes.
@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) workgroup: vec3<u32>,
  @builtin(num_workgroups) workgroups: vec3<u32>,
  @builtin(local_invocation_index) lane: u32,
) {
  // Dispatches beyond maxComputeWorkgroupsPerDimension are folded into two dimensions. A workgroup
  // covers 512 consecutive elements; neighbouring invocations touch neighbouring elements.
  let first = (workgroup.y * workgroups.x + workgroup.x) * 512u + lane;
  for (var k = 0u; k < 8u; k++) {
    let i = first + k * 64u;
    if (i >= u.windowLength) {
      return;
    }
    update(i);
  }
}
