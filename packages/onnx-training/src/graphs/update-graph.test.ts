import { fromBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema } from 'onnx-buf';
import { describe, expect, it } from 'vitest';
import { buildAccSGDUpdateModel, UPDATE_GRAPH_OPS } from './update-graph.js';
import { buildIdentityModel, buildLeastSquaresModel } from './utility-graphs.js';

const decode = (bytes: Uint8Array) => fromBinary(ModelProtoSchema, bytes);

describe('buildAccSGDUpdateModel', () => {
  const model = decode(
    buildAccSGDUpdateModel({
      params: [
        { name: 'w', shape: [2, 3] },
        { name: 'b', shape: [3], initialise: true },
        { name: 'v', shape: [4], group: 1 },
      ],
    }),
  );

  it('declares IR 8 and opset 17 of the default ai.onnx domain only', () => {
    expect(model.irVersion).toBe(8n);
    expect(model.opsetImport.map((o) => [o.domain, o.version])).toEqual([['', 17n]]);
    expect(new Set(model.graph!.node.map((n) => n.domain))).toEqual(new Set(['']));
  });

  it('uses Mul and Add only: 6 Mul + 4 Add per parameter, 5 Mul + 3 Add on a first step', () => {
    const ops = model.graph!.node.map((n) => n.opType);
    expect(new Set(ops)).toEqual(new Set(UPDATE_GRAPH_OPS));
    // w and v continue (10 nodes each), b initialises (8 nodes).
    expect(ops.filter((o) => o === 'Mul')).toHaveLength(6 + 5 + 6);
    expect(ops.filter((o) => o === 'Add')).toHaveLength(4 + 3 + 4);
  });

  it('has per-group float32 scalar multipliers, flat tensors, and no buffer input on a first step', () => {
    const inputs = model.graph!.input.map((i) => i.name);
    expect(inputs).toEqual([
      // group 0 has a continuing member (w) and a first-step member (b)
      'group0_c0',
      'group0_c1',
      'group0_c2',
      'group0_c3',
      'group0_c4',
      'group0_c5',
      'group0_c1_first',
      // group 1 has only v, continuing
      'group1_c0',
      'group1_c1',
      'group1_c2',
      'group1_c3',
      'group1_c4',
      'group1_c5',
      'p_0',
      'g_0',
      'buf_0',
      'p_1',
      'g_1',
      'p_2',
      'g_2',
      'buf_2',
    ]);
    expect(model.graph!.output.map((o) => o.name)).toEqual([
      'p_0_out',
      'buf_0_out',
      'p_1_out',
      'buf_1_out',
      'p_2_out',
      'buf_2_out',
    ]);
    const dims = (name: string) => {
      const t = model.graph!.input.find((i) => i.name === name)!.type!.value;
      if (t.case !== 'tensorType') throw new Error('not a tensor');
      expect(t.value.elemType).toBe(1); // FLOAT
      return t.value.shape!.dim.map((d) => d.value.value);
    };
    expect(dims('group0_c0')).toEqual([]);
    expect(dims('p_0')).toEqual([6n]);
    expect(dims('buf_2')).toEqual([4n]);
  });

  it('evaluates in core float32 order: buf = (c0 buf + c1 p) + c2 g, p = (c3 p + c4 g) + c5 buf', () => {
    const nodes = model.graph!.node.filter(
      (n) => n.output[0]!.startsWith('t0_') || n.output[0]!.endsWith('_0_out'),
    );
    expect(nodes.map((n) => `${n.opType}(${n.input.join(',')})->${n.output[0]}`)).toEqual([
      'Mul(group0_c0,buf_0)->t0_c0b',
      'Mul(group0_c1,p_0)->t0_c1p',
      'Add(t0_c0b,t0_c1p)->t0_head',
      'Mul(group0_c2,g_0)->t0_c2g',
      'Add(t0_head,t0_c2g)->buf_0_out',
      'Mul(group0_c3,p_0)->t0_c3p',
      'Mul(group0_c4,g_0)->t0_c4g',
      'Add(t0_c3p,t0_c4g)->t0_pg',
      'Mul(group0_c5,buf_0_out)->t0_c5b',
      'Add(t0_pg,t0_c5b)->p_0_out',
    ]);
  });
});

describe('helper models', () => {
  it('Identity and the least-squares graph use standard ops only', () => {
    expect(decode(buildIdentityModel()).graph!.node.map((n) => n.opType)).toEqual(['Identity']);
    expect(decode(buildLeastSquaresModel()).graph!.node.map((n) => n.opType)).toEqual([
      'Reshape',
      'Reshape',
      'MatMul',
      'Sub',
      'Transpose',
      'MatMul',
      'Reshape',
    ]);
  });
});
