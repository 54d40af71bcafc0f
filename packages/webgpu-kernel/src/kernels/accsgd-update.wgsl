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
  group: u32,
  bufFromBufScale: f32,
  bufFromParamScale: f32,
  bufFromGradScale: f32,
  paramFromParamScale: f32,
  paramFromGradScale: f32,
  paramFromBufScale: f32,
  bufFromParamFirstStepScale: f32,
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
@group(0) @binding(5) var<storage, read_write> status: array<atomic<u32>>;

// One element: p, g and buf read once, p and buf written once. On a tensor's first step (init) the
// buffer starts as a copy of p, folded into bufFromParamFirstStep; select, not a branch, so that
// the (unused) old buffer value never reaches the arithmetic. Each product is scaled by its
// coefficient's scale (1, or 2^-64 for a coefficient kept from flushing to zero; see Uniforms).
fn update(i: u32, init: bool) {
  let p = f32(params[i]);
  let g = f32(grads[i]);
  let old = select(buffers[i], 0.0, init);
  let fromParam = select(u.bufFromParam, u.bufFromParamFirstStep, init);
  let fromParamScale = select(u.bufFromParamScale, u.bufFromParamFirstStepScale, init);
  let b = (select(u.bufFromBuf, 0.0, init) * old) * u.bufFromBufScale + (fromParam * p) * fromParamScale
    + (u.bufFromGrad * g) * u.bufFromGradScale;
  buffers[i] = b;
  params[i] = f32((u.paramFromParam * p) * u.paramFromParamScale + (u.paramFromGrad * g) * u.paramFromGradScale
    + (u.paramFromBuf * b) * u.paramFromBufScale);
}

// See WORKGROUP_SIZE, ELEMENTS_PER_INVOCATION and the workgroups per dispatch in accsgd-update.ts.
@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) workgroup: vec3<u32>,
  @builtin(num_workgroups) workgroups: vec3<u32>,
  @builtin(local_invocation_index) lane: u32,
) {
  // Predicated on this step's non-finite scan (see scan): nothing changes when it found one.
  if (atomicLoad(&status[0]) != 0u) {
    return;
  }
  // A grid-stride loop over chunks of 512 consecutive elements, one chunk per workgroup per pass;
  // lane k of a workgroup updates elements k, k + 64, ... of its chunk, so neighbouring
  // invocations touch neighbouring elements. Dispatches beyond maxComputeWorkgroupsPerDimension are
  // folded into two dimensions.
  let length = u.windowLength;
  let stride = workgroups.x * workgroups.y * 512u;
  let firstChunk = (workgroup.y * workgroups.x + workgroup.x) * 512u;
  if (u.lookup == 0u) {
    // Every element of the window is in an active segment that has a buffer (no gaps, no tensor
    // without a gradient or on its first step): no table and no branch per chunk, which CPU
    // implementations such as SwiftShader pay dearly for.
    let init = false;
    var chunk = firstChunk;
    for (; chunk + 512u <= length; chunk += stride) {
      let i = chunk + lane;
        update(i + 0u, init);
        update(i + 64u, init);
        update(i + 128u, init);
        update(i + 192u, init);
        update(i + 256u, init);
        update(i + 320u, init);
        update(i + 384u, init);
        update(i + 448u, init);
    }
    for (var j = chunk + lane; j < length; j += 64u) {
      update(j, init);
    }
  } else {
    // The segment of the elements reached, found by moving forward through the table: elements only
    // grow along the loop.
    var next = 0u;
    var segmentStart = 0u;
    var segmentEnd = 0u;
    var segmentFlags = 0u;
    for (var chunk = firstChunk; chunk < length; chunk += stride) {
      let first = u.windowStart + chunk;
      let end = first + min(512u, length - chunk);
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
        if (end - first == 512u) {
        update(i + 0u, init);
        update(i + 64u, init);
        update(i + 128u, init);
        update(i + 192u, init);
        update(i + 256u, init);
        update(i + 320u, init);
        update(i + 384u, init);
        update(i + 448u, init);
        } else {
          for (var j = i; j < length; j += 64u) {
            update(j, init);
          }
        }
      } else {
        // Segment boundaries or gaps inside the chunk: each element finds its own segment.
        var at = next;
        var segment = segments[at];
        for (var j = i; j < length && j < chunk + 512u; j += 64u) {
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
}

// The non-finite check of a step (not for nonFinite 'allow'): the same walk over active segments as
// main, recording the lowest element index with a non-finite gradient in the group's status word.

// Which elements of access i hold a non-finite gradient, tested on the bits (exponent all ones),
// which no fast-math assumption can drop.
fn nonFiniteLanes(i: u32) -> bool {
  let exponent = 0x7f800000u;
  return (bitcast<u32>(f32(grads[i])) & exponent) == exponent;
}

fn nonFinite(i: u32) -> bool {
  return nonFiniteLanes(i);
}

fn check(i: u32, init: bool) {
  let bad = nonFiniteLanes(i);
  if (bad) {
    let element = u.windowStart + i;
    atomicMin(&status[1u + u.group], element);
    atomicStore(&status[0], 1u);
  }
}

@compute @workgroup_size(64)
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
  let length = u.windowLength;
  let stride = workgroups.x * workgroups.y * 512u;
  let firstChunk = (workgroup.y * workgroups.x + workgroup.x) * 512u;
  if (u.lookup == 0u) {
    // Every element of the window is in an active segment that has a buffer (no gaps, no tensor
    // without a gradient or on its first step): no table and no branch per chunk, which CPU
    // implementations such as SwiftShader pay dearly for.
    let init = false;
    var chunk = firstChunk;
    for (; chunk + 512u <= length; chunk += stride) {
      let i = chunk + lane;
        found = found | nonFinite(i + 0u);
        found = found | nonFinite(i + 64u);
        found = found | nonFinite(i + 128u);
        found = found | nonFinite(i + 192u);
        found = found | nonFinite(i + 256u);
        found = found | nonFinite(i + 320u);
        found = found | nonFinite(i + 384u);
        found = found | nonFinite(i + 448u);
    }
    for (var j = chunk + lane; j < length; j += 64u) {
      check(j, init);
    }
  } else {
    // The segment of the elements reached, found by moving forward through the table: elements only
    // grow along the loop.
    var next = 0u;
    var segmentStart = 0u;
    var segmentEnd = 0u;
    var segmentFlags = 0u;
    for (var chunk = firstChunk; chunk < length; chunk += stride) {
      let first = u.windowStart + chunk;
      let end = first + min(512u, length - chunk);
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
        if (end - first == 512u) {
        found = found | nonFinite(i + 0u);
        found = found | nonFinite(i + 64u);
        found = found | nonFinite(i + 128u);
        found = found | nonFinite(i + 192u);
        found = found | nonFinite(i + 256u);
        found = found | nonFinite(i + 320u);
        found = found | nonFinite(i + 384u);
        found = found | nonFinite(i + 448u);
        } else {
          for (var j = i; j < length; j += 64u) {
            check(j, init);
          }
        }
      } else {
        // Segment boundaries or gaps inside the chunk: each element finds its own segment.
        var at = next;
        var segment = segments[at];
        for (var j = i; j < length && j < chunk + 512u; j += 64u) {
          let element = u.windowStart + j;
          if (element >= segment.end) {
            seek(&at, element);
            if (at >= u.segmentCount) {
              break;
            }
            segment = segments[at];
          }
          if (element >= segment.start && (segment.flags & SEGMENT_ACTIVE) != 0u) {
            check(j, (segment.flags & SEGMENT_INITIALISE) != 0u);
          }
        }
      }
    }
  }
  }
  if (found) {
  let length = u.windowLength;
  let stride = workgroups.x * workgroups.y * 512u;
  let firstChunk = (workgroup.y * workgroups.x + workgroup.x) * 512u;
  if (u.lookup == 0u) {
    // Every element of the window is in an active segment that has a buffer (no gaps, no tensor
    // without a gradient or on its first step): no table and no branch per chunk, which CPU
    // implementations such as SwiftShader pay dearly for.
    let init = false;
    var chunk = firstChunk;
    for (; chunk + 512u <= length; chunk += stride) {
      let i = chunk + lane;
        for (var j = i; j < chunk + 512u; j += 64u) {
          check(j, init);
        }
    }
    for (var j = chunk + lane; j < length; j += 64u) {
      check(j, init);
    }
  } else {
    // The segment of the elements reached, found by moving forward through the table: elements only
    // grow along the loop.
    var next = 0u;
    var segmentStart = 0u;
    var segmentEnd = 0u;
    var segmentFlags = 0u;
    for (var chunk = firstChunk; chunk < length; chunk += stride) {
      let first = u.windowStart + chunk;
      let end = first + min(512u, length - chunk);
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
        if (end - first == 512u) {
        for (var j = i; j < chunk + 512u; j += 64u) {
          check(j, init);
        }
        } else {
          for (var j = i; j < length; j += 64u) {
            check(j, init);
          }
        }
      } else {
        // Segment boundaries or gaps inside the chunk: each element finds its own segment.
        var at = next;
        var segment = segments[at];
        for (var j = i; j < length && j < chunk + 512u; j += 64u) {
          let element = u.windowStart + j;
          if (element >= segment.end) {
            seek(&at, element);
            if (at >= u.segmentCount) {
              break;
            }
            segment = segments[at];
          }
          if (element >= segment.start && (segment.flags & SEGMENT_ACTIVE) != 0u) {
            check(j, (segment.flags & SEGMENT_INITIALISE) != 0u);
          }
        }
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
