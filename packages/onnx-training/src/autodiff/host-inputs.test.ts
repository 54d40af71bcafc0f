import { TensorProto_DataType } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { forwardModel } from '../test-support/forward-models.js';
import { buildGradientModel } from './gradient.js';

/**
 * Values computed only from int64 inputs and constants run on the host (hostFeeds), not in ORT.
 * This model uses every int64/bool op the host evaluates: Equal, Not, Greater, Or, Less, And, Add,
 * Mul, Sub, Div (truncating), Unsqueeze, Squeeze, Cast to float and to bool.
 */
const model = forwardModel({
  inputs: { x: [2, 3] },
  intInputs: { mask: [2, 3] },
  intTensors: { zero: [[], [0]], one: [[], [1]], two: [[], [2]], row: [[3], [1, 2, 3]] },
  ints: { axis0: [0] },
  nodes: [
    ['Equal', ['mask', 'zero'], ['empty']],
    ['Not', ['empty'], ['used']],
    ['Greater', ['mask', 'one'], ['strong']],
    ['Less', ['mask', 'two'], ['weak']],
    ['Or', ['empty', 'strong'], ['pick']],
    ['And', ['used', 'weak'], ['single']],
    ['Add', ['mask', 'row'], ['shifted']],
    ['Mul', ['shifted', 'mask'], ['product']],
    ['Sub', ['product', 'one'], ['less']],
    ['Div', ['less', 'two'], ['halved']],
    ['Unsqueeze', ['halved', 'axis0'], ['halved3']],
    ['Squeeze', ['halved3', 'axis0'], ['halved2']],
    ['Cast', ['halved2'], ['scale'], { to: TensorProto_DataType.FLOAT }],
    ['Cast', ['single'], ['singlef'], { to: TensorProto_DataType.FLOAT }],
    ['Cast', ['halved2'], ['nonzero'], { to: TensorProto_DataType.BOOL }],
    ['Mul', ['x', 'scale'], ['scaled']],
    ['Where', ['pick', 'x', 'scaled'], ['chosen']],
    ['Where', ['nonzero', 'chosen', 'x'], ['kept']],
    ['Add', ['kept', 'singlef'], ['y']],
  ],
  outputs: { y: [2, 3] },
});

describe('host-computed inputs', () => {
  const mask = BigInt64Array.from([0n, 1n, 2n, 3n, 1n, 0n]);
  const x = Float32Array.from([0.5, -1, 2, 1.5, -0.25, 3]);
  const labels = Float32Array.from([1, 0, -1, 2, 0.5, 1]);

  it('evaluates int64 and bool ops on the host as ONNX defines them', () => {
    const gm = buildGradientModel(model, { loss: 'mse', inputs: ['x'], trainable: [] });
    expect(gm.hostInputs.map((h) => `${h.name}:${h.type}[${h.shape}]`)).toEqual([
      'pick:bool[2,3]',
      'scale:float32[2,3]',
      'singlef:float32[2,3]',
      'nonzero:bool[2,3]',
    ]);
    const host = gm.hostFeeds({ mask });
    // mask 0 1 2 / 3 1 0; row 1 2 3: shifted 1 3 5 / 4 3 3; product 0 3 10 / 12 3 0;
    // less -1 2 9 / 11 2 -1; halved (toward zero) 0 1 4 / 5 1 0.
    expect(Array.from(host.pick as Uint8Array)).toEqual([1, 0, 1, 1, 0, 1]);
    expect(Array.from(host.scale as Float32Array)).toEqual([0, 1, 4, 5, 1, 0]);
    expect(Array.from(host.singlef as Float32Array)).toEqual([0, 1, 0, 0, 1, 0]);
    expect(Array.from(host.nonzero as Uint8Array)).toEqual([0, 1, 1, 1, 1, 0]);
  });

  it("gives the loss ONNX Runtime computes when it runs the forward model's int64 ops itself", async () => {
    const forward = await ort.InferenceSession.create(model);
    const { y } = await forward.run({
      x: new ort.Tensor('float32', x, [2, 3]),
      mask: new ort.Tensor('int64', mask, [2, 3]),
    });
    const expected = (y!.data as Float32Array).reduce((s, v, i) => s + (v - labels[i]!) ** 2, 0) / 6;
    await forward.release();

    const gm = buildGradientModel(model, { loss: 'mse', inputs: ['x'], trainable: [] });
    const session = await ort.InferenceSession.create(gm.model);
    const host = gm.hostFeeds({ mask });
    const feeds: Record<string, ort.Tensor> = {
      x: new ort.Tensor('float32', x, [2, 3]),
      mask: new ort.Tensor('int64', mask, [2, 3]),
      labels: new ort.Tensor('float32', labels, [2, 3]),
    };
    for (const h of gm.hostInputs)
      feeds[h.name] =
        h.type === 'bool'
          ? new ort.Tensor('bool', host[h.name] as Uint8Array, h.shape)
          : new ort.Tensor('float32', host[h.name] as Float32Array, h.shape);
    const out = await session.run(feeds);
    expect((out[gm.loss]!.data as Float32Array)[0]).toBeCloseTo(expected, 5);
    await session.release();
  });
});
