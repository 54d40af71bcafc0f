import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findPyTorch } from '@accsgd/conformance';
import { AccSGD, AccSGDConfigError, AccSGDStateError, decodeState } from '@accsgd/core';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import {
  AttributeProto_AttributeType,
  AttributeProtoSchema,
  GraphProtoSchema,
  ModelProtoSchema,
  NodeProtoSchema,
  OperatorSetIdProtoSchema,
  TensorProto_DataType,
} from 'onnx-buf';
import * as ortNode from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { buildGradientModel } from '../autodiff/gradient.js';
import { tensorInfo } from '../graphs/onnx-proto.js';
import { OnnxAccSGD } from '../onnx-optimizer.js';
import type { OrtModule } from '../runtime.js';
import { type ForwardSpec, forwardModel, random } from '../test-support/forward-models.js';
import { OnnxTrainer, type OnnxTrainerOptions } from './onnx-trainer.js';

const ort: OrtModule = ortNode;
const IN = 6;
const HIDDEN = 5;
const CLASSES = 3;
const hyperparams = { lr: 0.05, kappa: 100, xi: 10, smallConst: 0.7, weightDecay: 1e-4 };

/**
 * A fixed-batch export as torch.onnx writes it without dynamic_axes: x[1, 2, 3] flattened by a
 * Reshape whose constant shape is [1, -1], then Gemm, Relu, Gemm to logits[1, 3].
 */
function fixedBatchModel(seed = 3): Uint8Array {
  return forwardModel({
    inputs: { x: [1, 2, 3] },
    params: {
      'fc1.weight': [[HIDDEN, IN], random(HIDDEN * IN, seed, 0.6)],
      'fc1.bias': [[HIDDEN], random(HIDDEN, seed + 1, 0.1)],
      'fc2.weight': [[CLASSES, HIDDEN], random(CLASSES * HIDDEN, seed + 2, 0.6)],
      'fc2.bias': [[CLASSES], random(CLASSES, seed + 3, 0.1)],
    },
    ints: { flat: [1, -1] },
    nodes: [
      ['Reshape', ['x', 'flat'], ['f']],
      ['Gemm', ['f', 'fc1.weight', 'fc1.bias'], ['h0'], { transB: 1 }],
      ['Relu', ['h0'], ['h']],
      ['Gemm', ['h', 'fc2.weight', 'fc2.bias'], ['logits'], { transB: 1 }],
    ],
    outputs: { logits: [1, CLASSES] },
  });
}

function batchOf(rows: number, seed: number): { x: Float32Array; labels: Float32Array } {
  const x = Float32Array.from(random(rows * IN, seed));
  const labels = new Float32Array(rows * CLASSES);
  for (let r = 0; r < rows; r++) labels[r * CLASSES + ((r + seed) % CLASSES)] = 1;
  return { x, labels };
}

const options = (extra: Partial<OnnxTrainerOptions> = {}): OnnxTrainerOptions => ({
  loss: 'softmax-cross-entropy',
  batchSize: 4,
  hyperparams,
  ort,
  ...extra,
});

/** The model with `params` in place of its initializers (what exportModel writes). */
function withParams(model: Uint8Array, params: ReadonlyMap<string, Float32Array>): Uint8Array {
  const m = fromBinary(ModelProtoSchema, model.slice());
  for (const t of m.graph!.initializer) {
    const values = params.get(t.name);
    if (!values) continue;
    t.dataType = TensorProto_DataType.FLOAT;
    t.floatData = [];
    t.rawData = new Uint8Array(Float32Array.from(values).buffer);
  }
  return toBinary(ModelProtoSchema, m);
}

/** The gradients of the loss at `params` for one batch, from buildGradientModel's model. */
async function gradients(
  model: Uint8Array,
  params: ReadonlyMap<string, Float32Array>,
  batch: { x: Float32Array; labels: Float32Array },
  rows: number,
): Promise<Map<string, Float32Array>> {
  const g = buildGradientModel(model, { loss: 'softmax-cross-entropy', batchSize: rows });
  const session = await ort.InferenceSession.create(g.model);
  const feeds: Record<string, InstanceType<typeof ort.Tensor>> = {
    x: new ort.Tensor('float32', batch.x, [rows, 2, 3]),
    labels: new ort.Tensor('float32', batch.labels, [rows, CLASSES]),
  };
  for (const p of g.params) feeds[p.name] = new ort.Tensor('float32', params.get(p.name)!, p.shape);
  const out = await session.run(feeds);
  await session.release();
  return new Map([...g.gradients].map(([name, output]) => [name, out[output]!.data as Float32Array]));
}

describe('OnnxTrainer batchSize on a fixed-batch export', () => {
  it('sets the leading dimension of the batch input and labels, and rewrites the Reshape constant [1, -1]', async () => {
    const trainer = await OnnxTrainer.create(fixedBatchModel(), options());
    expect(trainer.trainStep.batchInputs).toEqual([{ name: 'x', shape: [4, 2, 3], type: 'float32' }]);
    expect(trainer.trainStep.labels).toEqual({ name: 'labels', shape: [4, CLASSES] });
    expect(trainer.batchSize).toBe(4);
    const b = batchOf(4, 1);
    const loss = await trainer.step({ x: b.x }, b.labels);
    expect(Number.isFinite(loss)).toBe(true);
    // The exported model is the export, weights replaced: still batch 1, as it was written.
    const exported = fromBinary(ModelProtoSchema, await trainer.exportModel());
    const type = exported.graph!.input[0]!.type!.value;
    expect(type.case === 'tensorType' && type.value.shape!.dim.map((d) => d.value.value)).toEqual([
      1n,
      2n,
      3n,
    ]);
    await trainer.dispose();
  });

  it('refuses a Reshape constant that folds the batch into another axis, naming the node', async () => {
    const bad = forwardModel({
      inputs: { x: [1, 2, 3] },
      params: { W: [[3, 2], random(6, 2)] },
      ints: { rows: [2, 3] },
      nodes: [
        ['Reshape', ['x', 'rows'], ['r']],
        ['MatMul', ['r', 'W'], ['y']],
      ],
      outputs: { y: [2, 2] },
    });
    const e = await OnnxTrainer.create(bad, { ...options({ loss: 'mse' }) }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(AccSGDConfigError);
    expect((e as AccSGDConfigError).field).toBe('graph.node[0] "node0_Reshape" (Reshape)');
    expect((e as Error).message).toMatch(/reshapes batch data to the constant shape \[2,3\]/);
  });

  it('a last partial batch runs on the same trainer, same parameters and buffers: equal to a trainer built for that size resumed from the state', async () => {
    const a = await OnnxTrainer.create(fixedBatchModel(), options());
    const b = await OnnxTrainer.create(fixedBatchModel(), options());
    const full = batchOf(4, 2);
    const partial = batchOf(3, 5);
    const lossA1 = await a.step({ x: full.x }, full.labels);
    expect(await b.step({ x: full.x }, full.labels)).toBe(lossA1);
    const lossA2 = await a.step({ x: partial.x }, partial.labels);
    expect(a.stepCount).toBe(2);
    expect(a.trainStep.batchInputs[0]!.shape).toEqual([4, 2, 3]);
    // The reference: a trainer built for 3 rows from b's model and state.
    const c = await OnnxTrainer.create(await b.exportModel(), options({ batchSize: 3 }));
    await c.importState(await b.exportState());
    expect(await c.step({ x: partial.x }, partial.labels)).toBe(lossA2);
    const [ra, rc] = [await a.read(), await c.read()];
    for (const name of a.paramNames) {
      expect(ra.params.get(name)).toEqual(rc.params.get(name));
      expect(ra.buffers.get(name)).toEqual(rc.buffers.get(name));
    }
    // And back to full batches on the same trainer.
    expect(Number.isFinite(await a.step({ x: full.x }, full.labels))).toBe(true);
    await Promise.all([a.dispose(), b.dispose(), c.dispose()]);
  });
});

describe('OnnxTrainer exportState / importState (@accsgd/core state file)', () => {
  const batches = Array.from({ length: 6 }, (_, k) => batchOf(4, 10 + k));

  it('resumes bit for bit: 3 steps, checkpoint, 3 steps in a fresh trainer equal 6 steps in one', async () => {
    const whole = await OnnxTrainer.create(fixedBatchModel(), options());
    const losses: number[] = [];
    for (const b of batches) losses.push(await whole.step({ x: b.x }, b.labels));
    const first = await OnnxTrainer.create(fixedBatchModel(), options());
    for (const b of batches.slice(0, 3)) await first.step({ x: b.x }, b.labels);
    const [model, state] = [await first.exportModel(), await first.exportState()];
    await first.dispose();
    const resumed = await OnnxTrainer.create(model, options());
    await resumed.importState(state);
    expect(resumed.stepCount).toBe(3);
    const later: number[] = [];
    for (const b of batches.slice(3)) later.push(await resumed.step({ x: b.x }, b.labels));
    expect(later).toEqual(losses.slice(3));
    const [rw, rr] = [await whole.read(), await resumed.read()];
    for (const name of whole.paramNames) {
      expect(rr.params.get(name)).toEqual(rw.params.get(name));
      expect(rr.buffers.get(name)).toEqual(rw.buffers.get(name));
    }
    await Promise.all([whole.dispose(), resumed.dispose()]);
  });

  it('moves a run to OnnxAccSGD and to core AccSGD and back: the same state bytes, the same next updates', async () => {
    const trainer = await OnnxTrainer.create(fixedBatchModel(), options());
    for (const b of batches.slice(0, 2)) await trainer.step({ x: b.x }, b.labels);
    const state = await trainer.exportState();
    const model = await trainer.exportModel();
    const { params } = await trainer.read();
    const shapes = new Map(trainer.trainStep.params.map((p) => [p.name, p.shape]));
    const names = trainer.paramNames;

    // OnnxAccSGD imports the file and writes it back byte for byte.
    const onnxOpt = await OnnxAccSGD.create(
      [{ params: names.map((name) => ({ name, shape: shapes.get(name)!, data: params.get(name)! })) }],
      hyperparams,
      { ort },
    );
    await onnxOpt.importState(state);
    expect(await onnxOpt.exportState()).toEqual(state);

    // core's AccSGD takes the next step from the same state and gradients.
    const arrays = names.map((name) => Float32Array.from(params.get(name)!));
    const core = new AccSGD(
      [{ params: arrays, names, shapes: names.map((n) => shapes.get(n)!) }],
      hyperparams,
    );
    core.importState(state);
    const g = await gradients(model, params, batches[2]!, 4);
    core.step(names.map((n) => g.get(n)!));
    await trainer.step({ x: batches[2]!.x }, batches[2]!.labels);
    const afterTrainer = await trainer.read();
    names.forEach((name, i) => {
      const expected = afterTrainer.params.get(name)!;
      for (let k = 0; k < expected.length; k++) expect(arrays[i]![k]).toBeCloseTo(expected[k]!, 6);
    });
    // And back: a trainer resumed from core's state and parameters continues like the trainer.
    const back = await OnnxTrainer.create(
      withParams(model, new Map(names.map((n, i) => [n, arrays[i]!]))),
      options(),
    );
    await back.importState(core.exportState());
    expect(back.stepCount).toBe(3);
    const [l1, l2] = [
      await trainer.step({ x: batches[3]!.x }, batches[3]!.labels),
      await back.step({ x: batches[3]!.x }, batches[3]!.labels),
    ];
    expect(l2).toBeCloseTo(l1, 5);
    await Promise.all([trainer.dispose(), back.dispose(), onnxOpt.dispose()]);
  });

  it('refuses a state of other parameters with AccSGDStateError and changes nothing', async () => {
    const trainer = await OnnxTrainer.create(fixedBatchModel(), options());
    const other = new AccSGD([{ params: [new Float32Array(2)], names: ['fc9.weight'] }], hyperparams);
    other.step([new Float32Array([1, 1])]);
    await expect(trainer.importState(other.exportState())).rejects.toThrow(AccSGDStateError);
    expect(trainer.stepCount).toBe(0);
    expect((await trainer.read()).buffers.get('fc1.weight')).toBeNull();
    await trainer.dispose();
  });
});

const torch = findPyTorch();
const requireTorch = process.env.ACCSGD_REQUIRE_PYTORCH === '1';
if (!torch.available && !requireTorch)
  console.warn(`[accsgd] SKIPPED OnnxTrainer <-> PyTorch: ${torch.reason}`);

describe.skipIf(!torch.available && !requireTorch)('OnnxTrainer state <-> PyTorch (accsgd_torch.py)', () => {
  it('moves a run to PyTorch for a step (its autograd, its AccSGD) and back: the same parameters and next loss', async () => {
    if (!torch.available) throw new Error(`ACCSGD_REQUIRE_PYTORCH=1, but ${torch.reason}`);
    const batches = Array.from({ length: 4 }, (_, k) => batchOf(4, 40 + k));
    const trainer = await OnnxTrainer.create(fixedBatchModel(), options());
    for (const b of batches.slice(0, 2)) await trainer.step({ x: b.x }, b.labels);
    const dir = mkdtempSync(join(tmpdir(), 'accsgd-torch-'));
    try {
      const file = (name: string) => join(dir, name);
      writeFileSync(file('model.onnx'), await trainer.exportModel());
      writeFileSync(file('state.safetensors'), await trainer.exportState());
      const b = batches[2]!;
      writeFileSync(
        file('batch.json'),
        JSON.stringify({ x: [...b.x], labels: [...b.labels], lr: hyperparams.lr }),
      );
      const python = dirname(createRequire(import.meta.url).resolve('@accsgd/core/python/accsgd_torch.py'));
      const script = fileURLToPath(new URL('../test-support/torch_step.py', import.meta.url));
      const run = spawnSync(
        torch.python,
        [
          script,
          python,
          file('model.onnx'),
          file('state.safetensors'),
          file('batch.json'),
          file('torch.safetensors'),
          file('params.json'),
        ],
        { encoding: 'utf8' },
      );
      expect(run.stderr).toBe('');
      expect(run.status).toBe(0);
      const torchParams = new Map(
        Object.entries(JSON.parse(readFileSync(file('params.json'), 'utf8')) as Record<string, number[]>).map(
          ([name, values]) => [name, Float32Array.from(values)] as const,
        ),
      );
      await trainer.step({ x: b.x }, b.labels);
      const { params } = await trainer.read();
      for (const [name, values] of params)
        values.forEach((v, i) => expect(torchParams.get(name)![i]).toBeCloseTo(v, 5));
      const back = await OnnxTrainer.create(withParams(await trainer.exportModel(), torchParams), options());
      await back.importState(new Uint8Array(readFileSync(file('torch.safetensors'))));
      expect(back.stepCount).toBe(3);
      expect(decodeState(await back.exportState()).groups).toEqual(
        decodeState(await trainer.exportState()).groups,
      );
      const next = batches[3]!;
      const [l1, l2] = [
        await trainer.step({ x: next.x }, next.labels),
        await back.step({ x: next.x }, next.labels),
      ];
      expect(l2).toBeCloseTo(l1, 5);
      await back.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
      await trainer.dispose();
    }
  }, 60_000);
});

describe('OnnxTrainer parameter groups, trainable patterns and schedules', () => {
  it('groups by glob and RegExp with their own hyperparameters, in the state file; the rest with hyperparams', async () => {
    const trainer = await OnnxTrainer.create(
      fixedBatchModel(),
      options({
        groups: [
          { params: '*.bias', weightDecay: 0 },
          { params: /^fc1\./, lr: 0.005 },
        ],
      }),
    );
    expect(trainer.groups.map((g) => g.params)).toEqual([
      ['fc1.bias', 'fc2.bias'],
      ['fc1.weight'],
      ['fc2.weight'],
    ]);
    const b = batchOf(4, 3);
    await trainer.step({ x: b.x }, b.labels);
    const state = decodeState(await trainer.exportState());
    expect(state.groups.map((g) => [g.hyperparams.lr, g.hyperparams.weightDecay, g.step])).toEqual([
      [0.05, 0, 1],
      [0.005, 1e-4, 1],
      [0.05, 1e-4, 1],
    ]);
    // Each group's update is core's with its own hyperparameters.
    const initial = new Map(
      trainer.trainStep.params.map((p) => [p.name, Float32Array.from(p.initial)] as const),
    );
    const g = await gradients(fixedBatchModel(), initial, b, 4);
    const { params } = await trainer.read();
    const groups = trainer.groups;
    const arrays = groups.map((grp) => grp.params.map((n) => Float32Array.from(initial.get(n)!)));
    const core = new AccSGD(
      groups.map((grp, k) => ({ params: arrays[k]!, names: grp.params, ...grp.hyperparams })),
      hyperparams,
    );
    core.step(groups.flatMap((grp) => grp.params.map((n) => g.get(n)!)));
    groups.forEach((grp, k) =>
      grp.params.forEach((name, m) => {
        const got = params.get(name)!;
        for (let i = 0; i < got.length; i++) expect(got[i]).toBeCloseTo(arrays[k]![m]![i]!, 6);
      }),
    );
    await trainer.dispose();
  });

  it('trains only what trainable selects (names, globs, RegExps) and refuses a pattern that matches nothing', async () => {
    const trainer = await OnnxTrainer.create(fixedBatchModel(), options({ trainable: [/^fc2\./, 'fc1.b*'] }));
    expect(trainer.paramNames).toEqual(['fc1.bias', 'fc2.weight', 'fc2.bias']);
    await trainer.dispose();
    const e = await OnnxTrainer.create(fixedBatchModel(), options({ trainable: 'conv*' })).catch((x) => x);
    expect(e).toBeInstanceOf(AccSGDConfigError);
    expect((e as Error).message).toMatch(/trainable must be a name or pattern matching a float initializer/);
  });

  it('a learning-rate schedule of the step count decides each step, and the state records the last one', async () => {
    const schedule = (step: number) => 0.1 / (1 + step);
    const scheduled = await OnnxTrainer.create(
      fixedBatchModel(),
      options({ hyperparams: { ...hyperparams, lr: schedule } }),
    );
    const fixed = await OnnxTrainer.create(fixedBatchModel(), options());
    for (let s = 0; s < 3; s++) {
      const b = batchOf(4, 20 + s);
      fixed.setLearningRate(schedule(s));
      const [l1, l2] = [await scheduled.step({ x: b.x }, b.labels), await fixed.step({ x: b.x }, b.labels)];
      expect(l1).toBe(l2);
    }
    expect(decodeState(await scheduled.exportState()).groups[0]!.hyperparams.lr).toBe(schedule(2));
    expect(scheduled.hyperparams.lr).toBe(schedule(2));
    const bad = await OnnxTrainer.create(
      fixedBatchModel(),
      options({ hyperparams: { ...hyperparams, lr: (s) => (s > 0 ? Number.NaN : 0.1) } }),
    );
    const b = batchOf(4, 1);
    await bad.step({ x: b.x }, b.labels);
    await expect(bad.step({ x: b.x }, b.labels)).rejects.toThrow(/schedule gave NaN at step 1/);
    expect(bad.stepCount).toBe(1);
    await Promise.all([scheduled.dispose(), fixed.dispose(), bad.dispose()]);
  });
});

describe('OnnxTrainer options', () => {
  it('refuses unknown keys and bad values with AccSGDConfigError, before any session exists', async () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ bogus: 1 }, /options.bogus must be one of the known options/],
      [{ batchSize: 0 }, /batchSize must be a positive integer/],
      [{ batchSize: 2.5 }, /batchSize must be a positive integer/],
      [
        { groups: [{ params: '*.bias', momentum: 0.9 }] },
        /groups\[0\].momentum must be one of the known options/,
      ],
      [{ groups: [{ params: '*.bias' }, { params: 'fc1.bias' }] }, /holds only parameters of earlier groups/],
      [{ loss: 'binary-cross-entropy' }, /fromLogits must be true \(the output is logits\) or false/],
      [{ fromLogits: true }, /fromLogits must be no fromLogits except with loss 'binary-cross-entropy'/],
      [{ hyperparams: { lr: -1 } }, /lr/],
      [
        { output: 'nothing' },
        /output must be one of the model's outputs \(logits\) or a value a node computes/,
      ],
    ];
    for (const [extra, message] of cases) {
      const e = await OnnxTrainer.create(fixedBatchModel(), {
        ...options(),
        ...extra,
      } as OnnxTrainerOptions).catch((x: unknown) => x);
      expect(e, JSON.stringify(extra)).toBeInstanceOf(AccSGDConfigError);
      expect((e as Error).message).toMatch(message);
    }
  });
});

describe("loss 'binary-cross-entropy'", () => {
  /** x[4, 2] -> MatMul W[2, 3] -> z (logits) -> Sigmoid -> p (the declared output). */
  const sigmoidModel = () =>
    forwardModel({
      inputs: { x: [4, 2] },
      params: { W: [[2, 3], random(6, 9, 2)] },
      nodes: [
        ['MatMul', ['x', 'W'], ['z']],
        ['Sigmoid', ['z'], ['p']],
      ],
      outputs: { p: [4, 3] },
    });
  const x = Float32Array.from(random(8, 4, 2));
  const y = Float32Array.from([1, 0, 1, 0, 0, 1, 1, 1, 0, 0.5, 0, 1]);

  it('from probabilities and from the logits inside the model: the mean of -(y log p + (1 - y) log(1 - p))', async () => {
    const W = random(6, 9, 2);
    let expected = 0;
    for (let r = 0; r < 4; r++)
      for (let c = 0; c < 3; c++) {
        const z = Math.fround(x[r * 2]! * W[c]! + x[r * 2 + 1]! * W[3 + c]!);
        const p = 1 / (1 + Math.exp(-z));
        const t = y[r * 3 + c]!;
        expected -= (t * Math.log(p) + (1 - t) * Math.log(1 - p)) / 12;
      }
    const fromProbs = await OnnxTrainer.create(sigmoidModel(), {
      loss: 'binary-cross-entropy',
      fromLogits: false,
      hyperparams,
      ort,
    });
    const fromLogits = await OnnxTrainer.create(sigmoidModel(), {
      loss: 'binary-cross-entropy',
      fromLogits: true,
      output: 'z',
      hyperparams,
      ort,
    });
    const [a, b] = [await fromProbs.step({ x }, y), await fromLogits.step({ x }, y)];
    expect(a).toBeCloseTo(expected, 5);
    expect(b).toBeCloseTo(expected, 5);
    // The same loss, so the same gradient: the parameters move alike.
    const [pa, pb] = [(await fromProbs.read()).params.get('W')!, (await fromLogits.read()).params.get('W')!];
    for (let i = 0; i < 6; i++) expect(pa[i]).toBeCloseTo(pb[i]!, 5);
    await Promise.all([fromProbs.dispose(), fromLogits.dispose()]);
  });

  it('from logits stays finite where exp(z) overflows float32', async () => {
    const big = forwardModel({
      inputs: { x: [1, 2] },
      params: {
        W: [
          [2, 2],
          [100, -100, 100, -100],
        ],
      },
      nodes: [['MatMul', ['x', 'W'], ['z']]],
      outputs: { z: [1, 2] },
    });
    const trainer = await OnnxTrainer.create(big, {
      loss: 'binary-cross-entropy',
      fromLogits: true,
      hyperparams,
      ort,
    });
    // z = [200, -200]: labels [0, 1] cost softplus(200) - 0 = 200 and softplus(-200) + 200 = 200.
    expect(await trainer.step({ x: Float32Array.from([1, 1]) }, Float32Array.from([0, 1]))).toBeCloseTo(
      200,
      3,
    );
    await trainer.dispose();
  });
});

describe('differentiating only what needs it', () => {
  /** An If node whose branches each compute one node of `[opType, inputs]` into output `out`. */
  function ifNode(
    name: string,
    cond: string,
    out: string,
    then: [string, string[]],
    other: [string, string[]],
  ) {
    const branch = (label: string, [op, inputs]: [string, string[]]) =>
      create(AttributeProtoSchema, {
        name: `${label}_branch`,
        type: AttributeProto_AttributeType.GRAPH,
        g: create(GraphProtoSchema, {
          name: label,
          node: [create(NodeProtoSchema, { opType: op, input: inputs, output: [`${label}_out`] })],
          output: [tensorInfo(`${label}_out`, [2, out === 'verdict' ? 2 : 3])],
        }),
      });
    return create(NodeProtoSchema, {
      name,
      opType: 'If',
      input: [cond],
      output: [out],
      attribute: [branch('then', then), branch('else', other)],
    });
  }

  /**
   * x[2, 3] -> MatMul W -> h (trained to, with 'mse') -> Sigmoid -> s -> ReduceSum -> Greater 0.5
   * -> If (a verifier branch: then s * 2, else s) -> verdict, the only declared output.
   */
  function withIf(): Uint8Array {
    const model = fromBinary(
      ModelProtoSchema,
      forwardModel({
        inputs: { x: [2, 3] },
        params: { W: [[3, 2], random(6, 7)], half: [[], [0.5]], two: [[], [2]] },
        nodes: [
          ['MatMul', ['x', 'W'], ['h']],
          ['Sigmoid', ['h'], ['s']],
          ['ReduceSum', ['s'], ['m'], { keepdims: 0 }],
          ['Greater', ['m', 'half'], ['above']],
        ],
        outputs: { verdict: [2, 2] },
      }),
    );
    model.graph!.node.push(
      ifNode('verifier', 'above', 'verdict', ['Mul', ['s', 'two']], ['Identity', ['s']]),
    );
    return toBinary(ModelProtoSchema, model);
  }

  it('trains to a value inside the model whose declared output follows an If: the If and what leads only to it are left out', async () => {
    const model = withIf();
    // A control: ORT runs the model as it is.
    const session = await ort.InferenceSession.create(model);
    const out = await session.run({ x: new ort.Tensor('float32', new Float32Array(6).fill(1), [2, 3]) });
    expect(out.verdict!.dims).toEqual([2, 2]);
    await session.release();
    const trainer = await OnnxTrainer.create(model, {
      loss: 'mse',
      output: 'h',
      hyperparams,
      ort,
      trainable: 'W',
    });
    expect(trainer.trainStep.labels).toEqual({ name: 'labels', shape: [2, 2] });
    const x = Float32Array.from(random(6, 8));
    const target = new Float32Array(4);
    const first = await trainer.step({ x }, target);
    let last = first;
    for (let s = 0; s < 20; s++) last = await trainer.step({ x }, target);
    expect(last).toBeLessThan(0.5 * first);
    // The exported model is the whole model, If included.
    const exported = fromBinary(ModelProtoSchema, await trainer.exportModel());
    expect(exported.graph!.node.map((n) => n.opType)).toContain('If');
    await trainer.dispose();
  });

  it('refuses, naming the node, an If on the way from a trained parameter to the loss', async () => {
    const e = await OnnxTrainer.create(withIf(), { loss: 'mse', hyperparams, ort }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(AccSGDConfigError);
    expect((e as AccSGDConfigError).field).toBe('graph.node[4] "verifier" (If)');
    expect((e as Error).message).toMatch(/uses op If, which has no backward rule/);
  });

  it('leaves out a custom-domain op past the output, and refuses one that would have to run, naming it', async () => {
    const spec: Omit<ForwardSpec, 'nodes'> = {
      inputs: { x: [2, 3] },
      params: { W: [[3, 2], random(6, 7)] },
      outputs: { post: [2, 2] },
      domain: 'com.example',
    };
    const past = forwardModel({
      ...spec,
      nodes: [
        ['MatMul', ['x', 'W'], ['h']],
        ['Postprocess', ['h'], ['post']],
      ],
    });
    const trainer = await OnnxTrainer.create(past, { loss: 'mse', output: 'h', hyperparams, ort });
    expect(Number.isFinite(await trainer.step({ x: new Float32Array(6).fill(1) }, new Float32Array(4)))).toBe(
      true,
    );
    await trainer.dispose();
    // x -> Preprocess (com.example) -> xs -> MatMul W -> y: no gradient flows into Preprocess, but
    // it must run, and ONNX Runtime has no kernel for it.
    const before = fromBinary(
      ModelProtoSchema,
      forwardModel({
        ...spec,
        domain: undefined,
        outputs: { y: [2, 2] },
        nodes: [
          ['Preprocess', ['x'], ['xs']],
          ['MatMul', ['xs', 'W'], ['y']],
        ],
      }),
    );
    before.graph!.node[0]!.domain = 'com.example';
    before.opsetImport.push(create(OperatorSetIdProtoSchema, { domain: 'com.example', version: 1n }));
    const e = await OnnxTrainer.create(toBinary(ModelProtoSchema, before), {
      loss: 'mse',
      hyperparams,
      ort,
    }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(AccSGDConfigError);
    expect((e as AccSGDConfigError).field).toBe('graph.node[0] "node0_Preprocess" (com.example.Preprocess)');
    expect((e as Error).message).toMatch(/ONNX Runtime cannot run without a custom-op library/);
  });

  it('runs forward only an op without a rule that reads only inputs and frozen values: an If on the input side', async () => {
    // x -> ReduceSum -> Greater 0 -> If (then x * two, else x) -> xs; xs MatMul W -> y.
    const model = fromBinary(
      ModelProtoSchema,
      forwardModel({
        inputs: { x: [2, 3] },
        params: { W: [[3, 2], random(6, 7)], two: [[], [2]], zero: [[], [0]] },
        nodes: [
          ['ReduceSum', ['x'], ['m'], { keepdims: 0 }],
          ['Greater', ['m', 'zero'], ['positive']],
          ['MatMul', ['xs', 'W'], ['y']],
        ],
        outputs: { y: [2, 2] },
      }),
    );
    const nodes = model.graph!.node;
    nodes.splice(2, 0, ifNode('scale', 'positive', 'xs', ['Mul', ['x', 'two']], ['Identity', ['x']]));
    model.graph!.valueInfo.push(tensorInfo('xs', [2, 3]));
    const bytes = toBinary(ModelProtoSchema, model);
    const trainer = await OnnxTrainer.create(bytes, { loss: 'mse', trainable: ['W'], hyperparams, ort });
    // Positive inputs go through the then branch (doubled): the gradient of W is 2x that of x as fed.
    const x = Float32Array.from([1, 2, 3, 4, 5, 6]);
    const labels = new Float32Array(4);
    const W = random(6, 7);
    let expected = 0;
    for (let r = 0; r < 2; r++)
      for (let c = 0; c < 2; c++) {
        let y = 0;
        for (let k = 0; k < 3; k++) y += 2 * x[r * 3 + k]! * Math.fround(W[k * 2 + c]!);
        expected += (y * y) / 4;
      }
    expect(await trainer.step({ x }, labels)).toBeCloseTo(expected, 3);
    await trainer.dispose();
    // Without a shape for its output, the If is refused, naming it.
    model.graph!.valueInfo = [];
    const e = await OnnxTrainer.create(toBinary(ModelProtoSchema, model), {
      loss: 'mse',
      trainable: ['W'],
      hyperparams,
      ort,
    }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(AccSGDConfigError);
    expect((e as Error).message).toMatch(
      /runs forward only \(If: no gradient flows through it\), but its output "xs" has no shape/,
    );
  });
});
