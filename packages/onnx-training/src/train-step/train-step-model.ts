import { AccSGDConfigError, BUFFER_SUFFIX } from '@accsgd/core';
import { TensorProto_DataType } from 'onnx-buf';
import {
  AUTODIFF_OPTION_KEYS,
  type AutodiffOptions,
  assertKnownKeys,
  differentiate,
  encodeDifferentiated,
  HOST_TYPES,
  type HostFeeds,
  type HostInput,
  hostInputs,
} from '../autodiff/gradient.js';
import { tensorValues } from '../autodiff/proto.js';
import { tensorInfo } from '../graphs/onnx-proto.js';
import { updateGraphNames } from '../graphs/update-graph.js';

export type TrainStepOptions = AutodiffOptions;

/** One trainable parameter of a train-step model and the names of its values there. */
export interface TrainStepParam {
  /** The initializer's name in the forward model: the train step's input for the parameter. */
  name: string;
  shape: number[];
  /** Its values in the forward model (float32). */
  initial: Float32Array;
  /** Input: the momentum buffer (`<name>.momentum_buffer`). */
  buffer: string;
  /** Its parameter group: which multipliers update it. */
  group: number;
  /** Outputs: the updated parameter and buffer. */
  newParam: string;
  newBuffer: string;
}

/**
 * A running statistic of a BatchNormalization with training_mode=1 (running_mean or running_var): an
 * input of the train step, not trained, whose next value (momentum * input + (1 - momentum) *
 * batch statistic, as ONNX defines it) is an output.
 */
export interface TrainStepStatistic {
  /** The initializer's name in the forward model: the train step's input for it. */
  name: string;
  shape: number[];
  /** Its values in the forward model (float32). */
  initial: Float32Array;
  /** Output: its value after the step (BatchNormalization's running_mean or running_var output). */
  newValue: string;
}

export interface TrainStepModel {
  /** The ONNX model of one training step (forward, loss, backward, AccSGD update) in float32. */
  model: Uint8Array;
  /** The batch inputs of the forward model, with static shapes. */
  batchInputs: { name: string; shape: number[]; type: 'float32' | 'int64' }[];
  /**
   * Extra inputs computed on the host from the int64 batch inputs (token ids as rows for Gather's
   * gradient, an int64 mask's Unsqueeze and Cast): ORT's WebGPU EP has no int64 Reshape, Unsqueeze
   * or Cast. `hostFeeds(batch)` computes them; OnnxTrainer feeds them.
   */
  hostInputs: HostInput[];
  hostFeeds: HostFeeds;
  /** int64 batch inputs used as Gather indices, and the size they index: valid values are in [-size, size). */
  indexLimits: { input: string; size: number }[];
  /** The labels input ('mse' and 'softmax-cross-entropy'), or undefined for 'scalar'. */
  labels: { name: string; shape: number[] } | undefined;
  params: TrainStepParam[];
  /** The running statistics the step updates, in the forward model's node order. */
  statistics: TrainStepStatistic[];
  /**
   * Per parameter group, its six float32 scalar multiplier inputs [c0..c5]
   * (updateGraphNames.coefficient(group, k)).
   */
  coefficients: string[][];
  /**
   * Per group, the scale inputs [s0..s5] of a model built with `{ scaled: true }` (empty otherwise):
   * each product c_k * x is (c_k * x) * s_k, so that a multiplier subnormal in float32 can be fed as
   * c_k 2^64 with s_k = 2^-64 (scaledMultiplier) where a device would flush it to zero.
   */
  scales: string[][];
  /** The scalar loss output (of the batch, before the update). */
  loss: string;
}

/**
 * One AccSGD training step as a single float32 ONNX model of standard ai.onnx ops: the forward
 * model, the loss, its reverse-mode gradients (see ../autodiff) and, per trainable parameter, the
 * update graph's fused AccSGD nodes in @accsgd/core's float32 operation order:
 *
 *   buf' = (c0 * buf + c1 * p) + c2 * g
 *   p'   = (c3 * p + c4 * g) + c5 * buf'
 *
 * Inputs: the batch, the labels, every trainable parameter (its initializer becomes an input, with
 * the same name), its momentum buffer, each running statistic of a training-mode
 * BatchNormalization (its initializer becomes an input too), and the six multipliers as 0-d
 * float32 tensors named as in the update graph (group0_c0 ... group0_c5). Outputs: the loss, per
 * parameter the new parameter and the new buffer, then each running statistic's next value
 * (BatchNormalization's own running_mean / running_var output). One session.run is one step.
 *
 * The first step uses the same graph: feed buf = p and float32Multipliers(c, true), whose c0 is 0
 * and c1 is bufFromBuf + bufFromParam, so buf' = c1 p + c2 g as core computes it (equal bit for bit
 * for finite parameters, up to the sign of a zero buffer element).
 *
 * Every check (op support, domains, external data, quantized types, static shapes) runs here, before
 * any session exists, and fails with AccSGDConfigError naming the node or tensor.
 *
 * `groups` gives each trainable parameter's group (in the model's order; default all 0): each group
 * has its own six multipliers (group<g>_c0 ... group<g>_c5), so groups differ in hyperparameters.
 */
export function buildTrainStepModel(
  forwardModel: Uint8Array,
  options: TrainStepOptions,
  groups?: readonly number[],
  update: { scaled?: boolean } = {},
): TrainStepModel {
  if (typeof options === 'object' && options !== null) assertKnownKeys(options, AUTODIFF_OPTION_KEYS);
  const d = differentiate(forwardModel, options);
  if (d.forward.floatType !== TensorProto_DataType.FLOAT)
    throw new AccSGDConfigError('model', 'float64', 'a float32 model (the AccSGD update graph is float32)');
  const g = d.g;
  if (groups !== undefined && groups.length !== d.params.length)
    throw new Error(`internal: ${groups.length} group indices for ${d.params.length} parameters`);
  const groupCount = groups && groups.length > 0 ? Math.max(...groups) + 1 : 1;
  const coefficients = Array.from({ length: groupCount }, (_, group) =>
    Array.from({ length: 6 }, (_, k) => updateGraphNames.coefficient(group, k)),
  );
  const scaled = update.scaled === true;
  const scales = Array.from({ length: groupCount }, (_, group) =>
    scaled ? Array.from({ length: 6 }, (_, k) => updateGraphNames.scale(group, k)) : [],
  );
  for (const c of [...coefficients.flat(), ...scales.flat()]) {
    if (g.isTaken(c))
      throw new AccSGDConfigError('model', c, `no value named ${c} (a train-step coefficient input)`);
    g.declare(c, { kind: 'float', shape: [] });
  }
  const params: TrainStepParam[] = d.params.map((p, i) => {
    const group = groups?.[i] ?? 0;
    const c = coefficients[group]!;
    const buffer = g.fresh(`${p.name}${BUFFER_SUFFIX}`);
    g.declare(buffer, { kind: 'float', shape: p.shape });
    const grad = d.grads.get(p.name)!;
    const t = (what: string) => `${p.name}_${what}`;
    // c_k * x, or (c_k * x) * s_k in a scaled model.
    const mul = (k: number, x: string, hint: string) => {
      const product = g.op('Mul', [c[k]!, x], scaled ? `${hint}_unscaled` : hint);
      return scaled ? g.op('Mul', [product, scales[group]![k]!], hint) : product;
    };
    const head = g.op('Add', [mul(0, buffer, t('c0b')), mul(1, p.name, t('c1p'))], t('head'));
    const newBuffer = g.op('Add', [head, mul(2, grad, t('c2g'))], `${buffer}.updated`);
    const pg = g.op('Add', [mul(3, p.name, t('c3p')), mul(4, grad, t('c4g'))], t('pg'));
    const newParam = g.op('Add', [pg, mul(5, newBuffer, t('c5b'))], `${p.name}.updated`);
    return {
      name: p.name,
      shape: p.shape,
      initial: Float32Array.from(tensorValues(p.tensor)!),
      buffer,
      group,
      newParam,
      newBuffer,
    };
  });
  const statistics: TrainStepStatistic[] = d.forward.runningStatistics.map((s) => ({
    name: s.name,
    shape: g.shape(s.name),
    initial: Float32Array.from(tensorValues(d.forward.initializers.get(s.name)!)!),
    newValue: s.output,
  }));
  const host = hostInputs(d);
  const inputs = [
    ...d.forward.inputs.map((i) =>
      tensorInfo(
        i.name,
        i.shape,
        i.type === 'int64' ? TensorProto_DataType.INT64 : TensorProto_DataType.FLOAT,
      ),
    ),
    ...host.inputs.map((h) => tensorInfo(h.name, h.shape, HOST_TYPES[h.type])),
    ...(d.labels ? [tensorInfo(d.labels.name, d.labels.shape)] : []),
    ...params.flatMap((p) => [tensorInfo(p.name, p.shape), tensorInfo(p.buffer, p.shape)]),
    ...statistics.map((s) => tensorInfo(s.name, s.shape)),
    ...coefficients.flat().map((c) => tensorInfo(c, [])),
    ...scales.flat().map((c) => tensorInfo(c, [])),
  ];
  const outputs = [
    tensorInfo(d.loss, []),
    ...params.flatMap((p) => [tensorInfo(p.newParam, p.shape), tensorInfo(p.newBuffer, p.shape)]),
    ...statistics.map((s) => tensorInfo(s.newValue, s.shape)),
  ];
  const model = encodeDifferentiated(
    d,
    `${d.forward.model.graph!.name || 'model'}_accsgd_train_step`,
    inputs,
    outputs,
    'One AccSGD training step (forward, loss, backward, fused update) by @accsgd/onnx-training; multipliers are inputs.',
  );
  return {
    model,
    batchInputs: d.forward.inputs.map((i) => ({
      name: i.name,
      shape: [...i.shape],
      type: i.type === 'int64' ? ('int64' as const) : ('float32' as const),
    })),
    hostInputs: host.inputs,
    hostFeeds: host.feeds,
    // Gather indices that are batch inputs, or computed from them on the host (Identity, Reshape,
    // Add(ids, 0)): OnnxTrainer checks both before a step.
    indexLimits: [...g.indexLimits].flatMap(([input, size]) =>
      d.forward.inputs.some((i) => i.name === input) || host.inputs.some((h) => h.name === input)
        ? [{ input, size }]
        : [],
    ),
    labels: d.labels,
    params,
    statistics,
    coefficients,
    scales,
    loss: d.loss,
  };
}
