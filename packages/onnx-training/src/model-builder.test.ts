import { AccSGDConfigError } from '@accsgd/core';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { encodeModel, floatInitializer, int64Initializer, node, valueInfo } from './model-builder.js';

describe('model-builder', () => {
  it('builds a model ONNX Runtime runs: an embedding lookup scaled by a float attribute', async () => {
    const bytes = encodeModel({
      name: 'lookup',
      nodes: [
        node('Gather', ['E', 'ids'], ['rows']),
        node('LeakyRelu', ['rows'], ['y'], { alpha: { float: 0.5 } }),
        node('Reshape', ['y', 'flat'], ['out']),
      ],
      inputs: [valueInfo('ids', ['n'], 'int64')],
      outputs: [valueInfo('out', ['m'])],
      initializers: [
        floatInitializer('E', [3, 2], [1, -2, 3, -4, 5, -6]),
        int64Initializer('flat', [1], [-1]),
      ],
      opset: 17,
      producerName: 'test',
    });
    const session = await ort.InferenceSession.create(bytes);
    const out = await session.run({ ids: new ort.Tensor('int64', BigInt64Array.from([2n, 0n]), [2]) });
    expect([...(out.out!.data as Float32Array)]).toEqual([5, -3, 1, -1]);
    await session.release();
  });

  it('rejects bad input with AccSGDConfigError saying what was expected', () => {
    expect(() => floatInitializer('W', [2, 2], [1, 2, 3])).toThrow(
      /initializer "W" values must be 4 values for dims \[2,2\]/,
    );
    expect(() => int64Initializer('s', [1], [0.5])).toThrow(AccSGDConfigError);
    expect(() => valueInfo('x', [2, -1])).toThrow(/sizes \(integers >= 0\) or symbolic names/);
    expect(() => valueInfo('x', [2], 'float16' as never)).toThrow(/float32, float64, int64/);
    expect(() => node('LeakyRelu', ['x'], ['y'], { alpha: 0.5 })).toThrow(/write \{ float: x \} for a float/);
    expect(() => node('Add', ['x'], [])).toThrow(/a non-empty array of value names/);
    expect(() => encodeModel({ name: 'm', nodes: [], inputs: [], outputs: [], opset: 0 })).toThrow(
      /opset must be a positive integer/,
    );
  });
});
