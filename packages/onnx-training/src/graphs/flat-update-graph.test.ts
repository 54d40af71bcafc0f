import { describe, expect, it } from 'vitest';
import {
  buildFlatUpdateGraph,
  flatSegments,
  SPLIT_OUTPUTS,
  splitWidthAfterRefusal,
} from './flat-update-graph.js';

describe('flatSegments', () => {
  it('keeps each group whole while it fits, never mixes groups, and gives an oversized parameter its own segment', () => {
    // Group 0: lengths 3, 4, 2 (9 > 8: a second segment from the third); group 1: 20 (over the
    // limit: alone), then 1 and 1.
    expect(flatSegments([3, 4, 2, 20, 1, 1], [3, 3], 8)).toEqual([
      { group: 0, members: [0, 1] },
      { group: 0, members: [2] },
      { group: 1, members: [3] },
      { group: 1, members: [4, 5] },
    ]);
    expect(flatSegments([5, 5], [1, 1], 100)).toEqual([
      { group: 0, members: [0] },
      { group: 1, members: [1] },
    ]);
  });
});

describe('buildFlatUpdateGraph', () => {
  it('declares a buffer only when some element continues, and masks only in the mixed mode', async () => {
    const ort = await import('onnxruntime-node');
    const inputs = async (mode: 'first' | 'later' | 'masked') => {
      const session = await ort.InferenceSession.create(buildFlatUpdateGraph(mode));
      const names = [...session.inputNames].sort();
      await session.release();
      return names;
    };
    expect(await inputs('first')).toEqual(['c1_first', 'c2', 'c3', 'c4', 'c5', 'g', 'p']);
    expect(await inputs('later')).toEqual(['buf', 'c0', 'c1', 'c2', 'c3', 'c4', 'c5', 'g', 'p']);
    expect(await inputs('masked')).toEqual([
      'buf',
      'c0',
      'c1',
      'c1_first',
      'c2',
      'c3',
      'c4',
      'c5',
      'first',
      'g',
      'p',
      'present',
    ]);
  });
});

describe('splitWidthAfterRefusal', () => {
  // ORT 1.30's refusal on SwiftShader (maxStorageBuffersPerShaderStage 12), as a session.run error.
  const refusal = new Error(
    "Non-zero status code returned while running Split node. Name:'y0' Status Message: /onnxruntime_src/onnxruntime/core/providers/webgpu/shader_helper.cc:306 onnxruntime::webgpu::ShaderVariableHelper& onnxruntime::webgpu::ShaderHelper::AddVariableImpl(bool, const std::string&, onnxruntime::webgpu::ShaderUsage, const onnxruntime::TensorShape&, uint32_t) numbers_storage_buffers_ <= limits_.maxStorageBuffersPerShaderStage was false. Too many storage buffers in shader. Current: 256, Max is 12",
  );
  it("reads the adapter's limit less the input's buffer", () => {
    expect(splitWidthAfterRefusal(refusal, 255)).toBe(11);
    expect(splitWidthAfterRefusal(String(refusal).replace('Max is 12', 'Max is 1000000'), 255)).toBe(255);
  });
  it('falls back to the width WebGPU guarantees on any other error', () => {
    expect(SPLIT_OUTPUTS).toBe(7);
    expect(splitWidthAfterRefusal(new Error('device lost'), 255)).toBe(7);
    expect(splitWidthAfterRefusal(String(refusal).replace('Max is 12', 'Max is 8'), 255)).toBe(7);
    expect(splitWidthAfterRefusal(String(refusal).replace('Max is 12', 'Max is x'), 255)).toBe(7);
    expect(splitWidthAfterRefusal(undefined, 255)).toBe(7);
  });
});
