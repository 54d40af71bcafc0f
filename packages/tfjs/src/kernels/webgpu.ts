import { type KernelConfig, type Tensor, type TensorInfo, tensor } from '@tensorflow/tfjs-core';
import { ACCSGD_UPDATE, ALL_FINITE, sizeOf, updateArguments } from './registry.js';

/** The part of tfjs-backend-webgpu's WebGPUBackend these programs use (no runtime import). */
interface WebGPUBackend {
  runWebGPUProgram(
    program: WebGPUProgramSpec,
    inputs: TensorInfo[],
    outputDtype: 'float32' | 'int32',
    programDefinedUniform?: { type: 'float32' | 'int32'; data: number[] }[],
    output?: TensorInfo,
  ): TensorInfo;
}

/** tfjs-backend-webgpu's WebGPUProgram, as far as these programs need it. */
interface WebGPUProgramSpec {
  variableNames: string[];
  outputShape: number[];
  shaderKey: string;
  /** Program-defined uniforms, appended to tfjs's Uniforms struct. */
  uniforms: string;
  /** Adds `uniforms.size`: the output's element count divided by `outputComponent`. */
  size: boolean;
  /** 4: inputs and output are declared array<vec4<f32>>, and each invocation handles four elements. */
  outputComponent: 1 | 4;
  /** Components per input element, where they differ from `outputComponent`. */
  variableComponents?: number[];
  /** The output is array<atomic<i32>>, written with atomics (no setOutputAtIndex). */
  atomic?: boolean;
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  getUserCode: () => string;
}

/*
 * Two WGSL dispatches per variable, both over the flattened tensor. The multipliers are uniforms,
 * so the shader text (and tfjs's pipeline cache key, which sees only ranks and dtypes of the
 * flattened [n] tensors) never changes: one pipeline per program and width serves every variable
 * and every learning rate. tfjs folds dispatches wider than 65,535 workgroups into 2-D itself
 * (reshapeDispatch), and `getGlobalIndex()` undoes the fold.
 *
 * When the element count is a multiple of 4 (nearly every weight tensor), the programs are
 * vectorised like tfjs's own elementwise programs: the bindings are array<vec4<f32>> and each
 * invocation updates four elements with 16-byte loads and stores; otherwise a scalar program runs.
 * The arithmetic is the same per element either way (vec4 operations are lane-wise).
 *
 * A WebGPU storage binding cannot be read-only and read-write in one dispatch, and tfjs's program
 * runner binds inputs read-only, so the update writes fresh buffers instead of overwriting p and buf.
 */

/** 64 lanes: a multiple of every vendor's SIMD width (32 on NVIDIA, 64 on AMD, 8-32 on Intel and SwiftShader). */
const WORKGROUP_SIZE = 64;

/** Elements per invocation for a flattened tensor of n elements. */
function componentsFor(n: number): 1 | 4 {
  return n % 4 === 0 ? 4 : 1;
}

function typeOf(components: 1 | 4): string {
  return components === 4 ? 'vec4<f32>' : 'f32';
}

/**
 * With a guard (the step's non-finite scan, see webgpuNonFiniteScan), an invocation whose step
 * the scan found a NaN or infinity in writes the old value back: the step changes nothing, and no
 * read-back has to finish before the update is queued.
 */
function guarded(guard: boolean, updated: string, old: string): string {
  if (!guard) return updated;
  return `select(${updated}, ${old}, guard[uniforms.guardSlot] != ${ALL_FINITE})`;
}

/*
 * Each multiplier comes with a scale: 1, or 2^-64 for a multiplier that is subnormal in float32
 * (lr = 1e-40 gives two), which is then passed times 2^64. WGSL lets a device flush subnormal
 * values to zero (SwiftShader does), which would drop that term; (c 2^64 x) 2^-64 keeps it and
 * equals c x exactly wherever the product is representable, as it is in core's float32 step.
 */
const SUBNORMAL_SCALE = 2 ** 64;
const FLOAT32_MIN_NORMAL = 2 ** -126;

/** A coefficient's float32 value as [multiplier, scale] uniforms that survive flush-to-zero. */
function scaledMultiplier(c: number): [number, number] {
  const f = Math.fround(c);
  return f !== 0 && Math.abs(f) < FLOAT32_MIN_NORMAL ? [f * SUBNORMAL_SCALE, 1 / SUBNORMAL_SCALE] : [f, 1];
}

/** buffer' = bufFromBuf * buffer + bufFromParam * param + bufFromGrad * grad */
function bufferShader(components: 1 | 4, guard: boolean): () => string {
  const t = typeOf(components);
  return () => `
    fn main(index : i32) {
      if (index >= uniforms.size) {
        return;
      }
      let b : ${t} = uniforms.bufFromBuf * buffer[index] * uniforms.bufFromBufScale + uniforms.bufFromParam * param[index] * uniforms.bufFromParamScale + uniforms.bufFromGrad * grad[index] * uniforms.bufFromGradScale;
      setOutputAtIndex(index, ${guarded(guard, 'b', 'buffer[index]')});
    }
  `;
}

/** param' = paramFromParam * param + paramFromGrad * grad + paramFromBuf * buffer' */
function paramShader(components: 1 | 4, guard: boolean): () => string {
  const t = typeOf(components);
  return () => `
    fn main(index : i32) {
      if (index >= uniforms.size) {
        return;
      }
      let p : ${t} = uniforms.paramFromParam * param[index] * uniforms.paramFromParamScale + uniforms.paramFromGrad * grad[index] * uniforms.paramFromGradScale + uniforms.paramFromBuf * newBuffer[index] * uniforms.paramFromBufScale;
      setOutputAtIndex(index, ${guarded(guard, 'p', 'param[index]')});
    }
  `;
}

/** An elementwise program over n elements, `components` per invocation. */
function program(
  n: number,
  components: 1 | 4,
  guard: boolean,
  shaderKey: string,
  variableNames: string[],
  uniforms: string,
  getUserCode: () => string,
): WebGPUProgramSpec {
  return {
    variableNames: guard ? [...variableNames, 'guard'] : variableNames,
    outputShape: [n],
    // The width is in the key: tfjs's key does not see outputComponent.
    shaderKey: `${shaderKey}_${components}${guard ? '_guarded' : ''}`,
    uniforms: guard ? `${uniforms} guardSlot : i32,` : uniforms,
    size: true,
    outputComponent: components,
    // The guard is read as one i32, whatever the width of the tensors.
    ...(guard ? { variableComponents: [components, components, components, 1] } : {}),
    dispatchLayout: { x: [0] },
    dispatch: [Math.ceil(n / components / WORKGROUP_SIZE), 1, 1],
    workgroupSize: [WORKGROUP_SIZE, 1, 1],
    getUserCode,
  };
}

/** Three multipliers, then their three scales (see scaledMultiplier), then the guard's slot if any. */
function uniformsOf(
  multipliers: [number, number, number],
  guard: { type: 'int32'; data: number[] }[],
): { type: 'float32' | 'int32'; data: number[] }[] {
  const scaled = multipliers.map(scaledMultiplier);
  return [
    ...scaled.map(([m]) => ({ type: 'float32' as const, data: [m] })),
    ...scaled.map(([, scale]) => ({ type: 'float32' as const, data: [scale] })),
    ...guard,
  ];
}

/** webgpu: buffer' then param' (from buffer'), coefficients as f32 uniforms. */
export const webgpuUpdateKernel: KernelConfig = {
  kernelName: ACCSGD_UPDATE,
  backendName: 'webgpu',
  kernelFunc: (args) => {
    const { param, grad, buffer, coefficients, guard, guardSlot } = updateArguments(args, { guarded: true });
    const backend = args.backend as WebGPUBackend;
    const n = sizeOf(param.shape);
    const components = componentsFor(n);
    const flat = (t: TensorInfo): TensorInfo => ({ dataId: t.dataId, shape: [n], dtype: 'float32' });
    const guardInputs = guard ? [guard] : [];
    const guardUniforms = guard ? [{ type: 'int32' as const, data: [guardSlot] }] : [];
    const [bb, bp, bg, pp, pg, pb] = coefficients;
    const newBuffer = backend.runWebGPUProgram(
      program(
        n,
        components,
        guard !== null,
        'accsgdBuffer',
        ['param', 'grad', 'buffer'],
        'bufFromBuf : f32, bufFromParam : f32, bufFromGrad : f32, bufFromBufScale : f32, bufFromParamScale : f32, bufFromGradScale : f32,',
        bufferShader(components, guard !== null),
      ),
      [flat(param), flat(grad), flat(buffer), ...guardInputs],
      'float32',
      uniformsOf([bb!, bp!, bg!], guardUniforms),
    );
    const newParam = backend.runWebGPUProgram(
      program(
        n,
        components,
        guard !== null,
        'accsgdParam',
        ['param', 'grad', 'newBuffer'],
        'paramFromParam : f32, paramFromGrad : f32, paramFromBuf : f32, paramFromParamScale : f32, paramFromGradScale : f32, paramFromBufScale : f32,',
        paramShader(components, guard !== null),
      ),
      [flat(param), flat(grad), newBuffer, ...guardInputs],
      'float32',
      uniformsOf([pp!, pg!, pb!], guardUniforms),
    );
    const shape = [...param.shape];
    return [
      { dataId: newParam.dataId, shape, dtype: 'float32' },
      { dataId: newBuffer.dataId, shape, dtype: 'float32' },
    ];
  },
};

export { ALL_FINITE };
/** The scan's last slot, which no program writes: a read-back that does not return it is wrong. */
export const READ_BACK_CHECK = 0x0acc_5d00;
/** Bits of a gradient's kinds slot: which non-finite values it holds. */
export const KIND_NAN = 1;
export const KIND_POSITIVE_INFINITY = 2;
export const KIND_NEGATIVE_INFINITY = 4;

/**
 * The layout of the int32 scan result for k gradients (k + k + 2 slots):
 *   [0, k)       first bad element of gradient i, or ALL_FINITE
 *   [k, 2k)      the kinds of non-finite values gradient i holds (KIND_* bits), or 0
 *   2k           the verdict: the first bad gradient, or ALL_FINITE (the guard of the update)
 *   2k + 1       READ_BACK_CHECK
 */
export function scanLayout(k: number): { kinds: number; verdict: number; check: number; size: number } {
  return { kinds: k, verdict: 2 * k, check: 2 * k + 1, size: 2 * k + 2 };
}

/*
 * The non-finite check: one dispatch per gradient reads it once (four elements per invocation
 * where the size allows) and, where an element is NaN or infinite, atomicMin's its flat index into
 * the gradient's slot, atomicOr's its kind, and atomicMin's the gradient's position into the
 * verdict slot, all in one small int32 tensor shared by the whole list. The verdict guards the
 * update programs queued after it; one read-back of the tensor, whenever it comes, tells which
 * gradient was bad, its first bad element and what it held. The test is on the bits (exponent all
 * ones), not on `x != x`: WGSL lets a compiler assume floats are finite.
 */
function nonFiniteShader(components: 1 | 4): () => string {
  const u = components === 4 ? 'vec4<u32>' : 'u32';
  const firstBad =
    components === 4
      ? `var lane = 0;
        if (bad.x) { lane = 0; } else if (bad.y) { lane = 1; } else if (bad.z) { lane = 2; } else { lane = 3; }
        atomicMin(&result[uniforms.tensorIndex], index * 4 + lane);`
      : 'atomicMin(&result[uniforms.tensorIndex], index);';
  const kind = (mask: string, bit: number) =>
    components === 4 ? `select(0, ${bit}, any(${mask}))` : `select(0, ${bit}, ${mask})`;
  return () => `
    fn main(index : i32) {
      if (index >= uniforms.count) {
        return;
      }
      let bits = bitcast<${u}>(grad[index]);
      let bad = (bits & ${u}(0x7f800000u)) == ${u}(0x7f800000u);
      if (${components === 4 ? 'any(bad)' : 'bad'}) {
        ${firstBad}
        let nan = (bits & ${u}(0x7fffffffu)) > ${u}(0x7f800000u);
        let positive = bits == ${u}(0x7f800000u);
        let negative = bits == ${u}(0xff800000u);
        atomicOr(&result[uniforms.tensorCount + uniforms.tensorIndex], ${kind('nan', KIND_NAN)} | ${kind('positive', KIND_POSITIVE_INFINITY)} | ${kind('negative', KIND_NEGATIVE_INFINITY)});
        atomicMin(&result[2 * uniforms.tensorCount], uniforms.tensorIndex);
      }
    }
  `;
}

function nonFiniteProgram(n: number, k: number, components: 1 | 4): WebGPUProgramSpec {
  return {
    variableNames: ['grad'],
    outputShape: [scanLayout(k).size],
    shaderKey: `accsgdNonFinite_${components}`,
    uniforms: 'count : i32, tensorIndex : i32, tensorCount : i32,',
    size: false,
    outputComponent: 1,
    variableComponents: [components],
    atomic: true,
    dispatchLayout: { x: [0] },
    dispatch: [Math.max(1, Math.ceil(n / components / WORKGROUP_SIZE)), 1, 1],
    workgroupSize: [WORKGROUP_SIZE, 1, 1],
    getUserCode: nonFiniteShader(components),
  };
}

/** The verdict of a step held back because an earlier step's verdict was bad (scanLayout). */
export const HELD_BACK = -1;

/*
 * Under nonFinite 'error' a failed step holds back every step after it, until the host has read
 * and reported it: the scan of each step first reads the previous step's verdict and, where that
 * is not ALL_FINITE (bad or itself held back), sets its own to HELD_BACK, which guards the update
 * like a bad gradient. So once a step fails, nothing from it on is applied, as if the error had
 * been thrown at that step, however late the read-back arrives.
 */
function heldBackProgram(size: number): WebGPUProgramSpec {
  return {
    variableNames: ['previous'],
    outputShape: [size],
    shaderKey: 'accsgdHeldBack',
    uniforms: 'previousVerdict : i32, verdict : i32,',
    size: false,
    outputComponent: 1,
    variableComponents: [1],
    atomic: true,
    dispatchLayout: { x: [0] },
    dispatch: [1, 1, 1],
    workgroupSize: [1, 1, 1],
    getUserCode: () => `
    fn main(index : i32) {
      if (index >= 1) {
        return;
      }
      if (previous[uniforms.previousVerdict] != ${ALL_FINITE}) {
        atomicMin(&result[uniforms.verdict], ${HELD_BACK});
      }
    }
  `,
  };
}

/**
 * Queues the non-finite check of every gradient on the GPU and returns the int32 scan result laid
 * out as scanLayout(k) says; with `previous` (the last step's scan), a step after a bad or
 * held-back one is held back (HELD_BACK). The caller passes it to the update kernel as its guard, or reads it
 * (one read-back, synchronous or not), and disposes it.
 */
export function webgpuNonFiniteScan(
  backend: object,
  grads: readonly TensorInfo[],
  previous: Tensor | null = null,
): Tensor {
  const gpu = backend as WebGPUBackend;
  const k = grads.length;
  const layout = scanLayout(k);
  // Uploaded from an exact Int32Array (a Fill program would pass the value through an f32 uniform).
  const slots = new Int32Array(layout.size).fill(ALL_FINITE);
  slots.fill(0, layout.kinds, layout.verdict);
  slots[layout.check] = READ_BACK_CHECK;
  const result = tensor(slots, [layout.size], 'int32');
  if (previous !== null) {
    gpu.runWebGPUProgram(
      heldBackProgram(layout.size),
      [{ dataId: previous.dataId, shape: previous.shape, dtype: 'int32' }],
      'int32',
      [
        { type: 'int32', data: [scanLayout((previous.size - 2) / 2).verdict] },
        { type: 'int32', data: [layout.verdict] },
      ],
      result,
    );
  }
  grads.forEach((grad, i) => {
    const n = sizeOf(grad.shape);
    if (n === 0) return;
    const components = componentsFor(n);
    gpu.runWebGPUProgram(
      nonFiniteProgram(n, k, components),
      [{ dataId: grad.dataId, shape: [n], dtype: 'float32' }],
      'int32',
      [
        { type: 'int32', data: [n / components] },
        { type: 'int32', data: [i] },
        { type: 'int32', data: [k] },
      ],
      result,
    );
  });
  return result;
}
