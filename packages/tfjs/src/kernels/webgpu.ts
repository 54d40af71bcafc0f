import type { KernelConfig, TensorInfo } from '@tensorflow/tfjs-core';
import { ACCSGD_UPDATE, sizeOf, updateArguments } from './registry.js';

/** The part of tfjs-backend-webgpu's WebGPUBackend this kernel uses (no runtime import). */
interface WebGPUBackend {
  runWebGPUProgram(
    program: WebGPUProgramSpec,
    inputs: TensorInfo[],
    outputDtype: 'float32',
    programDefinedUniform?: { type: 'float32'; data: number[] }[],
  ): TensorInfo;
}

/** tfjs-backend-webgpu's WebGPUProgram, as far as these programs need it. */
interface WebGPUProgramSpec {
  variableNames: string[];
  outputShape: number[];
  shaderKey: string;
  /** Program-defined uniforms, appended to tfjs's Uniforms struct. */
  uniforms: string;
  /** Adds `uniforms.size`, the element count, for the bounds guard. */
  size: true;
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  getUserCode: () => string;
}

/*
 * Two WGSL dispatches per variable, both over the flattened tensor. The multipliers are uniforms,
 * so the shader text (and tfjs's pipeline cache key, which sees only ranks and dtypes of the
 * flattened [n] tensors) never changes: one pipeline per program serves every variable and every
 * learning rate. tfjs folds dispatches wider than 65,535 workgroups into 2-D itself
 * (reshapeDispatch), and `getGlobalIndex()` undoes the fold.
 *
 * A WebGPU storage binding cannot be read-only and read-write in one dispatch, and tfjs's program
 * runner binds inputs read-only, so the update writes fresh buffers instead of overwriting p and buf.
 */

/** 64 lanes: a multiple of every vendor's SIMD width (32 on NVIDIA, 64 on AMD, 8-32 on Intel and SwiftShader). */
const WORKGROUP_SIZE = 64;

function bufferShader(): string {
  return `
    fn main(index : i32) {
      if (index >= uniforms.size) {
        return;
      }
      let b = uniforms.bufFromBuf * buffer[index] + uniforms.bufFromParam * param[index] + uniforms.bufFromGrad * grad[index];
      setOutputAtIndex(index, b);
    }
  `;
}

function paramShader(): string {
  return `
    fn main(index : i32) {
      if (index >= uniforms.size) {
        return;
      }
      let p = uniforms.paramFromParam * param[index] + uniforms.paramFromGrad * grad[index] + uniforms.paramFromBuf * newBuffer[index];
      setOutputAtIndex(index, p);
    }
  `;
}

function program(
  n: number,
  shaderKey: string,
  variableNames: string[],
  uniforms: string,
  getUserCode: () => string,
): WebGPUProgramSpec {
  return {
    variableNames,
    outputShape: [n],
    shaderKey,
    uniforms,
    size: true,
    dispatchLayout: { x: [0] },
    dispatch: [Math.ceil(n / WORKGROUP_SIZE), 1, 1],
    workgroupSize: [WORKGROUP_SIZE, 1, 1],
    getUserCode,
  };
}

/** webgpu: buffer' then param' (from buffer'), coefficients as f32 uniforms. */
export const webgpuUpdateKernel: KernelConfig = {
  kernelName: ACCSGD_UPDATE,
  backendName: 'webgpu',
  kernelFunc: (args) => {
    const { param, grad, buffer, coefficients } = updateArguments(args);
    const backend = args.backend as WebGPUBackend;
    const n = sizeOf(param.shape);
    const flat = (t: TensorInfo): TensorInfo => ({ dataId: t.dataId, shape: [n], dtype: 'float32' });
    const [bb, bp, bg, pp, pg, pb] = coefficients;
    const newBuffer = backend.runWebGPUProgram(
      program(
        n,
        'accsgdBuffer',
        ['param', 'grad', 'buffer'],
        'bufFromBuf : f32, bufFromParam : f32, bufFromGrad : f32,',
        bufferShader,
      ),
      [flat(param), flat(grad), flat(buffer)],
      'float32',
      [
        { type: 'float32', data: [bb!] },
        { type: 'float32', data: [bp!] },
        { type: 'float32', data: [bg!] },
      ],
    );
    const newParam = backend.runWebGPUProgram(
      program(
        n,
        'accsgdParam',
        ['param', 'grad', 'newBuffer'],
        'paramFromParam : f32, paramFromGrad : f32, paramFromBuf : f32,',
        paramShader,
      ),
      [flat(param), flat(grad), newBuffer],
      'float32',
      [
        { type: 'float32', data: [pp!] },
        { type: 'float32', data: [pg!] },
        { type: 'float32', data: [pb!] },
      ],
    );
    const shape = [...param.shape];
    return [
      { dataId: newParam.dataId, shape, dtype: 'float32' },
      { dataId: newBuffer.dataId, shape, dtype: 'float32' },
    ];
  },
};
