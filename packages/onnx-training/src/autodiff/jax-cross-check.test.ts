import { fromBinary, toBinary } from '@bufbuild/protobuf';
import { grad, numpy as np } from '@jax-js/jax';
import { ONNXModel } from '@jax-js/onnx';
import { ModelProtoSchema, TensorProto_DataType } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { int64Initializer, node, valueInfo } from '../model-builder.js';
import { ENCODER, encoderModel, tokenBatch } from '../test-support/forward-models.js';
import { buildGradientModel } from './gradient.js';
import { tensorValues } from './proto.js';

const [B, L] = [8, 6];

/**
 * The encoder with its weights as graph inputs and the softmax cross-entropy appended (output
 * `loss`), so that both differentiators take the gradient of one scalar function of named inputs.
 * Dropout (inference) becomes Identity and the attention reshapes get explicit sizes: @jax-js/onnx
 * has no Dropout and no Reshape with 0 (copy a dimension).
 */
function lossModel(): {
  bytes: Uint8Array<ArrayBuffer>;
  params: Map<string, { shape: number[]; values: Float32Array }>;
} {
  const model = fromBinary(ModelProtoSchema, encoderModel({ batch: B, seq: L, seed: 7 }));
  const graph = model.graph!;
  const params = new Map<string, { shape: number[]; values: Float32Array }>();
  graph.initializer = graph.initializer.filter((t) => {
    if (t.dataType !== TensorProto_DataType.FLOAT) return true;
    const shape = t.dims.map(Number);
    params.set(t.name, { shape, values: Float32Array.from(tensorValues(t)!) });
    graph.input.push(valueInfo(t.name, shape));
    return false;
  });
  for (const n of graph.node) if (n.opType === 'Dropout') n.opType = 'Identity';
  const { width: D, heads: H } = ENCODER;
  const explicit: Record<string, number[]> = { heads: [B, L, H, D / H], merge: [B, L, D] };
  graph.initializer = graph.initializer.map((t) =>
    explicit[t.name] ? int64Initializer(t.name, [explicit[t.name]!.length], explicit[t.name]!) : t,
  );
  graph.input.push(valueInfo('labels', [B, ENCODER.classes]));
  graph.node.push(
    node('ReduceLogSumExp', ['logits'], ['lse'], { axes: [1], keepdims: 1 }),
    node('Sub', ['logits', 'lse'], ['log_probs']),
    node('Mul', ['labels', 'log_probs'], ['picked']),
    node('ReduceSum', ['picked'], ['total'], { keepdims: 0 }),
    node('Constant', [], ['minus_mean'], { value_float: { float: -1 / B } }),
    node('Mul', ['total', 'minus_mean'], ['loss']),
  );
  graph.output = [valueInfo('loss', [])];
  return { bytes: toBinary(ModelProtoSchema, model) as Uint8Array<ArrayBuffer>, params };
}

describe('gradients against an independent differentiator (@jax-js/onnx, float32)', () => {
  it("the BERT-shaped encoder's gradient for every weight agrees within 1e-4 of each tensor's largest component", async () => {
    const { bytes, params } = lossModel();
    const { ids, mask, labels } = tokenBatch(42, B, L);

    const gm = buildGradientModel(bytes, { loss: 'scalar', inputs: [...params.keys()], trainable: [] });
    const session = await ort.InferenceSession.create(gm.model);
    const feeds: Record<string, ort.Tensor> = {
      ids: new ort.Tensor('int64', ids, [B, L]),
      mask: new ort.Tensor('int64', mask, [B, L]),
      labels: new ort.Tensor('float32', labels, [B, ENCODER.classes]),
    };
    const host = gm.hostFeeds({ ids, mask });
    for (const h of gm.hostInputs)
      feeds[h.name] =
        h.type === 'int64'
          ? new ort.Tensor('int64', host[h.name] as BigInt64Array, h.shape)
          : new ort.Tensor('float32', host[h.name] as Float32Array, h.shape);
    for (const [name, p] of params) feeds[name] = new ort.Tensor('float32', p.values, p.shape);
    const ours = await session.run(feeds);
    await session.release();

    const jaxModel = new ONNXModel(bytes);
    const fixed = {
      ids: np.array(Int32Array.from(ids, Number), { shape: [B, L] }),
      mask: np.array(Int32Array.from(mask, Number), { shape: [B, L] }),
      labels: np.array(labels, { shape: [B, ENCODER.classes] }),
    };
    const weights = Object.fromEntries(
      [...params].map(([name, p]) => [name, np.array(p.values, { shape: p.shape })]),
    );
    const theirs = grad((w: Record<string, np.Array>) => jaxModel.run({ ...w, ...fixed }).loss!)(weights);

    let worst = 0;
    for (const name of params.keys()) {
      const a = ours[gm.gradients.get(name)!]!.data as Float32Array;
      const b = (theirs as Record<string, np.Array>)[name]!.dataSync() as Float32Array;
      expect(b.length).toBe(a.length);
      const scale = Math.max(...a.map(Math.abs), 1e-12);
      let tensorWorst = 0;
      for (let i = 0; i < a.length; i++) tensorWorst = Math.max(tensorWorst, Math.abs(a[i]! - b[i]!) / scale);
      expect(tensorWorst, name).toBeLessThan(1e-4);
      worst = Math.max(worst, tensorWorst);
    }
    console.log(
      `[jax-js cross-check] worst gradient difference ${worst.toExponential(2)} over ${params.size} weights`,
    );
    jaxModel.dispose();
  });
});
