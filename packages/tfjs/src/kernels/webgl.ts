import type { KernelConfig, TensorInfo } from '@tensorflow/tfjs-core';
import { ACCSGD_UPDATE, updateArguments } from './registry.js';

/** The part of tfjs-backend-webgl's MathBackendWebGL this kernel uses (no runtime import). */
interface WebGLBackend {
  runWebGLProgram(
    program: WebGLProgramSpec,
    inputs: TensorInfo[],
    outputDtype: 'float32',
    customUniformValues?: number[][],
  ): TensorInfo;
}

/** tfjs-backend-webgl's GPGPUProgram, as far as these programs need it. */
interface WebGLProgramSpec {
  variableNames: string[];
  outputShape: number[];
  userCode: string;
  customUniforms: { name: string; type: 'float' }[];
}

/*
 * Two GLSL programs, one per output (a WebGL fragment program writes one texture). The six
 * multipliers are uniforms, so the shader text, and with it tfjs's program cache key, does not
 * depend on the learning rate: changing it re-uses the compiled program.
 */

/** buffer' = bufFromBuf * buffer + bufFromParam * param + bufFromGrad * grad */
const BUFFER_SHADER = `
  void main() {
    float p = getParamAtOutCoords();
    float g = getGradAtOutCoords();
    float b = getBufferAtOutCoords();
    setOutput(bufFromBuf * b + bufFromParam * p + bufFromGrad * g);
  }
`;

/** param' = paramFromParam * param + paramFromGrad * grad + paramFromBuf * buffer' */
const PARAM_SHADER = `
  void main() {
    float p = getParamAtOutCoords();
    float g = getGradAtOutCoords();
    float b = getNewBufferAtOutCoords();
    setOutput(paramFromParam * p + paramFromGrad * g + paramFromBuf * b);
  }
`;

/** A program over `inputs` whose multipliers `uniforms` are float uniforms (no recompile on change). */
function program(shape: number[], inputs: string[], userCode: string, uniforms: string[]): WebGLProgramSpec {
  return {
    variableNames: inputs,
    outputShape: shape,
    userCode,
    customUniforms: uniforms.map((name) => ({ name, type: 'float' as const })),
  };
}

const bufferProgram = (shape: number[]) =>
  program(shape, ['param', 'grad', 'buffer'], BUFFER_SHADER, ['bufFromBuf', 'bufFromParam', 'bufFromGrad']);

const paramProgram = (shape: number[]) =>
  program(shape, ['param', 'grad', 'newBuffer'], PARAM_SHADER, [
    'paramFromParam',
    'paramFromGrad',
    'paramFromBuf',
  ]);

/** webgl: two draws, buffer' first, then param' from buffer'. Coefficients are rounded to float32 once. */
export const webglUpdateKernel: KernelConfig = {
  kernelName: ACCSGD_UPDATE,
  backendName: 'webgl',
  kernelFunc: (args) => {
    const { param, grad, buffer, coefficients } = updateArguments(args);
    const backend = args.backend as WebGLBackend;
    const shape = [...param.shape];
    const [bb, bp, bg, pp, pg, pb] = coefficients;
    const newBuffer = backend.runWebGLProgram(bufferProgram(shape), [param, grad, buffer], 'float32', [
      [bb!],
      [bp!],
      [bg!],
    ]);
    const newParam = backend.runWebGLProgram(paramProgram(shape), [param, grad, newBuffer], 'float32', [
      [pp!],
      [pg!],
      [pb!],
    ]);
    return [newParam, newBuffer];
  },
};
