import { AccSGDConfigError } from '@accsgd/core';
import { create, fromBinary } from '@bufbuild/protobuf';
import {
  type ModelProto,
  ModelProtoSchema,
  type NodeProto,
  NodeProtoSchema,
  type TensorProto,
  TensorProto_DataLocation,
  TensorProto_DataType,
  type ValueInfoProto,
} from 'onnx-buf';
import { describeNode, GraphBuilder } from './graph.js';
import { DATA_TYPE_NAMES, type FloatType, intAttribute, tensorValues } from './proto.js';
import { DIFFERENTIABLE_OPS } from './rules.js';
import { checkModelStructure } from './validation.js';

/** Opsets of the default (ai.onnx) domain whose semantics the rules follow (Softmax, Reduce*, Reshape, Gelu). */
export const MIN_OPSET = 13;
export const MAX_OPSET = 20;

/**
 * The opset the generated graphs declare at least: Gather's gradient needs ScatterND's reduction
 * (opset 16). Every op the autodiff accepts means the same at 13 to 16 (those opsets only added
 * types), so raising a 13-15 model to 16 changes nothing it computes.
 */
export const GENERATED_MIN_OPSET = 16;

/**
 * Ops a forward model may use without a gradient flowing through them: leaves (constants), shape
 * computations (folded to constants at build time, so shapes stay static) and masks.
 */
export const NON_DIFFERENTIABLE_OPS: readonly string[] = [
  'And',
  'Constant',
  'ConstantOfShape',
  'Equal',
  'Greater',
  'GreaterOrEqual',
  'Less',
  'LessOrEqual',
  'Not',
  'Or',
  'Shape',
];

/** Domains whose ops ONNX Runtime runs without a custom-op library (a forward-only node may use them). */
const ORT_DOMAINS: readonly string[] = ['', 'ai.onnx', 'ai.onnx.ml', 'com.microsoft'];

/** Ops written into the train step as another op: Dropout in inference mode is an Identity. */
export const REWRITTEN_OPS: readonly string[] = ['Dropout'];

/** Ops a forward model may use. */
export const FORWARD_OPS: readonly string[] = [
  ...new Set([...DIFFERENTIABLE_OPS, ...NON_DIFFERENTIABLE_OPS, ...REWRITTEN_OPS]),
].sort();

const QUANTIZED = new Set<number>([
  TensorProto_DataType.INT8,
  TensorProto_DataType.UINT8,
  TensorProto_DataType.INT4,
  TensorProto_DataType.UINT4,
  TensorProto_DataType.FLOAT8E4M3FN,
  TensorProto_DataType.FLOAT8E4M3FNUZ,
  TensorProto_DataType.FLOAT8E5M2,
  TensorProto_DataType.FLOAT8E5M2FNUZ,
  ...(['FLOAT4E2M1', 'FLOAT8E8M0', 'INT2', 'UINT2'] as const)
    .map((k) => (TensorProto_DataType as unknown as Record<string, number | undefined>)[k])
    .filter((v): v is number => v !== undefined),
]);

export interface ForwardModelOptions {
  /**
   * Sizes for symbolic dimensions (dim_param) of the model's inputs, e.g. { batch: 32 }: the
   * train step is built for static shapes.
   */
  dimensions?: Readonly<Record<string, number>>;
  /**
   * The value the loss is taken of: a declared output or any value a node computes (the logits
   * inside a model whose declared output is a sigmoid or a post-processing step). Default: the
   * model's only output. Nodes it does not depend on are left out of the train step.
   */
  output?: string;
  /**
   * The leading dimension of every batch input (and so of the labels), whether the export named it
   * (dim_param) or fixed it (torch.onnx.export without dynamic_axes writes 1). A Reshape whose
   * constant shape hard-codes the exported batch size is rewritten to the new one.
   */
  batchSize?: number;
  /**
   * Initializers to train: names, RegExps or globs (`*` any run of characters, `?` one), or one of
   * them alone. Default: every float initializer. Every entry must match at least one. The running
   * mean and variance of a BatchNormalization with training_mode=1 are never trained (buffers, as
   * in PyTorch): a pattern skips them, and naming one exactly is refused.
   */
  trainable?: string | RegExp | readonly (string | RegExp)[];
  /**
   * The batch variance a BatchNormalization with training_mode=1 moves running_var towards:
   * 'population' (default; ONNX's definition, sum((x - mean)^2) / n) or 'unbiased' (PyTorch's
   * BatchNorm: times n / (n - 1), n values per channel), so that statistics fine-tuned here match
   * those PyTorch would have kept. The normalisation itself uses the population variance either way.
   */
  runningVariance?: 'population' | 'unbiased';
}

/** A name pattern: a RegExp, or a string that is an exact name or a glob with `*` and `?`. */
export function namePattern(pattern: string | RegExp): (name: string) => boolean {
  if (pattern instanceof RegExp) {
    // A global or sticky RegExp keeps lastIndex between test() calls: match with a copy without them.
    const re = new RegExp(pattern.source, pattern.flags.replace(/[gy]/g, ''));
    return (name) => re.test(name);
  }
  if (!/[*?]/.test(pattern)) return (name) => name === pattern;
  const re = new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
  );
  return (name) => re.test(name);
}

/**
 * The names `spec` selects among `names` (in their order); AccSGDConfigError naming `field` for a
 * spec that is not a name, RegExp or glob (or an array of them), or an entry that matches nothing.
 */
export function selectNames(names: readonly string[], spec: unknown, field: string, what: string): string[] {
  const entries = Array.isArray(spec) ? (spec as unknown[]) : [spec];
  const matchers = entries.map((entry) => {
    if (!(typeof entry === 'string' || entry instanceof RegExp) || entry === '')
      throw new AccSGDConfigError(field, entry, `a ${what} name, a RegExp or a glob such as "*.bias"`);
    const match = namePattern(entry);
    if (!names.some(match))
      throw new AccSGDConfigError(field, entry, `a name or pattern matching a ${what} (${names.join(', ')})`);
    return match;
  });
  return names.filter((n) => matchers.some((m) => m(n)));
}

/** A validated forward model: its decoded proto (a private copy), inputs, outputs and every value's shape. */
export interface ForwardModel {
  model: ModelProto;
  floatType: FloatType;
  /** The opset of the generated graphs: the model's, at least GENERATED_MIN_OPSET. */
  opset: number;
  graph: GraphBuilder;
  /** Graph inputs that are not initializers (the batch), with their static shapes. */
  inputs: { name: string; shape: number[]; type: 'float' | 'int64' }[];
  /** The model's declared outputs. */
  outputs: string[];
  /** The value the loss is taken of (options.output, or the only declared output). */
  output: string;
  initializers: Map<string, TensorProto>;
  /** The trainable initializers' names, in the model's order. */
  trainable: string[];
  /**
   * The running statistics that a train step updates: per float initializer read as input_mean or
   * input_var by a computed BatchNormalization with training_mode=1 whose running_mean or
   * running_var output is named, that output (momentum * input + (1 - momentum) * batch statistic).
   */
  runningStatistics: RunningStatistic[];
  /** Opset imports of other domains that forward-only nodes use (copied into generated models). */
  otherOpsets: { domain: string; version: bigint }[];
}

/** A BatchNormalization running statistic (an initializer) and the output that holds its next value. */
export interface RunningStatistic {
  /** The initializer (input_mean or input_var). */
  name: string;
  /** BatchNormalization's running_mean or running_var output. */
  output: string;
}

/**
 * The float initializers that BatchNormalization nodes with training_mode=1 read as input_mean or
 * input_var (wherever the node is: a buffer is a buffer even past the output), and, for the nodes
 * the train step computes, the output that updates each. AccSGDConfigError if two nodes would
 * write one initializer: which update wins would be arbitrary.
 */
function runningStatistics(
  nodes: readonly NodeProto[],
  kept: ReadonlySet<number>,
  isFloatInitializer: (name: string) => boolean,
): { buffers: Set<string>; updated: RunningStatistic[] } {
  const buffers = new Set<string>();
  const writer = new Map<string, number>();
  const updated: RunningStatistic[] = [];
  nodes.forEach((node, i) => {
    if (node.opType !== 'BatchNormalization' || (node.domain !== '' && node.domain !== 'ai.onnx')) return;
    if (intAttribute(node, 'training_mode', 0) !== 1) return;
    for (const k of [3, 4]) {
      const name = node.input[k];
      if (!name || !isFloatInitializer(name)) continue;
      buffers.add(name);
      const output = node.output[k - 2];
      if (!kept.has(i) || !output) continue;
      const earlier = writer.get(name);
      if (earlier !== undefined)
        throw new AccSGDConfigError(
          describeNode(node, i),
          name,
          'running statistics that one BatchNormalization node updates',
          `updates running statistic "${name}", which ${describeNode(nodes[earlier]!, earlier)} updates too; give each node its own running mean and variance`,
        );
      writer.set(name, i);
      updated.push({ name, output });
    }
  });
  return { buffers, updated };
}

const typeName = (t: number) => DATA_TYPE_NAMES[t] ?? `data type ${t}`;

function dataTypeProblem(type: number): string | undefined {
  if (
    type === TensorProto_DataType.FLOAT ||
    type === TensorProto_DataType.DOUBLE ||
    type === TensorProto_DataType.INT64 ||
    type === TensorProto_DataType.BOOL
  )
    return undefined;
  if (QUANTIZED.has(type)) return `is quantized (${typeName(type)}); quantized models cannot be trained`;
  if (type === TensorProto_DataType.FLOAT16 || type === TensorProto_DataType.BFLOAT16)
    return `is ${typeName(type)}; only float32 (and float64) models are supported`;
  return `is ${typeName(type)}, which the autodiff does not support`;
}

/**
 * Decodes and checks a forward model, before any session exists: AccSGDConfigError for external
 * data, quantized or half-precision tensors, an op outside the default domain (com.microsoft, ...),
 * an op without a backward rule (naming the op and the node), an unsupported opset, or a dynamic
 * shape. Every value's static shape is inferred here.
 */
export function readForwardModel(bytes: Uint8Array, options: ForwardModelOptions = {}): ForwardModel {
  if (!(bytes instanceof Uint8Array))
    throw new AccSGDConfigError('model', bytes, 'the bytes of an ONNX model (Uint8Array)');
  let model: ModelProto;
  try {
    // fromBinary's bytes fields are zero-copy views of its input: decode a private copy, so that
    // the caller may reuse its buffer and nothing here aliases it.
    model = fromBinary(ModelProtoSchema, bytes.slice());
  } catch (error) {
    throw new AccSGDConfigError(
      'model',
      `${bytes.length} bytes`,
      'the bytes of an ONNX model',
      `is not an ONNX ModelProto (${(error as Error).message})`,
    );
  }
  const g = model.graph;
  if (!g) throw new AccSGDConfigError('model.graph', undefined, 'an ONNX model with a graph');
  const opsetEntry = model.opsetImport.find((o) => o.domain === '' || o.domain === 'ai.onnx');
  const opset = Number(opsetEntry?.version ?? 0);
  if (opset < MIN_OPSET || opset > MAX_OPSET)
    throw new AccSGDConfigError(
      'model.opset_import',
      opset,
      `an ai.onnx opset from ${MIN_OPSET} to ${MAX_OPSET}`,
    );
  // IR version, names defined once, every tensor (external data anywhere, sizes, data length) and
  // each node against its op's schema at this opset: the node at fault is named, not the next one.
  checkModelStructure(model, opset);

  const output = options.output ?? (g.output.length === 1 ? g.output[0]!.name : undefined);
  const produced = new Set([
    ...g.node.flatMap((n) => n.output),
    ...g.input.map((v) => v.name),
    ...g.initializer.map((t) => t.name),
  ]);
  if (typeof output !== 'string' || output === '' || !produced.has(output))
    throw new AccSGDConfigError(
      'output',
      options.output,
      `one of the model's outputs (${g.output.map((o) => o.name).join(', ')}) or a value a node computes`,
    );
  // Only what the chosen output depends on is computed: a post-processing step past it (an If, a
  // NonMaxSuppression, a custom op) is left out whatever its op.
  const live = new Set([output]);
  const kept = new Set<number>();
  for (let i = g.node.length - 1; i >= 0; i--) {
    const node = g.node[i]!;
    if (!node.output.some((o) => live.has(o))) continue;
    kept.add(i);
    for (const name of nodeReads(node)) live.add(name);
  }
  // Ops first: an unsupported or custom op is the most useful thing to report. Such a node is
  // refused only if a gradient must flow through it (checked once the trainable set is known);
  // otherwise it runs forward only.
  const opaque = new Set<number>();
  const opaqueProblem = (node: NodeProto, i: number): AccSGDConfigError => {
    const domain = node.domain;
    if (domain !== '' && domain !== 'ai.onnx')
      return new AccSGDConfigError(
        describeNode(node, i),
        `${domain}.${node.opType}`,
        `an ai.onnx op (${FORWARD_OPS.join(', ')})`,
        `uses op ${node.opType} of domain "${domain}"; only standard ai.onnx ops can be differentiated`,
      );
    if (!FORWARD_OPS.includes(node.opType))
      return new AccSGDConfigError(
        describeNode(node, i),
        node.opType,
        `an op with a backward rule (${FORWARD_OPS.join(', ')})`,
        `uses op ${node.opType}, which has no backward rule; supported: ${FORWARD_OPS.join(', ')}`,
      );
    const a = node.attribute.find((x) => x.g || x.graphs.length > 0)!;
    return new AccSGDConfigError(
      describeNode(node, i),
      a.name,
      'a node without subgraphs on the way from a trained parameter to the loss',
    );
  };
  g.node.forEach((node, i) => {
    if (!kept.has(i)) return;
    const domain = node.domain;
    if (
      (domain !== '' && domain !== 'ai.onnx') ||
      !FORWARD_OPS.includes(node.opType) ||
      node.attribute.some((a) => a.g || a.graphs.length > 0)
    )
      opaque.add(i);
  });
  if (g.sparseInitializer.length > 0)
    throw new AccSGDConfigError(
      'model.graph.sparse_initializer',
      g.sparseInitializer[0]!.values?.name,
      'no sparse initializers',
    );

  const initializers = new Map<string, TensorProto>();
  let floatType: FloatType | undefined;
  const noteFloat = (type: number, where: string) => {
    if (type !== TensorProto_DataType.FLOAT && type !== TensorProto_DataType.DOUBLE) return;
    if (floatType === undefined) floatType = type;
    else if (floatType !== type)
      throw new AccSGDConfigError(where, typeName(type), `${typeName(floatType)}, as the rest of the model`);
  };
  for (const t of g.initializer) {
    const where = `initializer "${t.name}"`;
    if (t.dataLocation === TensorProto_DataLocation.EXTERNAL || t.externalData.length > 0)
      throw new AccSGDConfigError(
        where,
        'external data',
        'a tensor stored inside the model',
        'uses external data; save the model with its tensors inside it',
      );
    const problem = dataTypeProblem(t.dataType);
    if (problem)
      throw new AccSGDConfigError(
        where,
        typeName(t.dataType),
        'a float32, float64, int64 or bool tensor',
        problem,
      );
    const expected = t.dims.reduce((a, d) => a * Number(d), 1);
    const values = tensorValues(t);
    if (values === undefined || values.length !== expected)
      throw new AccSGDConfigError(where, values?.length, `${expected} values for dims [${t.dims.join(',')}]`);
    noteFloat(t.dataType, where);
    initializers.set(t.name, t);
  }
  const dimensions = options.dimensions ?? {};
  if (typeof dimensions !== 'object' || dimensions === null)
    throw new AccSGDConfigError('dimensions', dimensions, 'an object of sizes, e.g. { batch: 32 }');
  const symbolic = new Set(
    g.input.flatMap((v) =>
      v.type?.value.case === 'tensorType'
        ? (v.type.value.value.shape?.dim ?? []).flatMap((d) =>
            d.value.case === 'dimParam' ? [d.value.value] : [],
          )
        : [],
    ),
  );
  for (const key of Object.keys(dimensions))
    if (!symbolic.has(key))
      throw new AccSGDConfigError(
        `dimensions.${key}`,
        dimensions[key],
        `a symbolic dimension of the model's inputs (${[...symbolic].join(', ') || 'it has none'})`,
      );
  const batchSize = options.batchSize;
  if (batchSize !== undefined && (!Number.isSafeInteger(batchSize) || batchSize < 1))
    throw new AccSGDConfigError('batchSize', batchSize, 'a positive integer');
  // The batch size the export fixed (torch.onnx.export without dynamic_axes writes 1), if it did.
  let exportedBatch: number | undefined;
  const sizes = { ...dimensions };
  const batchInputs = g.input.filter((v) => !initializers.has(v.name) && live.has(v.name));
  if (batchSize !== undefined)
    for (const v of batchInputs) {
      const lead = v.type?.value.case === 'tensorType' ? v.type.value.value.shape?.dim[0] : undefined;
      if (!lead)
        throw new AccSGDConfigError(
          `input "${v.name}"`,
          'no leading axis',
          'a batch input with a leading (batch) axis',
          'has no leading axis for batchSize to set',
        );
      if (lead.value.case === 'dimValue') exportedBatch ??= Number(lead.value.value);
      else if (lead.value.case === 'dimParam') {
        const given = dimensions[lead.value.value];
        if (given !== undefined && given !== batchSize)
          throw new AccSGDConfigError(
            `dimensions.${lead.value.value}`,
            given,
            `batchSize (${batchSize}), the batch dimension it names`,
          );
        sizes[lead.value.value] = batchSize;
      }
    }
  const inputs: ForwardModel['inputs'] = [];
  for (const v of batchInputs) {
    const { type, shape } = staticShape(v, 'input', sizes);
    if (batchSize !== undefined) shape[0] = batchSize;
    const problem =
      type === TensorProto_DataType.BOOL ? 'is BOOL; feed masks as int64' : dataTypeProblem(type);
    if (problem)
      throw new AccSGDConfigError(`input "${v.name}"`, typeName(type), 'a float or int64 tensor', problem);
    noteFloat(type, `input "${v.name}"`);
    inputs.push({ name: v.name, shape, type: type === TensorProto_DataType.INT64 ? 'int64' : 'float' });
  }
  for (const v of [...g.output, ...g.valueInfo]) {
    if (!live.has(v.name)) continue;
    const t = v.type?.value.case === 'tensorType' ? v.type.value.value.elemType : undefined;
    if (t !== undefined && t !== 0) {
      const problem = dataTypeProblem(t);
      if (problem)
        throw new AccSGDConfigError(
          `value "${v.name}"`,
          typeName(t),
          'a float32, float64 or int64 tensor',
          problem,
        );
    }
  }
  if (floatType === undefined)
    throw new AccSGDConfigError('model', 'no float tensors', 'a model with float32 inputs or initializers');

  const floatNames = [...initializers.values()].filter((t) => t.dataType === floatType).map((t) => t.name);
  const statistics = runningStatistics(g.node, kept, (n) => initializers.get(n)?.dataType === floatType);
  // PyTorch keeps running statistics as buffers, never parameters: their gradient is zero in
  // training mode, and weight decay would only shrink them.
  const candidates = floatNames.filter((n) => !statistics.buffers.has(n));
  for (const entry of Array.isArray(options.trainable) ? options.trainable : [options.trainable]) {
    if (!(typeof entry === 'string' || entry instanceof RegExp) || entry === '') continue;
    const match = namePattern(entry);
    // A pattern (or an exact name) that selects only running statistics selects nothing to train.
    if ([...statistics.buffers].some(match) && !candidates.some(match))
      throw new AccSGDConfigError(
        'trainable',
        entry,
        'a float initializer that is not a running statistic',
        `selects only ${[...statistics.buffers].filter(match).join(', ')}: the running mean or variance of a BatchNormalization with training_mode=1, a buffer that each train step updates from the batch statistics (as PyTorch does), not a parameter`,
      );
  }
  const trainable =
    options.trainable === undefined
      ? candidates
      : selectNames(candidates, options.trainable, 'trainable', 'float initializer');
  // A node without a rule is refused only where a gradient must flow through it: it reads a value
  // computed from a trained parameter, on the way to the output.
  const fromParams = new Set(trainable);
  g.node.forEach((node, i) => {
    if (!kept.has(i) || !nodeReads(node).some((n) => fromParams.has(n))) return;
    if (opaque.has(i)) throw opaqueProblem(node, i);
    if (!NON_DIFFERENTIABLE_OPS.includes(node.opType)) for (const o of node.output) fromParams.add(o);
  });
  // A forward-only node must still be one ONNX Runtime can run: a custom domain has no kernels
  // unless a custom-op library is registered, which the train step's session does not do.
  for (const i of opaque) {
    const node = g.node[i]!;
    if (!ORT_DOMAINS.includes(node.domain))
      throw new AccSGDConfigError(
        describeNode(node, i),
        `${node.domain}.${node.opType}`,
        `an op of a domain ONNX Runtime runs (${ORT_DOMAINS.filter((d) => d !== '').join(', ')})`,
        `uses op ${node.opType} of domain "${node.domain}", which ONNX Runtime cannot run without a custom-op library; choose an output before it, and it is left out`,
      );
  }

  const taken = new Set<string>();
  for (const node of g.node) for (const n of [...node.input, ...node.output, node.name]) taken.add(n);
  for (const v of [...g.input, ...g.output, ...g.valueInfo]) taken.add(v.name);
  for (const t of g.initializer) taken.add(t.name);
  const emitted = Math.max(opset, GENERATED_MIN_OPSET);
  const graph = new GraphBuilder(floatType, emitted, taken);
  if (options.runningVariance !== undefined) {
    if (options.runningVariance !== 'population' && options.runningVariance !== 'unbiased')
      throw new AccSGDConfigError(
        'runningVariance',
        options.runningVariance,
        "'population' (ONNX's running_var update, the default) or 'unbiased' (PyTorch's BatchNorm)",
      );
    graph.runningVariance = options.runningVariance;
  }
  for (const t of g.initializer) {
    const shape = t.dims.map((d) => Number(d));
    if (t.dataType === TensorProto_DataType.INT64 || t.dataType === TensorProto_DataType.BOOL) {
      graph.declare(t.name, { kind: t.dataType === TensorProto_DataType.BOOL ? 'bool' : 'int64', shape });
      graph.intConstants.set(t.name, tensorValues(t)!);
    } else graph.declare(t.name, { kind: 'float', shape });
  }
  for (const i of inputs) {
    graph.declare(i.name, { kind: i.type, shape: i.shape });
    if (i.type === 'int64') graph.hostValues.add(i.name);
  }
  const consumed = new Set([...g.node.flatMap((n) => n.input), ...g.output.map((o) => o.name)]);
  const resized =
    batchSize !== undefined && exportedBatch !== undefined && exportedBatch !== batchSize
      ? batchDependent(
          g.node,
          kept,
          batchInputs.map((v) => v.name),
        )
      : undefined;
  const declaredShapes = new Map([...g.output, ...g.valueInfo].map((v) => [v.name, v]));
  g.node.forEach((node, i) => {
    if (!kept.has(i)) return;
    if (opaque.has(i)) {
      // Forward only: no gradient flows through it, so the graph needs only its outputs' shapes.
      for (const out of node.output) {
        if (out === '') continue;
        const v = declaredShapes.get(out);
        if (!v)
          throw new AccSGDConfigError(
            describeNode(node, i),
            out,
            'a value with a static shape in the model (graph.value_info)',
            `runs forward only (${node.opType}: no gradient flows through it), but its output "${out}" has no shape in the model's value_info; run ONNX shape inference on the model first`,
          );
        const { type, shape } = staticShape(v, 'value', sizes);
        if (resized?.has(out) && shape[0] === exportedBatch) shape[0] = batchSize!;
        const kind =
          type === TensorProto_DataType.INT64
            ? 'int64'
            : type === TensorProto_DataType.BOOL
              ? 'bool'
              : 'float';
        graph.declare(out, { kind, shape });
      }
      graph.nodes.push(node);
      return;
    }
    let added = node.opType === 'Dropout' ? inferenceDropout(node, i, graph, consumed) : node;
    if (resized && node.opType === 'Reshape' && resized.has(node.input[0]!))
      added = batchReshape(added, i, graph, exportedBatch!, batchSize!);
    graph.addNode(added, i);
  });
  const outputs = g.output.map((o) => o.name);
  for (const o of g.output) {
    if (!graph.values.has(o.name) && o.name !== output) continue;
    const declared = o.type?.value.case === 'tensorType' ? o.type.value.value.shape?.dim : undefined;
    const inferred = graph.values.get(o.name);
    if (!inferred)
      throw new AccSGDConfigError(
        `output "${o.name}"`,
        o.name,
        'an output produced by a node, an input or an initializer',
      );
    declared?.forEach((d, k) => {
      if (k === 0 && batchSize !== undefined) return;
      if (d.value.case === 'dimValue' && Number(d.value.value) !== inferred.shape[k])
        throw new AccSGDConfigError(
          `output "${o.name}"`,
          `[${inferred.shape}]`,
          `the declared shape`,
          `has inferred shape [${inferred.shape}], which contradicts its declared dimension ${k} = ${d.value.value}`,
        );
    });
  }
  if (!graph.values.has(output)) throw new AccSGDConfigError('output', output, 'a value with a static shape');
  const otherOpsets = model.opsetImport
    .filter((o) => o.domain !== '' && o.domain !== 'ai.onnx')
    .filter((o) => [...opaque].some((i) => g.node[i]!.domain === o.domain))
    .map((o) => ({ domain: o.domain, version: o.version }));
  return {
    model,
    floatType,
    opset: emitted,
    graph,
    inputs,
    outputs,
    output,
    initializers,
    trainable,
    runningStatistics: statistics.updated,
    otherOpsets,
  };
}

/** The values a node reads: its inputs and the outer-scope values its subgraphs (If, Loop) read. */
export function nodeReads(node: NodeProto): string[] {
  const names = node.input.filter((n) => n !== '');
  for (const a of node.attribute)
    for (const sub of [...(a.g ? [a.g] : []), ...a.graphs])
      for (const n of sub.node) names.push(...nodeReads(n));
  return names;
}

/** Values computed from the batch inputs (their leading axis is the batch), among the kept nodes. */
function batchDependent(
  nodes: readonly NodeProto[],
  kept: ReadonlySet<number>,
  batchInputs: readonly string[],
): Set<string> {
  const dependent = new Set(batchInputs);
  nodes.forEach((node, i) => {
    if (kept.has(i) && nodeReads(node).some((n) => dependent.has(n)))
      for (const o of node.output) dependent.add(o);
  });
  return dependent;
}

/**
 * A Reshape of batch data whose constant shape hard-codes the exported batch size (torch.onnx's
 * Flatten/view of a fixed-batch export writes [1, -1]): the same Reshape with the new batch size
 * as its leading entry. A leading -1 or 0 already follows the batch. Any other leading entry would
 * fold the batch into other axes, which cannot be rewritten safely: AccSGDConfigError naming the node.
 */
function batchReshape(
  node: NodeProto,
  index: number,
  graph: GraphBuilder,
  exported: number,
  batchSize: number,
): NodeProto {
  const shape = graph.intConstants.get(node.input[1] ?? '');
  if (!shape || shape.length === 0 || [-1, 0, batchSize].includes(shape[0]!)) return node;
  if (shape[0] !== exported)
    throw new AccSGDConfigError(
      describeNode(node, index),
      `[${shape}]`,
      `a shape whose leading entry is the batch size (${exported}, -1 or 0)`,
      `reshapes batch data to the constant shape [${shape}], which does not keep the batch axis first; batchSize cannot rewrite it (export the model with dynamic_axes)`,
    );
  const rewritten = graph.int64Constant([batchSize, ...shape.slice(1)]);
  return create(NodeProtoSchema, { ...node, input: [node.input[0]!, rewritten, ...node.input.slice(2)] });
}

/**
 * Dropout in inference mode (no training_mode input, or a constant false one) is the identity;
 * the train step holds an Identity in its place, which every execution provider runs. Training-mode
 * dropout (random masks) and a used mask output are refused.
 */
function inferenceDropout(
  node: NodeProto,
  index: number,
  graph: GraphBuilder,
  consumed: ReadonlySet<string>,
): NodeProto {
  const mode = node.input[2];
  if (mode) {
    const v = graph.values.get(mode);
    const t = v?.kind === 'bool' || v?.kind === 'int64' ? graph.intConstants.get(mode) : undefined;
    if (!t || t.some((b) => b !== 0))
      throw new AccSGDConfigError(
        describeNode(node, index),
        mode,
        'a Dropout in inference mode (no training_mode input, or a constant false one)',
        'is a Dropout whose training_mode is not a constant false; only inference-mode Dropout (the identity) is supported',
      );
  }
  if (node.output[1] && consumed.has(node.output[1]))
    throw new AccSGDConfigError(
      describeNode(node, index),
      node.output[1],
      'a Dropout whose mask output is unused',
    );
  return create(NodeProtoSchema, {
    ...node,
    opType: 'Identity',
    input: [node.input[0]!],
    output: [node.output[0]!],
    attribute: [],
  });
}

function staticShape(
  v: ValueInfoProto,
  what: string,
  dimensions: Readonly<Record<string, number>>,
): { type: number; shape: number[] } {
  const where = `${what} "${v.name}"`;
  if (v.type?.value.case !== 'tensorType') throw new AccSGDConfigError(where, v.type?.value.case, 'a tensor');
  const t = v.type.value.value;
  if (!t.shape)
    throw new AccSGDConfigError(
      where,
      'no shape',
      'a static shape',
      'has no shape; the train step needs static shapes',
    );
  const shape = t.shape.dim.map((d, k) => {
    if (d.value.case === 'dimValue') return Number(d.value.value);
    if (d.value.case === 'dimParam') {
      const size = dimensions[d.value.value];
      if (size === undefined)
        throw new AccSGDConfigError(
          where,
          d.value.value,
          'a static shape',
          `has the symbolic dimension "${d.value.value}" (axis ${k}); fix it with the dimensions option, e.g. { dimensions: { ${JSON.stringify(d.value.value)}: 32 } }`,
        );
      if (!Number.isInteger(size) || size < 1)
        throw new AccSGDConfigError(`dimensions.${d.value.value}`, size, 'a positive integer');
      return size;
    }
    throw new AccSGDConfigError(
      where,
      `axis ${k}`,
      'a static shape',
      `has an unknown dimension at axis ${k}; the train step needs static shapes`,
    );
  });
  return { type: t.elemType, shape };
}
