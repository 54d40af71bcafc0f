import { AccSGDConfigError } from '@accsgd/core';
import { create, toBinary } from '@bufbuild/protobuf';
import {
  GraphProtoSchema,
  ModelProtoSchema,
  OperatorSetIdProtoSchema,
  type TensorProto,
  TensorProto_DataType,
  type ValueInfoProto,
} from 'onnx-buf';
import { PRODUCER_NAME, tensorInfo } from '../graphs/onnx-proto.js';
import { type ForwardModel, type ForwardModelOptions, nodeReads, readForwardModel } from './forward-model.js';
import { describeNode, type GraphBuilder, size } from './graph.js';
import { BACKWARD_RULES } from './rules.js';

/**
 * The loss the train step minimises:
 * - 'scalar': the model's output is the loss (one element);
 * - 'mse': mean over every element of (output - labels)^2;
 * - 'softmax-cross-entropy': the output is logits with classes on the last axis, labels are float
 *   one-hot (or soft) targets of the same shape: -mean over rows of sum(labels * (z - logsumexp(z))).
 *   Built from ReduceLogSumExp, never LogSoftmax or SoftmaxCrossEntropyLoss (which fall back to
 *   the CPU on WebGPU);
 * - 'binary-cross-entropy': the output is one probability per element (a sigmoid head), or its
 *   logits with `fromLogits: true`; labels are targets in [0, 1] of the same shape:
 *   -mean(y log p + (1 - y) log(1 - p)). From logits it is mean(softplus(z) - y z), with
 *   softplus(z) = relu(z) + log(1 + exp(-|z|)) so that no exp overflows; from probabilities p is
 *   taken as 1e-7 + (1 - 2e-7) p, so that log(0) never occurs (Keras clips at 1e-7).
 */
export type LossKind = 'scalar' | 'mse' | 'softmax-cross-entropy' | 'binary-cross-entropy';
export const LOSS_KINDS: readonly LossKind[] = [
  'scalar',
  'mse',
  'softmax-cross-entropy',
  'binary-cross-entropy',
];

export interface AutodiffOptions extends ForwardModelOptions {
  loss: LossKind;
  /** Name of the labels input that the losses other than 'scalar' add (default 'labels'). */
  labels?: string;
  /**
   * 'binary-cross-entropy' only, and required there: whether the output is logits (a sigmoid
   * follows in the loss, computed stably) or probabilities already (clamped away from 0 and 1).
   */
  fromLogits?: boolean;
}

/** The option keys differentiate reads. */
export const AUTODIFF_OPTION_KEYS: readonly string[] = [
  'loss',
  'labels',
  'fromLogits',
  'output',
  'trainable',
  'dimensions',
  'batchSize',
  'runningVariance',
];

/** AccSGDConfigError for a key outside `allowed` (a misspelt option would otherwise do nothing). */
export function assertKnownKeys(options: object, allowed: readonly string[], field = 'options'): void {
  for (const key of Object.keys(options))
    if (!allowed.includes(key))
      throw new AccSGDConfigError(
        `${field}.${key}`,
        (options as Record<string, unknown>)[key],
        `one of the known options (${allowed.join(', ')})`,
      );
}

export interface Differentiated {
  forward: ForwardModel;
  g: GraphBuilder;
  /** The scalar loss value's name. */
  loss: string;
  labels: { name: string; shape: number[] } | undefined;
  /** The trainable initializers, in the model's order. */
  params: { name: string; shape: number[]; tensor: TensorProto }[];
  /** Graph inputs differentiated as well (buildGradientModel's `inputs`). */
  inputGrads: string[];
  /** Gradient value name per differentiated name (parameter or input). */
  grads: Map<string, string>;
}

/**
 * Forward model + loss + reverse-mode gradients of the loss with respect to the trainable
 * initializers (and `wrtInputs`), in one GraphBuilder. Everything is checked before anything runs.
 */
export function differentiate(
  bytes: Uint8Array,
  options: AutodiffOptions,
  wrtInputs: readonly string[] = [],
): Differentiated {
  if (typeof options !== 'object' || options === null)
    throw new AccSGDConfigError('options', options, '{ loss, trainable?, ... }');
  if (!LOSS_KINDS.includes(options.loss))
    throw new AccSGDConfigError('loss', options.loss, `one of ${LOSS_KINDS.join(', ')}`);
  if (options.loss === 'binary-cross-entropy' && typeof options.fromLogits !== 'boolean')
    throw new AccSGDConfigError(
      'fromLogits',
      options.fromLogits,
      "true (the output is logits) or false (probabilities), required with loss 'binary-cross-entropy'",
    );
  if (options.loss !== 'binary-cross-entropy' && options.fromLogits !== undefined)
    throw new AccSGDConfigError(
      'fromLogits',
      options.fromLogits,
      "no fromLogits except with loss 'binary-cross-entropy'",
    );
  const forward = readForwardModel(bytes, options);
  const g = forward.graph;

  const trainable = forward.trainable.map((name) => forward.initializers.get(name)!);
  if (trainable.length + wrtInputs.length === 0)
    throw new AccSGDConfigError('trainable', options.trainable, 'at least one float initializer');
  for (const name of wrtInputs)
    if (!forward.inputs.some((i) => i.name === name && i.type === 'float'))
      throw new AccSGDConfigError('inputs', name, 'the name of a float graph input');

  const output = forward.output;
  const outShape = g.shape(output);
  // An int64 or bool output has no gradient; ORT would fail untyped on the generated graph.
  const outKind = g.values.get(output)?.kind;
  if (outKind !== 'float')
    throw new AccSGDConfigError(
      'output',
      output,
      "a value of the model's float type to take the loss of",
      `"${output}" is ${outKind}; the loss (and its gradient) needs a float output`,
    );

  let labels: Differentiated['labels'];
  let lossValue: string;
  if (options.loss === 'scalar') {
    if (size(outShape) !== 1)
      throw new AccSGDConfigError(
        'loss',
        'scalar',
        'an output of one element',
        `is 'scalar' but output "${output}" has shape [${outShape}]; use 'mse' or 'softmax-cross-entropy'`,
      );
    lossValue = g.reshape(output, [], 'loss_value');
  } else {
    const name = options.labels ?? 'labels';
    if (g.isTaken(name)) throw new AccSGDConfigError('labels', name, 'a name the model does not use');
    g.declare(name, { kind: 'float', shape: [...outShape] });
    labels = { name, shape: [...outShape] };
    const all = outShape.map((_, i) => i);
    if (options.loss === 'mse') {
      const diff = g.op('Sub', [output, name], 'mse_diff');
      lossValue = g.reduce('ReduceMean', g.op('Mul', [diff, diff], 'mse_square'), all, false, 'mse');
    } else if (options.loss === 'binary-cross-entropy') {
      lossValue = g.reduce(
        'ReduceMean',
        options.fromLogits ? bceFromLogits(g, output, name) : bceFromProbabilities(g, output, name),
        all,
        false,
        'binary_cross_entropy',
      );
    } else {
      if (outShape.length === 0)
        throw new AccSGDConfigError('loss', options.loss, 'logits with a class axis (rank >= 1)');
      const last = outShape.length - 1;
      const lse = g.reduce('ReduceLogSumExp', output, [last], true, 'logsumexp');
      const logProbs = g.op('Sub', [output, lse], 'log_probs');
      const picked = g.reduce(
        'ReduceSum',
        g.op('Mul', [name, logProbs], 'labelled_log_probs'),
        [last],
        false,
        'row_log_likelihood',
      );
      const mean =
        last === 0
          ? picked
          : g.reduce('ReduceMean', picked, all.slice(0, last), false, 'mean_log_likelihood');
      lossValue = g.op('Neg', [mean], 'cross_entropy');
    }
  }
  const loss = g.op('Identity', [lossValue], 'loss');

  // Which values depend on something differentiated (float inputs only: shapes and axes do not).
  const wrt = [...trainable.map((t) => t.name), ...wrtInputs];
  const needs = new Set<string>(wrt);
  const forwardNodes = [...g.nodes];
  for (const node of forwardNodes) {
    if (node.input.some((i) => needs.has(i) && g.values.get(i)?.kind === 'float'))
      for (const o of node.output) if (g.values.get(o)?.kind === 'float') needs.add(o);
  }
  const pending = new Map<string, string[]>();
  pending.set(loss, [g.floatConstant([1])]);
  const total = (name: string): string => {
    const parts = pending.get(name)!;
    let sum = parts[0]!;
    for (let k = 1; k < parts.length; k++) sum = g.op('Add', [sum, parts[k]!], `${name}_grad_sum`);
    pending.set(name, [sum]);
    return sum;
  };
  for (let n = forwardNodes.length - 1; n >= 0; n--) {
    const node = forwardNodes[n]!;
    const out = node.output[0]!;
    const later = node.output.slice(1).find((o) => o !== '' && pending.has(o));
    if (later)
      throw new AccSGDConfigError(
        describeNode(node, n < forward.model.graph!.node.length ? n : undefined),
        later,
        `a loss that depends only on the first output of ${node.opType}`,
        `has its output "${later}" used on the way to the loss; only the first output can be differentiated`,
      );
    if (!pending.has(out)) continue;
    const needed = (k: number) => {
      const name = node.input[k];
      return name !== undefined && name !== '' && needs.has(name) && g.values.get(name)?.kind === 'float';
    };
    if (!node.input.some((_, k) => needed(k))) continue;
    const rule = BACKWARD_RULES[node.opType];
    const index = n < forward.model.graph!.node.length ? n : undefined;
    if (!rule)
      throw new AccSGDConfigError(
        describeNode(node, index),
        node.opType,
        'an op with a backward rule',
        'has no backward rule',
      );
    const dy = total(out);
    const inputGrads = rule({ node, index, g, dy, needs: needed });
    node.input.forEach((name, k) => {
      const grad = inputGrads[k];
      if (!needed(k) || grad === undefined) return;
      const list = pending.get(name) ?? [];
      list.push(grad);
      pending.set(name, list);
    });
  }
  const grads = new Map<string, string>();
  for (const name of wrt) {
    // A parameter the loss does not depend on has a zero gradient.
    grads.set(
      name,
      pending.has(name)
        ? total(name)
        : g.floatConstant(new Array(size(g.shape(name))).fill(0), g.shape(name)),
    );
  }
  const params = trainable.map((t) => ({ name: t.name, shape: g.shape(t.name), tensor: t }));
  return { forward, g, loss, labels, params, inputGrads: [...wrtInputs], grads };
}

/** softplus(z) - y z per element, softplus(z) = relu(z) + log(1 + exp(z - 2 relu(z))) (z - 2 relu(z) = -|z|). */
function bceFromLogits(g: GraphBuilder, z: string, y: string): string {
  const relu = g.op('Relu', [z], 'bce_relu');
  const negAbs = g.op('Sub', [z, g.op('Add', [relu, relu], 'bce_two_relu')], 'bce_neg_abs');
  const log1p = g.op(
    'Log',
    [g.op('Add', [g.floatConstant([1]), g.op('Exp', [negAbs], 'bce_exp')], 'bce_one_plus')],
    'bce_log1p',
  );
  const softplus = g.op('Add', [relu, log1p], 'bce_softplus');
  return g.op('Sub', [softplus, g.op('Mul', [y, z], 'bce_yz')], 'bce_terms');
}

/** -(y log p + (1 - y) log(1 - p)) per element, p kept in [1e-7, 1 - 1e-7]. */
function bceFromProbabilities(g: GraphBuilder, probs: string, y: string): string {
  const eps = 1e-7;
  const p = g.op(
    'Add',
    [g.op('Mul', [probs, g.floatConstant([1 - 2 * eps])], 'bce_scaled'), g.floatConstant([eps])],
    'bce_p',
  );
  const one = g.floatConstant([1]);
  const logP = g.op('Log', [p], 'bce_log_p');
  const logQ = g.op('Log', [g.op('Sub', [one, p], 'bce_q')], 'bce_log_q');
  const terms = g.op(
    'Add',
    [
      g.op('Mul', [y, logP], 'bce_y_log_p'),
      g.op('Mul', [g.op('Sub', [one, y], 'bce_one_minus_y'), logQ], 'bce_rest'),
    ],
    'bce_likelihood',
  );
  return g.op('Neg', [terms], 'bce_terms');
}

/** Serialises a differentiated graph (forward + loss + backward + whatever was appended) as a model. */
export function encodeDifferentiated(
  d: Differentiated,
  name: string,
  inputs: readonly ValueInfoProto[],
  outputs: readonly ValueInfoProto[],
  docString: string,
): Uint8Array {
  // Trained parameters and running statistics are fed: an initializer of the same name would be a
  // second definition of the input.
  const trained = new Set([...d.params.map((p) => p.name), ...inputs.map((i) => i.name)]);
  // nodeReads: an If's branches read outer values that are not its inputs.
  const read = new Set([...d.g.nodes.flatMap(nodeReads), ...outputs.map((o) => o.name)]);
  // A Constant whose value was folded where it is used (a Reshape shape batchSize rewrote) is left out.
  const nodes = d.g.nodes.filter((n) => n.opType !== 'Constant' || n.output.some((o) => read.has(o)));
  const graph = create(GraphProtoSchema, {
    name,
    node: nodes,
    input: [...inputs],
    output: [...outputs],
    // Constants only host steps read (an int64 mask's Unsqueeze axes) are left out.
    initializer: [
      ...[...d.forward.initializers.values()].filter((t) => !trained.has(t.name)),
      ...d.g.initializers,
    ].filter((t) => read.has(t.name)),
    docString,
  });
  const model = create(ModelProtoSchema, {
    // Opset 16 (GENERATED_MIN_OPSET) needs IR 8.
    irVersion: d.forward.model.irVersion < 8n ? 8n : d.forward.model.irVersion,
    producerName: PRODUCER_NAME,
    opsetImport: [
      create(OperatorSetIdProtoSchema, { domain: '', version: BigInt(d.forward.opset) }),
      ...d.forward.otherOpsets.map((o) => create(OperatorSetIdProtoSchema, o)),
    ],
    graph,
  });
  return toBinary(ModelProtoSchema, model);
}

/** The name of the gradient output for a parameter or input in buildGradientModel's model. */
export const gradientOutputName = (name: string) => `${name}.grad`;

/**
 * An input of a generated model computed on the host from the int64 batch inputs (an int64 mask's
 * Unsqueeze and Cast, token ids as rows for Gather's gradient): see GraphBuilder.addNode.
 */
export interface HostInput {
  name: string;
  shape: number[];
  type: 'int64' | 'float32' | 'float64' | 'bool';
}

export const HOST_TYPES: Record<HostInput['type'], TensorProto_DataType> = {
  int64: TensorProto_DataType.INT64,
  float32: TensorProto_DataType.FLOAT,
  float64: TensorProto_DataType.DOUBLE,
  bool: TensorProto_DataType.BOOL,
};

/** The typed arrays of the host inputs for one batch (int64 batch inputs as BigInt64Array). */
export type HostFeeds = (
  batch: Readonly<Record<string, unknown>>,
) => Record<string, BigInt64Array | Float32Array | Float64Array | Uint8Array>;

/** The host inputs a differentiated graph reads, and how to compute them per batch. */
export function hostInputs(d: Differentiated): { inputs: HostInput[]; feeds: HostFeeds } {
  const g = d.g;
  const int64 = d.forward.inputs.filter((i) => i.type === 'int64').map((i) => i.name);
  const steps = g.hostInputs(new Set(int64));
  const float = g.floatType === TensorProto_DataType.DOUBLE ? 'float64' : 'float32';
  const inputs = steps.map((h) => ({
    name: h.output,
    shape: [...h.shape],
    type: h.kind === 'float' ? float : h.kind,
  })) satisfies HostInput[];
  const feeds: HostFeeds = (batch) => {
    if (steps.length === 0) return {};
    const values = g.evaluateHost(
      new Map(int64.map((name) => [name, Array.from(batch[name] as BigInt64Array, Number)])),
    );
    return Object.fromEntries(
      inputs.map((input) => {
        const v = values.get(input.name)!;
        if (input.type === 'int64') return [input.name, BigInt64Array.from(v, BigInt)];
        if (input.type === 'bool') return [input.name, Uint8Array.from(v)];
        return [input.name, input.type === 'float64' ? Float64Array.from(v) : Float32Array.from(v)];
      }),
    );
  };
  return { inputs, feeds };
}

export interface GradientModel {
  model: Uint8Array;
  /** Extra inputs computed on the host from the int64 batch inputs; `hostFeeds(batch)` gives their arrays. */
  hostInputs: HostInput[];
  hostFeeds: HostFeeds;
  /** Inputs to feed: the batch inputs, the labels (if any), then the parameters (initial values in the forward model). */
  inputs: { name: string; shape: number[]; type: 'float32' | 'float64' | 'int64' }[];
  params: { name: string; shape: number[] }[];
  labels: { name: string; shape: number[] } | undefined;
  /** Output names: 'loss', then one gradient per parameter (and per differentiated input). */
  loss: string;
  gradients: Map<string, string>;
}

/**
 * A model computing the loss and its gradients, without an update: inputs are the batch, labels and
 * the trainable parameters (the initializers become inputs); outputs the loss and `<name>.grad` per
 * parameter, and per graph input named in `inputs`. float32 or float64 (a float64 model is how the
 * tests check every backward rule against finite differences).
 */
export function buildGradientModel(
  bytes: Uint8Array,
  options: AutodiffOptions & { inputs?: readonly string[] },
): GradientModel {
  if (typeof options === 'object' && options !== null)
    assertKnownKeys(options, [...AUTODIFF_OPTION_KEYS, 'inputs']);
  const d = differentiate(bytes, options, options.inputs ?? []);
  const host = hostInputs(d);
  const type = d.forward.floatType as TensorProto_DataType;
  const float = type === TensorProto_DataType.DOUBLE ? ('float64' as const) : ('float32' as const);
  const feeds = [
    ...d.forward.inputs.map((i) => ({ ...i, type: i.type === 'int64' ? ('int64' as const) : float })),
    ...(d.labels ? [{ ...d.labels, type: float }] : []),
    ...d.params.map((p) => ({ name: p.name, shape: p.shape, type: float })),
  ];
  const gradients = new Map<string, string>();
  const outputs = [tensorInfo(d.loss, [], type)];
  for (const [name, value] of d.grads) {
    const out = gradientOutputName(name);
    if (d.g.isTaken(out))
      throw new AccSGDConfigError('model', out, 'no value named like a gradient output (<name>.grad)');
    d.g.op('Identity', [value], out);
    gradients.set(name, out);
    outputs.push(tensorInfo(out, d.g.shape(name), type));
  }
  const model = encodeDifferentiated(
    d,
    `${d.forward.model.graph!.name || 'model'}_gradients`,
    [
      ...feeds.map((f) =>
        tensorInfo(f.name, f.shape, f.type === 'int64' ? TensorProto_DataType.INT64 : type),
      ),
      ...host.inputs.map((h) => tensorInfo(h.name, h.shape, HOST_TYPES[h.type])),
    ],
    outputs,
    `Loss (${d.labels ? 'with labels' : 'model output'}) and its gradients, by @accsgd/onnx-training's autodiff.`,
  );
  return {
    model,
    hostInputs: host.inputs,
    hostFeeds: host.feeds,
    inputs: feeds,
    params: d.params.map((p) => ({ name: p.name, shape: p.shape })),
    labels: d.labels,
    loss: d.loss,
    gradients,
  };
}
