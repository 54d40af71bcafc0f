/**
 * Checks of a decoded ONNX model that run before any shape inference or session: the model's
 * structure (IR version, names defined once), every tensor it holds (no external data anywhere,
 * sizes that fit, data that matches its dims) and each node against its op's schema at the model's
 * opset (inputs, outputs, attributes and their types). Each failure is an AccSGDConfigError naming
 * the node, tensor or value at fault, so a mistake is reported where it is, not at the node after
 * it, in ONNX Runtime, or as a RangeError.
 */
import { AccSGDConfigError } from '@accsgd/core';
import {
  type AttributeProto,
  AttributeProto_AttributeType,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  TensorProto_DataLocation,
  TensorProto_DataType,
} from 'onnx-buf';
import { describeNode } from './graph.js';
import { DATA_TYPE_NAMES, MAX_VALUE_ELEMENTS } from './proto.js';

export { MAX_FOLDED_ELEMENTS, MAX_VALUE_ELEMENTS } from './proto.js';

/** IR versions ONNX Runtime 1.30 loads (3 is the first with opset imports; 13 the newest it reads). */
export const MIN_IR_VERSION = 3;
export const MAX_IR_VERSION = 13;

const BYTES: Partial<Record<number, number>> = {
  [TensorProto_DataType.FLOAT]: 4,
  [TensorProto_DataType.DOUBLE]: 8,
  [TensorProto_DataType.INT64]: 8,
  [TensorProto_DataType.INT32]: 4,
  [TensorProto_DataType.BOOL]: 1,
  [TensorProto_DataType.UINT8]: 1,
  [TensorProto_DataType.INT8]: 1,
  [TensorProto_DataType.FLOAT16]: 2,
  [TensorProto_DataType.BFLOAT16]: 2,
};

const { FLOAT, INT, STRING, TENSOR, FLOATS, INTS, STRINGS, SPARSE_TENSOR } = AttributeProto_AttributeType;
type AttrType = AttributeProto_AttributeType;

/** One op's signature over a range of opsets. `required`: attributes without a default. */
interface Schema {
  since: number;
  inputs: [min: number, max: number];
  outputs: [min: number, max: number];
  attributes?: Readonly<Record<string, AttrType>>;
  required?: readonly string[];
  /** Why an input count is wrong at this opset, when there is a common mistake to name. */
  hint?: string;
}

const unary = (attributes: Record<string, AttrType> = {}): Schema[] => [
  { since: 1, inputs: [1, 1], outputs: [1, 1], attributes },
];
const binary: Schema[] = [{ since: 1, inputs: [2, 2], outputs: [1, 1] }];
const reduceWithAttributeAxes = (op: string): Schema[] => [
  {
    since: 1,
    inputs: [1, 1],
    outputs: [1, 1],
    attributes: { axes: INTS, keepdims: INT },
    hint: `${op} takes axes as an attribute before opset 18 (as an input from 18)`,
  },
  {
    since: 18,
    inputs: [1, 2],
    outputs: [1, 1],
    attributes: { keepdims: INT, noop_with_empty_axes: INT },
    hint: `${op} takes axes as an input from opset 18 (an attribute before)`,
  },
];
const pool = { auto_pad: STRING, ceil_mode: INT, kernel_shape: INTS, pads: INTS, strides: INTS };

/**
 * The schemas of the ops the autodiff reads (ai.onnx, opsets 13 and later), and of a few common
 * ones, from the ONNX operator documentation. An op not listed here is left to the op checks.
 */
const SCHEMAS: Readonly<Record<string, readonly Schema[]>> = {
  Add: binary,
  Sub: binary,
  Mul: binary,
  Div: binary,
  Pow: binary,
  MatMul: binary,
  Equal: binary,
  Greater: binary,
  Less: binary,
  GreaterOrEqual: binary,
  LessOrEqual: binary,
  And: binary,
  Or: binary,
  Expand: binary,
  Not: unary(),
  Identity: unary(),
  Neg: unary(),
  Abs: unary(),
  Relu: unary(),
  Tanh: unary(),
  Sigmoid: unary(),
  Exp: unary(),
  Log: unary(),
  Sqrt: unary(),
  Erf: unary(),
  Softplus: unary(),
  GlobalAveragePool: unary(),
  GlobalMaxPool: unary(),
  LeakyRelu: unary({ alpha: FLOAT }),
  Softmax: unary({ axis: INT }),
  LogSoftmax: unary({ axis: INT }),
  Flatten: unary({ axis: INT }),
  Transpose: unary({ perm: INTS }),
  Gelu: [{ since: 20, inputs: [1, 1], outputs: [1, 1], attributes: { approximate: STRING } }],
  Where: [{ since: 1, inputs: [3, 3], outputs: [1, 1] }],
  Cast: [
    { since: 1, inputs: [1, 1], outputs: [1, 1], attributes: { to: INT }, required: ['to'] },
    { since: 19, inputs: [1, 1], outputs: [1, 1], attributes: { to: INT, saturate: INT }, required: ['to'] },
  ],
  Shape: [
    { since: 1, inputs: [1, 1], outputs: [1, 1] },
    { since: 15, inputs: [1, 1], outputs: [1, 1], attributes: { start: INT, end: INT } },
  ],
  ConstantOfShape: [{ since: 1, inputs: [1, 1], outputs: [1, 1], attributes: { value: TENSOR } }],
  Constant: [
    {
      since: 1,
      inputs: [0, 0],
      outputs: [1, 1],
      attributes: {
        value: TENSOR,
        sparse_value: SPARSE_TENSOR,
        value_float: FLOAT,
        value_floats: FLOATS,
        value_int: INT,
        value_ints: INTS,
        value_string: STRING,
        value_strings: STRINGS,
      },
    },
  ],
  Gather: [{ since: 1, inputs: [2, 2], outputs: [1, 1], attributes: { axis: INT } }],
  Unsqueeze: [
    {
      since: 13,
      inputs: [2, 2],
      outputs: [1, 1],
      hint: 'Unsqueeze takes axes as an input from opset 13',
    },
  ],
  Squeeze: [{ since: 13, inputs: [1, 2], outputs: [1, 1] }],
  Concat: [
    { since: 1, inputs: [1, Infinity], outputs: [1, 1], attributes: { axis: INT }, required: ['axis'] },
  ],
  Slice: [{ since: 10, inputs: [3, 5], outputs: [1, 1] }],
  // ai.onnx defines it from opset 17; ONNX Runtime also runs it in models of older opsets (a
  // kernel registered for opset 1 and later), so such models are left to it.
  LayerNormalization: [
    {
      since: 1,
      inputs: [2, 3],
      outputs: [1, 3],
      attributes: { axis: INT, epsilon: FLOAT, stash_type: INT },
    },
  ],
  ScatterND: [
    { since: 11, inputs: [3, 3], outputs: [1, 1] },
    { since: 16, inputs: [3, 3], outputs: [1, 1], attributes: { reduction: STRING } },
  ],
  Pad: [
    { since: 13, inputs: [2, 3], outputs: [1, 1], attributes: { mode: STRING } },
    { since: 18, inputs: [2, 4], outputs: [1, 1], attributes: { mode: STRING } },
  ],
  Gemm: [
    {
      since: 1,
      inputs: [2, 3],
      outputs: [1, 1],
      attributes: { alpha: FLOAT, beta: FLOAT, transA: INT, transB: INT },
    },
  ],
  ReduceSum: [
    {
      since: 13,
      inputs: [1, 2],
      outputs: [1, 1],
      attributes: { keepdims: INT, noop_with_empty_axes: INT },
      hint: 'ReduceSum takes axes as an input from opset 13',
    },
  ],
  ReduceMean: reduceWithAttributeAxes('ReduceMean'),
  ReduceLogSumExp: reduceWithAttributeAxes('ReduceLogSumExp'),
  ReduceMax: reduceWithAttributeAxes('ReduceMax'),
  ReduceMin: reduceWithAttributeAxes('ReduceMin'),
  Reshape: [
    { since: 5, inputs: [2, 2], outputs: [1, 1] },
    { since: 14, inputs: [2, 2], outputs: [1, 1], attributes: { allowzero: INT } },
  ],
  HardSwish: [{ since: 14, inputs: [1, 1], outputs: [1, 1] }],
  Reciprocal: unary(),
  Elu: unary({ alpha: FLOAT }),
  HardSigmoid: unary({ alpha: FLOAT, beta: FLOAT }),
  Max: [{ since: 1, inputs: [1, Infinity], outputs: [1, 1] }],
  Min: [{ since: 1, inputs: [1, Infinity], outputs: [1, 1] }],
  Tile: binary,
  Split: [
    { since: 13, inputs: [1, 2], outputs: [1, Infinity], attributes: { axis: INT } },
    { since: 18, inputs: [1, 2], outputs: [1, Infinity], attributes: { axis: INT, num_outputs: INT } },
  ],
  ConvTranspose: [
    {
      since: 11,
      inputs: [2, 3],
      outputs: [1, 1],
      attributes: {
        auto_pad: STRING,
        dilations: INTS,
        group: INT,
        kernel_shape: INTS,
        output_padding: INTS,
        output_shape: INTS,
        pads: INTS,
        strides: INTS,
      },
    },
  ],
  Dropout: [{ since: 13, inputs: [1, 3], outputs: [1, 2], attributes: { seed: INT } }],
  Clip: [{ since: 11, inputs: [1, 3], outputs: [1, 1] }],
  Conv: [
    {
      since: 11,
      inputs: [2, 3],
      outputs: [1, 1],
      attributes: {
        auto_pad: STRING,
        dilations: INTS,
        group: INT,
        kernel_shape: INTS,
        pads: INTS,
        strides: INTS,
      },
    },
  ],
  MaxPool: [
    {
      since: 12,
      inputs: [1, 1],
      outputs: [1, 2],
      attributes: { ...pool, dilations: INTS, storage_order: INT },
      required: ['kernel_shape'],
    },
  ],
  AveragePool: [
    {
      since: 11,
      inputs: [1, 1],
      outputs: [1, 1],
      attributes: { ...pool, count_include_pad: INT },
      required: ['kernel_shape'],
    },
    {
      since: 19,
      inputs: [1, 1],
      outputs: [1, 1],
      attributes: { ...pool, count_include_pad: INT, dilations: INTS },
      required: ['kernel_shape'],
    },
  ],
  BatchNormalization: [
    { since: 9, inputs: [5, 5], outputs: [1, 5], attributes: { epsilon: FLOAT, momentum: FLOAT } },
    {
      since: 14,
      inputs: [5, 5],
      outputs: [1, 3],
      attributes: { epsilon: FLOAT, momentum: FLOAT, training_mode: INT },
    },
  ],
};

/** The schema of `op` in force at `opset`, 'unknown' for an op not listed, or undefined before it exists. */
function schemaAt(op: string, opset: number): Schema | 'unknown' | undefined {
  const versions = SCHEMAS[op];
  if (!versions) return 'unknown';
  let found: Schema | undefined;
  for (const s of versions) if (s.since <= opset) found = s;
  return found;
}

const attrTypeName = (t: number) => AttributeProto_AttributeType[t] ?? `type ${t}`;
const count = (n: number) => (n === Infinity ? 'any number of' : String(n));
const range = ([min, max]: [number, number]) =>
  min === max ? count(min) : max === Infinity ? `${min} or more` : `${min} to ${max}`;

/**
 * Checks one node of the default domain against its op's schema at `opset`: the number of inputs
 * (required ones not omitted) and outputs, each attribute's name and type, required attributes.
 */
export function checkNodeSchema(node: NodeProto, index: number | undefined, opset: number): void {
  if ((node.domain !== '' && node.domain !== 'ai.onnx') || Number.isNaN(opset)) return;
  const schema = schemaAt(node.opType, opset);
  if (schema === 'unknown') return;
  const where = describeNode(node, index);
  if (!schema) {
    const since = SCHEMAS[node.opType]![0]!.since;
    throw new AccSGDConfigError(
      where,
      node.opType,
      `an op of ai.onnx opset ${opset}`,
      `uses ${node.opType}, which ai.onnx defines from opset ${since}; the model declares opset ${opset}`,
    );
  }
  // Trailing omitted inputs ('') do not count; an omitted required one does.
  let given = node.input.length;
  while (given > 0 && node.input[given - 1] === '') given--;
  if (given < schema.inputs[0] || given > schema.inputs[1])
    throw new AccSGDConfigError(
      where,
      `${given} inputs`,
      `${range(schema.inputs)} inputs`,
      `has ${given} input(s); ${node.opType} at opset ${opset} takes ${range(schema.inputs)}${schema.hint ? ` (${schema.hint})` : ''}`,
    );
  const missing = node.input.slice(0, schema.inputs[0]).indexOf('');
  if (missing >= 0)
    throw new AccSGDConfigError(
      where,
      `input ${missing}`,
      'a value name',
      `omits its required input ${missing}`,
    );
  let produced = node.output.length;
  while (produced > 0 && node.output[produced - 1] === '') produced--;
  if (produced < schema.outputs[0] || produced > schema.outputs[1] || node.output[0] === '')
    throw new AccSGDConfigError(
      where,
      `${produced} outputs`,
      `${range(schema.outputs)} outputs`,
      `has ${produced} output(s); ${node.opType} at opset ${opset} has ${range(schema.outputs)}`,
    );
  const allowed = schema.attributes ?? {};
  const seen = new Set<string>();
  for (const a of node.attribute) {
    if (seen.has(a.name))
      throw new AccSGDConfigError(where, a.name, 'each attribute once', `has attribute ${a.name} twice`);
    seen.add(a.name);
    const type = allowed[a.name];
    const names = Object.keys(allowed);
    if (type === undefined)
      throw new AccSGDConfigError(
        where,
        a.name,
        names.length ? `one of its attributes (${names.join(', ')})` : 'no attributes',
        `has attribute ${a.name}, which ${node.opType} at opset ${opset} does not define (${names.length ? `it has ${names.join(', ')}` : 'it has none'})${schema.hint && a.name === 'axes' ? `; ${schema.hint}` : ''}`,
      );
    if (a.type !== type)
      throw new AccSGDConfigError(
        where,
        a.name,
        `attribute ${a.name} of type ${attrTypeName(type)}`,
        `has attribute ${a.name} of type ${attrTypeName(a.type)}; ONNX declares it ${attrTypeName(type)}${type === FLOAT && a.type === INT ? ` (model-builder: { float: ${Number(a.i)} })` : ''}`,
      );
  }
  for (const name of schema.required ?? [])
    if (!seen.has(name))
      throw new AccSGDConfigError(where, name, `attribute ${name}`, `lacks its required attribute ${name}`);
  if (node.opType === 'Constant' && node.attribute.length !== 1)
    throw new AccSGDConfigError(
      where,
      `${node.attribute.length} attributes`,
      'exactly one value attribute',
      `has ${node.attribute.length} value attributes; a Constant holds exactly one`,
    );
}

/** Element count of dims, or an AccSGDConfigError for a negative or absurd dimension. */
export function tensorSize(where: string, dims: readonly bigint[], limit = MAX_VALUE_ELEMENTS): number {
  let n = 1;
  for (const [k, d] of dims.entries()) {
    if (d < 0n || d > BigInt(Number.MAX_SAFE_INTEGER))
      throw new AccSGDConfigError(`${where} dims[${k}]`, d, 'a size >= 0');
    n *= Number(d);
  }
  if (n > limit)
    throw new AccSGDConfigError(
      `${where} dims`,
      `[${dims.join(',')}]`,
      `at most ${limit} elements`,
      `hold ${n} elements, more than the ${limit} this package allocates for one value`,
    );
  return n;
}

/**
 * Checks a tensor held in the model (an initializer or an attribute's tensor): stored inside the
 * model, dims that fit, and exactly as many values as its dims hold.
 */
export function checkTensor(where: string, t: TensorProto): void {
  if (t.dataLocation === TensorProto_DataLocation.EXTERNAL || t.externalData.length > 0) {
    const location = t.externalData.find((e) => e.key === 'location')?.value;
    throw new AccSGDConfigError(
      where,
      location === undefined ? 'external data' : `external data at ${JSON.stringify(location)}`,
      'a tensor stored inside the model',
      'uses external data; save the model with its tensors inside it (external files are never read)',
    );
  }
  if (t.segment)
    throw new AccSGDConfigError(
      where,
      'a segment',
      'a whole tensor',
      'is a segment of a tensor split across messages',
    );
  const n = tensorSize(where, t.dims);
  const typed =
    t.floatData.length +
    t.doubleData.length +
    t.int64Data.length +
    t.int32Data.length +
    t.uint64Data.length +
    t.stringData.length;
  const bytes = BYTES[t.dataType];
  if (t.rawData.length > 0) {
    if (typed > 0)
      throw new AccSGDConfigError(where, 'raw_data and typed data', 'one of raw_data or a typed field');
    if (bytes !== undefined && t.rawData.length !== n * bytes)
      throw new AccSGDConfigError(
        `${where} raw_data`,
        `${t.rawData.length} bytes`,
        `${n * bytes} bytes (${n} ${DATA_TYPE_NAMES[t.dataType]} values for dims [${t.dims.join(',')}])`,
      );
  } else if (typed !== n && !(n === 0 && typed === 0))
    throw new AccSGDConfigError(
      where,
      `${typed} values`,
      `${n} values for dims [${t.dims.join(',')}]`,
      `holds ${typed} values; its dims [${t.dims.join(',')}] hold ${n}`,
    );
}

function attributeTensors(a: AttributeProto): TensorProto[] {
  const sparse = [a.sparseTensor, ...a.sparseTensors].flatMap((s) => (s ? [s.values, s.indices] : []));
  return [...(a.t ? [a.t] : []), ...a.tensors, ...sparse].filter((t): t is TensorProto => t !== undefined);
}

/** A value name ORT's JavaScript API cannot carry: feeds and outputs are plain objects. */
function checkName(where: string, name: string): void {
  if (name === '__proto__')
    throw new AccSGDConfigError(
      where,
      name,
      'a name other than __proto__',
      "is named __proto__, which ONNX Runtime's JavaScript API cannot feed or return (feeds and outputs are plain objects, where __proto__ is the prototype); rename it",
    );
}

/**
 * The structural checks of a decoded model, before shape inference: IR version, every name defined
 * once (graph inputs, initializers, node outputs), no name __proto__, every tensor stored inside the
 * model with data that matches its dims (initializers, Constant and ConstantOfShape values, every
 * tensor attribute), and each node against its op's schema at `opset` (NaN: no schema checks).
 */
export function checkModelStructure(model: ModelProto, opset: number): void {
  const ir = Number(model.irVersion);
  if (!(ir >= MIN_IR_VERSION && ir <= MAX_IR_VERSION))
    throw new AccSGDConfigError(
      'model.ir_version',
      model.irVersion,
      `an IR version from ${MIN_IR_VERSION} to ${MAX_IR_VERSION} (what ONNX Runtime loads)`,
    );
  const g = model.graph;
  if (!g) return;
  const initializers = new Set<string>();
  for (const t of g.initializer) {
    const where = `initializer "${t.name}"`;
    if (t.name === '') throw new AccSGDConfigError('initializer', t.name, 'a non-empty name');
    checkName(where, t.name);
    if (initializers.has(t.name))
      throw new AccSGDConfigError(where, t.name, 'a name no other initializer has', 'is defined twice');
    initializers.add(t.name);
    checkTensor(where, t);
  }
  // Defined once: a graph input (an initializer may also be listed as one, IR >= 4) or an
  // initializer, else a node output.
  const defined = new Set(initializers);
  const inputs = new Set<string>();
  for (const v of g.input) {
    checkName(`input "${v.name}"`, v.name);
    if (inputs.has(v.name))
      throw new AccSGDConfigError(
        `input "${v.name}"`,
        v.name,
        'a name no other graph input has',
        'is listed twice',
      );
    inputs.add(v.name);
    defined.add(v.name);
  }
  for (const v of g.output) checkName(`output "${v.name}"`, v.name);
  const outputs = new Set<string>();
  for (const v of g.output) {
    if (outputs.has(v.name))
      throw new AccSGDConfigError(
        `output "${v.name}"`,
        v.name,
        'a name no other graph output has',
        'is listed twice',
      );
    outputs.add(v.name);
  }
  g.node.forEach((node, i) => {
    const where = describeNode(node, i);
    for (const a of node.attribute)
      attributeTensors(a).forEach((t, k) =>
        checkTensor(`${where} attribute ${a.name}${k ? `[${k}]` : ''}`, t),
      );
    for (const out of node.output) {
      if (out === '') continue;
      checkName(`${where} output`, out);
      if (defined.has(out))
        throw new AccSGDConfigError(
          where,
          out,
          'output names defined nowhere else',
          `writes "${out}", which ${inputs.has(out) ? 'is a graph input' : initializers.has(out) ? 'is an initializer' : 'another node writes'}; every value is defined once`,
        );
      defined.add(out);
    }
    checkNodeSchema(node, i, opset);
  });
}
