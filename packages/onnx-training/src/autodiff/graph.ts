import { AccSGDConfigError } from '@accsgd/core';
import {
  AttributeProto_AttributeType,
  type NodeProto,
  type TensorProto,
  TensorProto_DataType,
} from 'onnx-buf';
import { OP_MODULES } from './ops/index.js';
import {
  type AttributeValue,
  attribute,
  type FloatType,
  findAttribute,
  floatTensor,
  int64Tensor,
  intAttribute,
  intsAttribute,
  MAX_FOLDED_ELEMENTS,
  MAX_VALUE_ELEMENTS,
  makeNode,
  tensorValues,
} from './proto.js';

/** What a value holds: the model's float type, int64 (shapes, axes) or bool (masks). */
export type ValueKind = 'float' | 'int64' | 'bool';

export interface ValueShape {
  kind: ValueKind;
  shape: number[];
}

/** Where a node sits, for error messages: `graph.node[3] "fc1/MatMul" (MatMul)`. */
export function describeNode(node: NodeProto, index: number | undefined): string {
  const where = index === undefined ? 'node' : `graph.node[${index}]`;
  const domain = node.domain && node.domain !== 'ai.onnx' ? `${node.domain}.` : '';
  return `${where} "${node.name || node.output[0] || '?'}" (${domain}${node.opType})`;
}

export const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
export const sameShape = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((d, i) => d === b[i]);

/** Numpy broadcasting of two static shapes, or undefined when they do not broadcast. */
export function broadcastShapes(a: readonly number[], b: readonly number[]): number[] | undefined {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const x = a[a.length - rank + i] ?? 1;
    const y = b[b.length - rank + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) return undefined;
    out.push(x === 1 ? y : x);
  }
  return out;
}

const normaliseAxis = (axis: number, rank: number) => (axis < 0 ? axis + rank : axis);

/**
 * A graph under construction: nodes in topological order, every value's static shape and kind,
 * int64 constants' values (for Reshape shapes and Reduce axes), and initializers. Every node added
 * has its output shapes inferred here, so a backward rule that produced a wrongly shaped gradient
 * fails at build time, not in ORT.
 */
export class GraphBuilder {
  readonly nodes: NodeProto[] = [];
  readonly values = new Map<string, ValueShape>();
  readonly intConstants = new Map<string, number[]>();
  readonly initializers: TensorProto[] = [];
  private readonly used = new Set<string>();
  private counter = 0;
  private readonly floatConstants = new Map<string, string>();
  /**
   * Values computed on the host from the int64 batch inputs (token ids, masks) and constants: the
   * batch inputs themselves, then each host step's output, in order.
   */
  readonly hostValues = new Set<string>();
  readonly hostSteps: HostStep[] = [];
  /**
   * Per int64 value used as Gather indices: the smallest size they index (a valid index is in
   * [-size, size)). OnnxTrainer checks batch inputs against it before a step runs.
   */
  readonly indexLimits = new Map<string, number>();
  /** Set by inferNode when the node it inferred can run on the host. */
  private hostCandidate: HostStep | undefined;
  /**
   * Which batch variance a BatchNormalization with training_mode=1 moves running_var towards:
   * ONNX's population one (default) or PyTorch's unbiased one (ForwardModelOptions.runningVariance).
   */
  runningVariance: 'population' | 'unbiased' = 'population';

  constructor(
    readonly floatType: FloatType,
    readonly opset: number,
    /** Names the forward model already uses; new names never collide with them. */
    taken: Iterable<string>,
  ) {
    for (const n of taken) this.used.add(n);
  }

  /** A fresh value name starting with `hint`. */
  fresh(hint: string): string {
    let name = hint;
    while (this.used.has(name)) name = `${hint}__${this.counter++}`;
    this.used.add(name);
    return name;
  }

  reserve(name: string): void {
    this.used.add(name);
  }

  isTaken(name: string): boolean {
    return this.used.has(name);
  }

  shape(name: string): number[] {
    const v = this.values.get(name);
    if (!v) throw new Error(`internal: no shape for value "${name}"`);
    return v.shape;
  }

  declare(name: string, value: ValueShape): void {
    this.values.set(name, value);
    this.used.add(name);
  }

  /** Appends a node of this package's own (a loss or gradient node) and returns its output name. */
  op(
    opType: string,
    inputs: readonly string[],
    hint: string,
    attrs: Record<string, AttributeValue> = {},
  ): string {
    const out = this.fresh(hint);
    const attributes = Object.entries(attrs).map(([k, v]) => attribute(k, v));
    this.addNode(makeNode(opType, inputs, [out], out, attributes), undefined);
    return out;
  }

  /**
   * Appends a node (forward model's or own), inferring its outputs' shapes. A node computed from
   * host values and constants only (an int64 mask's Unsqueeze and Cast, token ids reshaped into
   * rows for Gather's gradient) becomes a host step instead: ORT's WebGPU EP has no int64 Reshape,
   * Unsqueeze or Cast, so such nodes would run on the CPU; their inputs come from the CPU anyway.
   */
  addNode(node: NodeProto, index: number | undefined): void {
    // An op module may write the node as other ops (BatchNormalization, Split): those are added
    // instead, each inferred and differentiated by its own rule.
    checkFloatAttributes(node, index);
    const lower = OP_MODULES[node.opType]?.lower;
    if (lower?.(shapeContext(node, index, this))) return;
    this.hostCandidate = undefined;
    const outputs = inferNode(node, index, this);
    node.output.forEach((name, k) => {
      if (name === '') return;
      // Sizes known at build time that cannot be allocated are refused here, not by ORT's allocator.
      if (size(outputs[k]!.shape) > MAX_VALUE_ELEMENTS)
        fail(
          node,
          index,
          `computes "${name}" of shape [${outputs[k]!.shape}], more than the ${MAX_VALUE_ELEMENTS} elements allowed for one value`,
        );
      this.declare(name, outputs[k]!);
    });
    // Set by inferNode through evaluable().
    const host = this.hostCandidate as HostStep | undefined;
    if (host) {
      this.hostSteps.push(host);
      this.hostValues.add(host.output);
    } else this.nodes.push(node);
  }

  /**
   * Records how an int64-computed value is obtained from its data inputs: folded now when they are
   * all constants (int64 and bool results), a host step when some are host values, else left to ORT.
   */
  evaluable(
    output: string,
    inputs: readonly string[],
    kind: ValueKind,
    shape: readonly number[],
    compute: (values: number[][]) => number[],
  ): void {
    if (inputs.every((n) => this.intConstants.has(n))) {
      if (kind !== 'float')
        this.intConstants.set(output, compute(inputs.map((n) => this.intConstants.get(n)!)));
      return;
    }
    if (inputs.every((n) => this.intConstants.has(n) || this.hostValues.has(n)))
      this.hostCandidate = { output, inputs: [...inputs], kind, shape: [...shape], compute };
  }

  /**
   * Host values the graph's nodes read (they become inputs of the generated model), in host-step
   * order; int64 batch inputs read directly are batch inputs already.
   */
  hostInputs(batchInputs: ReadonlySet<string>): HostStep[] {
    const read = new Set(this.nodes.flatMap((n) => n.input));
    return this.hostSteps.filter((h) => read.has(h.output) && !batchInputs.has(h.output));
  }

  /** Evaluates the host steps for one batch (int64 inputs as numbers); returns every host value. */
  evaluateHost(batch: ReadonlyMap<string, number[]>): Map<string, number[]> {
    const values = new Map(batch);
    for (const step of this.hostSteps)
      values.set(
        step.output,
        step.compute(step.inputs.map((n) => values.get(n) ?? this.intConstants.get(n)!)),
      );
    return values;
  }

  /** A float constant of the graph's float type (deduplicated). */
  floatConstant(values: readonly number[], shape: readonly number[] = []): string {
    const key = `${shape.join('x')}:${values.join(',')}`;
    const known = this.floatConstants.get(key);
    if (known) return known;
    const name = this.fresh('const');
    this.initializers.push(floatTensor(name, this.floatType, shape, values));
    this.declare(name, { kind: 'float', shape: [...shape] });
    this.floatConstants.set(key, name);
    return name;
  }

  /** An int64 constant (1-D unless a shape is given, e.g. [] for a scalar index). */
  int64Constant(values: readonly number[], shape: readonly number[] = [values.length]): string {
    const name = this.fresh('const_i64');
    this.initializers.push(int64Tensor(name, shape, values));
    this.declare(name, { kind: 'int64', shape: [...shape] });
    this.intConstants.set(name, [...values]);
    return name;
  }

  /**
   * ReduceSum / ReduceMean / ReduceLogSumExp over `axes`, in the form the model's opset wants
   * (axes as an input from opset 13 for ReduceSum and from 18 for the others).
   */
  reduce(
    op: 'ReduceSum' | 'ReduceMean' | 'ReduceLogSumExp',
    x: string,
    axes: readonly number[],
    keepdims: boolean,
    hint: string,
  ): string {
    if (axesAsInput(op, this.opset))
      return this.op(op, [x, this.int64Constant(axes)], hint, { keepdims: keepdims ? 1 : 0 });
    return this.op(op, [x], hint, { axes: { ints: axes }, keepdims: keepdims ? 1 : 0 });
  }

  reshape(x: string, shape: readonly number[], hint: string): string {
    if (sameShape(this.shape(x), shape)) return x;
    return this.op('Reshape', [x, this.int64Constant(shape)], hint);
  }

  /**
   * Sums a gradient of the broadcast shape back to `target` (the shape of the input that was
   * broadcast): ReduceSum over the leading axes the input lacks and over the axes where it has size
   * 1, then Reshape to the input's shape.
   */
  sumToShape(grad: string, target: readonly number[], hint: string): string {
    const from = this.shape(grad);
    if (sameShape(from, target)) return grad;
    const extra = from.length - target.length;
    const axes: number[] = [];
    from.forEach((d, i) => {
      if (i < extra || (target[i - extra] === 1 && d !== 1)) axes.push(i);
    });
    const reduced = axes.length > 0 ? this.reduce('ReduceSum', grad, axes, true, hint) : grad;
    return this.reshape(reduced, target, hint);
  }
}

/** A value computed on the host, per batch, from host values and int64 constants. */
export interface HostStep {
  output: string;
  inputs: string[];
  kind: ValueKind;
  shape: number[];
  compute: (values: number[][]) => number[];
}

export function axesAsInput(op: string, opset: number): boolean {
  return op === 'ReduceSum' ? opset >= 13 : opset >= 18;
}

function fail(node: NodeProto, index: number | undefined, what: string): never {
  throw new AccSGDConfigError(
    describeNode(node, index),
    node.opType,
    'a node with static shapes that the autodiff supports',
    what,
  );
}

/** The axes of a Reduce node (attribute or input, depending on the op and opset), or 'all'. */
export function reduceAxes(
  node: NodeProto,
  index: number | undefined,
  graph: GraphBuilder,
): number[] | 'all' | 'none' {
  const rank = graph.shape(node.input[0]!).length;
  let axes: number[] | undefined;
  if (axesAsInput(node.opType, graph.opset)) {
    const name = node.input[1];
    if (name) {
      axes = graph.intConstants.get(name);
      if (!axes)
        fail(node, index, `has axes "${name}" that are not a constant (an int64 initializer or Constant)`);
    }
  } else axes = intsAttribute(node, 'axes');
  if (!axes || axes.length === 0) return intAttribute(node, 'noop_with_empty_axes', 0) === 1 ? 'none' : 'all';
  return [...new Set(axes.map((a) => normaliseAxis(a, rank)))].sort((a, b) => a - b);
}

function float(shape: number[]): ValueShape {
  return { kind: 'float', shape };
}

/** Attributes ONNX declares FLOAT: ORT refuses a model that writes them as INT (alpha: 2). */
const FLOAT_ATTRIBUTES: Readonly<Record<string, readonly string[]>> = {
  Gemm: ['alpha', 'beta'],
  LayerNormalization: ['epsilon'],
};

/**
 * What shape inference (and lowering) of one node is given: the node, the graph so far, and
 * accessors that refuse, naming the node, an input that is missing, of the wrong kind or not a
 * constant where one is needed. Op modules (./ops/) receive it as well.
 */
export interface ShapeContext {
  node: NodeProto;
  index: number | undefined;
  graph: GraphBuilder;
  input(k: number): ValueShape;
  floatInput(k: number): number[];
  /** An int64 constant input (initializer, Constant node, or computed from shapes). */
  constant(k: number): number[];
  optionalConstant(k: number): number[] | undefined;
  /**
   * An output computed from the data inputs `ks` by `compute`: folded when they are constants, a
   * host step when they are host values, else left to ORT (GraphBuilder.evaluable).
   */
  computed(
    kind: ValueKind,
    shape: number[],
    ks: readonly number[],
    compute: (values: number[][]) => number[],
  ): ValueShape[];
  fail(what: string): never;
}

export function shapeContext(node: NodeProto, index: number | undefined, graph: GraphBuilder): ShapeContext {
  const input = (k: number): ValueShape => {
    const name = node.input[k];
    const v = name ? graph.values.get(name) : undefined;
    if (!v)
      fail(node, index, `reads "${name ?? ''}", which is not defined before it (or has no static shape)`);
    return v;
  };
  const floatInput = (k: number): number[] => {
    const v = input(k);
    if (v.kind !== 'float')
      fail(node, index, `input ${k} ("${node.input[k]}") is ${v.kind}, expected the model's float type`);
    return v.shape;
  };
  const constant = (k: number): number[] => {
    const name = node.input[k] ?? '';
    const values = graph.values.get(name)?.kind === 'int64' ? graph.intConstants.get(name) : undefined;
    if (!values)
      fail(
        node,
        index,
        `input ${k} ("${node.input[k]}") must be an int64 constant (initializer or Constant node, or computed from shapes)`,
      );
    return values;
  };
  const optionalConstant = (k: number): number[] | undefined => (node.input[k] ? constant(k) : undefined);
  const computed = (
    kind: ValueKind,
    shape: number[],
    ks: readonly number[],
    compute: (values: number[][]) => number[],
  ): ValueShape[] => {
    graph.evaluable(
      node.output[0]!,
      ks.map((k) => node.input[k]!),
      kind,
      shape,
      compute,
    );
    return [{ kind, shape }];
  };
  return {
    node,
    index,
    graph,
    input,
    floatInput,
    constant,
    optionalConstant,
    computed,
    fail: (what) => fail(node, index, what),
  };
}

function checkFloatAttributes(node: NodeProto, index: number | undefined): void {
  const module = OP_MODULES[node.opType];
  for (const name of [...(FLOAT_ATTRIBUTES[node.opType] ?? []), ...(module?.floatAttributes ?? [])]) {
    const a = findAttribute(node, name);
    if (a && a.type !== AttributeProto_AttributeType.FLOAT)
      fail(
        node,
        index,
        `has attribute ${name} of type ${AttributeProto_AttributeType[a.type]}; ONNX declares it FLOAT (model-builder: { float: ${Number(a.i)} })`,
      );
  }
}

/** Output shapes of one node, or AccSGDConfigError naming the node. */
function inferNode(node: NodeProto, index: number | undefined, graph: GraphBuilder): ValueShape[] {
  const module = OP_MODULES[node.opType];
  const context = shapeContext(node, index, graph);
  if (module) return module.infer(context);
  const { input, floatInput, constant, optionalConstant, computed } = context;
  /** An int64 constant output (its values known now), so that shapes computed in the graph stay static. */
  const folded = (shape: number[], values: number[]): ValueShape[] => {
    graph.intConstants.set(node.output[0]!, values);
    return [{ kind: 'int64', shape }];
  };
  /** The same values in another shape (Reshape, Squeeze, Unsqueeze, Identity) or an int64 Cast. */
  const same = (kind: ValueKind, shape: number[]) => computed(kind, shape, [0], ([v]) => v!);
  switch (node.opType) {
    case 'Add':
    case 'Sub':
    case 'Mul':
    case 'Div': {
      const a = input(0);
      const b = input(1);
      const out = broadcastShapes(a.shape, b.shape);
      if (!out)
        fail(node, index, `has inputs of shapes [${a.shape}] and [${b.shape}], which do not broadcast`);
      if (a.kind === 'int64' && b.kind === 'int64')
        return computed('int64', out, [0, 1], ([x, y]) =>
          broadcastInts(node.opType, x!, a.shape, y!, b.shape, out),
        );
      floatInput(0);
      floatInput(1);
      return [float(out)];
    }
    case 'Pow': {
      const a = floatInput(0);
      const b = input(1);
      if (b.kind === 'bool') fail(node, index, 'has a bool exponent');
      const out = broadcastShapes(a, b.shape);
      if (!out) fail(node, index, 'has inputs that do not broadcast');
      return [float(out)];
    }
    case 'Greater':
    case 'Less':
    case 'GreaterOrEqual':
    case 'LessOrEqual':
    case 'Equal': {
      const a = input(0);
      const b = input(1);
      if (a.kind !== b.kind) fail(node, index, `compares ${a.kind} with ${b.kind}`);
      const out = broadcastShapes(a.shape, b.shape);
      if (!out) fail(node, index, 'has inputs that do not broadcast');
      if (a.kind !== 'int64') return [{ kind: 'bool', shape: out }];
      return computed('bool', out, [0, 1], ([x, y]) =>
        broadcastInts(node.opType, x!, a.shape, y!, b.shape, out),
      );
    }
    case 'Not':
    case 'And':
    case 'Or': {
      const shapes = node.input.map((_, k) => {
        const v = input(k);
        if (v.kind !== 'bool') fail(node, index, `input ${k} is ${v.kind}, expected bool`);
        return v.shape;
      });
      const out = shapes.reduce<number[] | undefined>((s, t) => s && broadcastShapes(s, t), []);
      if (!out) fail(node, index, 'has inputs that do not broadcast');
      if (node.opType === 'Not') return computed('bool', out, [0], ([v]) => v!.map((b) => (b ? 0 : 1)));
      const [a, b] = shapes as [number[], number[]];
      return computed('bool', out, [0, 1], ([x, y]) => broadcastInts(node.opType, x!, a, y!, b, out));
    }
    case 'Where': {
      const c = input(0);
      if (c.kind !== 'bool') fail(node, index, `has a ${c.kind} condition, expected bool`);
      const a = input(1);
      const b = input(2);
      if (a.kind !== b.kind || a.kind === 'bool')
        fail(node, index, `selects between ${a.kind} and ${b.kind}`);
      const out = broadcastShapes(broadcastShapes(c.shape, a.shape) ?? [-1], b.shape);
      if (!out || out.includes(-1)) fail(node, index, 'has inputs that do not broadcast');
      return [{ kind: a.kind, shape: out }];
    }
    case 'Cast': {
      const v = input(0);
      const to = intAttribute(node, 'to', 0);
      const out = [...v.shape];
      const fromHost = v.kind !== 'float';
      if (to === TensorProto_DataType.INT64)
        return fromHost ? same('int64', out) : [{ kind: 'int64', shape: out }];
      if (to === TensorProto_DataType.BOOL)
        return fromHost
          ? computed('bool', out, [0], ([x]) => x!.map((b) => (b ? 1 : 0)))
          : [{ kind: 'bool', shape: out }];
      if (to === graph.floatType) return fromHost ? same('float', out) : [float(out)];
      return fail(
        node,
        index,
        `casts to data type ${to}; only the model's float type, int64 and bool are supported`,
      );
    }
    case 'Shape': {
      const shape = input(0).shape;
      const rank = shape.length;
      const clamp = (a: number) => Math.min(rank, Math.max(0, a < 0 ? a + rank : a));
      const start = clamp(intAttribute(node, 'start', 0));
      const end = clamp(intAttribute(node, 'end', rank));
      const dims = shape.slice(start, Math.max(start, end));
      return folded([dims.length], dims);
    }
    case 'ConstantOfShape': {
      const shape = constant(0);
      // A negative, fractional or huge size would be a RangeError below or an allocation ORT fails.
      const bad = shape.findIndex((d) => !Number.isSafeInteger(d) || d < 0);
      if (bad >= 0) fail(node, index, `has a shape [${shape}] whose dimension ${bad} is not a size >= 0`);
      const t = findAttribute(node, 'value')?.t;
      const limit = t?.dataType === TensorProto_DataType.INT64 ? MAX_FOLDED_ELEMENTS : MAX_VALUE_ELEMENTS;
      if (size(shape) > limit)
        fail(
          node,
          index,
          `has a shape [${shape}] of ${size(shape)} elements, more than the ${limit} allowed for one value`,
        );
      const values = t ? tensorValues(t) : [0];
      if (values?.length !== 1) fail(node, index, 'has a value that is not one float or int64');
      const type = t?.dataType ?? TensorProto_DataType.FLOAT;
      if (type === TensorProto_DataType.INT64)
        return folded([...shape], new Array<number>(size(shape)).fill(values[0]!));
      if (type !== graph.floatType)
        fail(node, index, "has a value of another type than the model's float type");
      return [float([...shape])];
    }
    case 'Gather': {
      const data = input(0);
      const indices = input(1);
      if (indices.kind !== 'int64') fail(node, index, `has ${indices.kind} indices, expected int64`);
      if (data.kind === 'bool') fail(node, index, 'gathers from a bool tensor');
      const rank = data.shape.length;
      const axis = normaliseAxis(intAttribute(node, 'axis', 0), rank);
      if (axis < 0 || axis >= rank)
        fail(node, index, `has axis ${intAttribute(node, 'axis', 0)} out of range`);
      const out = [...data.shape.slice(0, axis), ...indices.shape, ...data.shape.slice(axis + 1)];
      const idx = graph.intConstants.get(node.input[1]!);
      // A forward model's indices must be constants or come from its int64 inputs (directly or
      // computed on the host), so that OnnxTrainer can check them against the table before a step:
      // out of range, ORT fails untyped on the CPU and reads garbage rows on WebGPU.
      if (index !== undefined && !idx && !graph.hostValues.has(node.input[1]!))
        fail(
          node,
          index,
          `has indices "${node.input[1]}" computed inside the model (from float values, e.g. a Cast of a float input), which cannot be checked against the table's ${data.shape[axis]} rows before a step; feed them as an int64 input`,
        );
      const limit = graph.indexLimits.get(node.input[1]!);
      graph.indexLimits.set(node.input[1]!, Math.min(limit ?? Infinity, data.shape[axis]!));
      if (idx?.some((i) => i < -data.shape[axis]! || i >= data.shape[axis]!))
        fail(node, index, `has an index out of range for axis ${axis} of size ${data.shape[axis]}`);
      if (data.kind === 'float') return [float(out)];
      return computed('int64', out, [0, 1], ([values, indices]) =>
        gatherInts(values!, data.shape, axis, indices!),
      );
    }
    case 'Unsqueeze': {
      const v = input(0);
      const rank = v.shape.length;
      const axes = constant(1).map((a) => normaliseAxis(a, rank + constant(1).length));
      const out: number[] = [];
      let k = 0;
      for (let i = 0; i < rank + axes.length; i++) out.push(axes.includes(i) ? 1 : v.shape[k++]!);
      if (k !== rank || new Set(axes).size !== axes.length)
        fail(node, index, `has axes [${constant(1)}] out of range`);
      return v.kind === 'float' ? [float(out)] : same(v.kind, out);
    }
    case 'Squeeze': {
      const v = input(0);
      const given = optionalConstant(1)?.map((a) => normaliseAxis(a, v.shape.length));
      if (given?.some((a) => v.shape[a] !== 1))
        fail(node, index, `squeezes an axis of [${v.shape}] that is not 1`);
      const out = v.shape.filter((d, i) => (given ? !given.includes(i) : d !== 1));
      return v.kind === 'float' ? [float(out)] : same(v.kind, out);
    }
    case 'Concat': {
      const all = node.input.map((_, k) => input(k));
      const kind = all[0]!.kind;
      const rank = all[0]!.shape.length;
      const axis = normaliseAxis(intAttribute(node, 'axis', 0), rank);
      if (axis < 0 || axis >= rank) fail(node, index, 'has an axis out of range');
      for (const v of all)
        if (
          v.kind !== kind ||
          v.shape.length !== rank ||
          v.shape.some((d, i) => i !== axis && d !== all[0]!.shape[i])
        )
          fail(
            node,
            index,
            `joins inputs of shapes ${all.map((a) => `[${a.shape}]`).join(', ')} along axis ${axis}`,
          );
      const out = [...all[0]!.shape];
      out[axis] = all.reduce((s, v) => s + v.shape[axis]!, 0);
      if (kind !== 'int64') return [{ kind, shape: out }];
      return computed(
        'int64',
        out,
        node.input.map((_, k) => k),
        (values) =>
          concatInts(
            values,
            all.map((a) => a.shape),
            axis,
          ),
      );
    }
    case 'Slice': {
      const v = input(0);
      const s = sliceOf(node, index, v.shape, graph);
      return v.kind === 'int64'
        ? computed('int64', s.shape, [0], ([values]) => sliceInts(values!, v.shape, s))
        : [{ kind: v.kind, shape: s.shape }];
    }
    case 'LayerNormalization': {
      const x = floatInput(0);
      const axis = normaliseAxis(intAttribute(node, 'axis', -1), x.length);
      if (axis < 0 || axis >= x.length) fail(node, index, 'has an axis out of range');
      const normalised = x.slice(axis);
      for (const k of [1, 2]) {
        if (!node.input[k]) continue;
        const p = floatInput(k);
        const b = broadcastShapes(p, normalised);
        if (!b || !sameShape(b, normalised))
          fail(
            node,
            index,
            `has ${k === 1 ? 'Scale' : 'B'} of shape [${p}], which does not broadcast to [${normalised}]`,
          );
      }
      const stats = x.map((d, i) => (i < axis ? d : 1));
      return [float([...x]), float(stats), float([...stats])];
    }
    // Only in gradients this package writes (Gather's and Slice's).
    case 'ScatterND':
      return [float([...floatInput(0)])];
    case 'Identity': {
      const v = input(0);
      return v.kind === 'float' ? [float([...v.shape])] : same(v.kind, [...v.shape]);
    }
    case 'Softmax':
    case 'LogSoftmax': {
      const shape = floatInput(0);
      const axis = normaliseAxis(intAttribute(node, 'axis', -1), shape.length);
      if (axis < 0 || axis >= shape.length)
        fail(node, index, `has axis ${intAttribute(node, 'axis', -1)} out of range`);
      return [float([...shape])];
    }
    case 'MatMul': {
      const a = floatInput(0);
      const b = floatInput(1);
      if (a.length === 0 || b.length === 0) fail(node, index, 'has a 0-d operand');
      const a2 = a.length === 1 ? [1, a[0]!] : a;
      const b2 = b.length === 1 ? [b[0]!, 1] : b;
      if (a2.at(-1) !== b2.at(-2)) fail(node, index, `multiplies [${a}] by [${b}]: inner dimensions differ`);
      const batch = broadcastShapes(a2.slice(0, -2), b2.slice(0, -2));
      if (!batch) fail(node, index, `has batch dimensions [${a}] and [${b}] that do not broadcast`);
      const out = [
        ...batch,
        ...(a.length === 1 ? [] : [a2.at(-2)!]),
        ...(b.length === 1 ? [] : [b2.at(-1)!]),
      ];
      return [float(out)];
    }
    case 'Gemm': {
      const a = floatInput(0);
      const b = floatInput(1);
      if (a.length !== 2 || b.length !== 2) fail(node, index, 'has an operand that is not 2-D');
      const [m, k] = intAttribute(node, 'transA', 0) ? [a[1]!, a[0]!] : [a[0]!, a[1]!];
      const [k2, n] = intAttribute(node, 'transB', 0) ? [b[1]!, b[0]!] : [b[0]!, b[1]!];
      if (k !== k2) fail(node, index, `multiplies [${a}] by [${b}]: inner dimensions differ`);
      if (node.input[2]) {
        const c = floatInput(2);
        const out = broadcastShapes(c, [m, n]);
        if (!out || !sameShape(out, [m, n]))
          fail(node, index, `has C of shape [${c}], which does not broadcast to [${m},${n}]`);
      }
      return [float([m, n])];
    }
    case 'ReduceSum':
    case 'ReduceMean':
    case 'ReduceLogSumExp': {
      const shape = floatInput(0);
      const axes = reduceAxes(node, index, graph);
      if (axes === 'none') return [float([...shape])];
      const keep = intAttribute(node, 'keepdims', 1) === 1;
      const reduced = (i: number) => axes === 'all' || axes.includes(i);
      if (axes !== 'all' && axes.some((a) => a < 0 || a >= shape.length))
        fail(node, index, 'has an axis out of range');
      const out = keep ? shape.map((d, i) => (reduced(i) ? 1 : d)) : shape.filter((_, i) => !reduced(i));
      return [float(out)];
    }
    case 'Reshape': {
      const v = input(0);
      const shape = v.shape;
      const target = constant(1);
      const allowZero = intAttribute(node, 'allowzero', 0) === 1;
      const out = target.map((d, i) => (d === 0 && !allowZero ? shape[i]! : d));
      const known = out.filter((d) => d !== -1);
      if (out.length - known.length > 1) fail(node, index, 'has more than one -1 in its shape');
      if (out.includes(-1)) {
        const rest = size(known);
        if (rest === 0 || size(shape) % rest !== 0)
          fail(node, index, `cannot reshape [${shape}] to [${target}]`);
        out[out.indexOf(-1)] = size(shape) / rest;
      }
      if (size(out) !== size(shape)) fail(node, index, `cannot reshape [${shape}] to [${target}]`);
      return v.kind === 'float' ? [float(out)] : same(v.kind, out);
    }
    case 'Expand': {
      const v = input(0);
      const shape = v.shape;
      const out = broadcastShapes(shape, constant(1));
      if (!out) fail(node, index, 'has a shape that does not broadcast');
      return [{ kind: v.kind, shape: out }];
    }
    case 'Transpose': {
      const shape = floatInput(0);
      const perm = intsAttribute(node, 'perm') ?? shape.map((_, i) => shape.length - 1 - i);
      if (perm.length !== shape.length || [...perm].sort((a, b) => a - b).some((p, i) => p !== i))
        fail(node, index, `has perm [${perm}], not a permutation of ${shape.length} axes`);
      return [float(perm.map((p) => shape[p]!))];
    }
    case 'Flatten': {
      const shape = floatInput(0);
      const axis = normaliseAxis(intAttribute(node, 'axis', 1), shape.length);
      if (axis < 0 || axis > shape.length) fail(node, index, 'has an axis out of range');
      return [float([size(shape.slice(0, axis)), size(shape.slice(axis))])];
    }
    case 'Constant': {
      const a = node.attribute.length === 1 ? node.attribute[0]! : undefined;
      switch (a?.name) {
        case 'value_int':
          return folded([], [Number(a.i)]);
        case 'value_ints':
          return folded(
            [a.ints.length],
            a.ints.map((v) => Number(v)),
          );
        case 'value_float':
        case 'value_floats':
          // float32 by definition: a float64 model cannot use them.
          if (graph.floatType !== TensorProto_DataType.FLOAT)
            fail(node, index, 'holds a float32 constant in a model of another float type');
          return [float(a.name === 'value_float' ? [] : [a.floats.length])];
      }
      const t = a?.name === 'value' ? a.t : undefined;
      const values = t ? tensorValues(t) : undefined;
      if (!t || !values)
        fail(
          node,
          index,
          'must hold a float or int64 tensor in its "value" attribute (or value_int(s), value_float(s))',
        );
      const shape = t.dims.map((d) => Number(d));
      if (t.dataType === TensorProto_DataType.INT64) return folded(shape, values);
      if (t.dataType === TensorProto_DataType.BOOL) {
        graph.intConstants.set(node.output[0]!, values);
        return [{ kind: 'bool', shape }];
      }
      if (t.dataType !== graph.floatType)
        fail(node, index, "holds a tensor of another float type than the model's");
      return [float(shape)];
    }
    default:
      fail(node, index, 'has no shape rule');
  }
}

/** A Slice node's per-axis starts and steps (after ONNX's clamping) and its output shape. */
export interface SliceBounds {
  shape: number[];
  /** Per axis of the input: first index taken and step (0 and 1 for axes not sliced). */
  starts: number[];
  steps: number[];
}

/** Static bounds of a Slice (starts, ends, axes, steps must be constants), clamped as ONNX specifies. */
export function sliceOf(
  node: NodeProto,
  index: number | undefined,
  shape: readonly number[],
  graph: GraphBuilder,
): SliceBounds {
  const get = (k: number) => {
    const name = node.input[k];
    if (!name) return undefined;
    const values = graph.intConstants.get(name);
    if (!values)
      fail(node, index, `input ${k} ("${name}") must be an int64 constant (or computed from shapes)`);
    return values;
  };
  const starts = get(1);
  const ends = get(2);
  if (!starts || !ends || starts.length !== ends.length)
    fail(node, index, 'needs starts and ends of one length');
  const rank = shape.length;
  const axes = (get(3) ?? starts.map((_, i) => i)).map((a) => normaliseAxis(a, rank));
  const steps = get(4) ?? starts.map(() => 1);
  if (axes.length !== starts.length || steps.length !== starts.length)
    fail(node, index, 'has axes or steps of another length than starts');
  if (axes.some((a) => a < 0 || a >= rank) || new Set(axes).size !== axes.length)
    fail(node, index, `has axes [${axes}] out of range or repeated`);
  const out: SliceBounds = { shape: [...shape], starts: shape.map(() => 0), steps: shape.map(() => 1) };
  axes.forEach((axis, i) => {
    const d = shape[axis]!;
    const step = steps[i]!;
    if (step === 0) fail(node, index, 'has a step of 0');
    let start = starts[i]! < 0 ? starts[i]! + d : starts[i]!;
    let end = ends[i]! < 0 ? ends[i]! + d : ends[i]!;
    if (step > 0) {
      start = Math.min(d, Math.max(0, start));
      end = Math.min(d, Math.max(0, end));
    } else {
      start = Math.min(d - 1, Math.max(0, start));
      end = Math.min(d - 1, Math.max(-1, end));
    }
    out.shape[axis] = Math.max(0, Math.ceil((end - start) / step));
    out.starts[axis] = start;
    out.steps[axis] = step;
  });
  return out;
}

/** Row-major strides of a shape. */
function strides(shape: readonly number[]): number[] {
  const out = new Array<number>(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) out[i] = out[i + 1]! * shape[i + 1]!;
  return out;
}

/** Calls `visit` with each multi-index of `shape` in row-major order. */
function eachIndex(shape: readonly number[], visit: (index: number[]) => void): void {
  const total = size(shape);
  const index = new Array<number>(shape.length).fill(0);
  for (let n = 0; n < total; n++) {
    visit(index);
    for (let i = shape.length - 1; i >= 0; i--) {
      if (++index[i]! < shape[i]!) break;
      index[i] = 0;
    }
  }
}

/**
 * Elementwise ops on int64 (and bool, as 0/1) values, as ONNX defines them; int64 Div truncates
 * toward zero, as ONNX Runtime's integer division does.
 */
const INT_OPS: Readonly<Record<string, (x: number, y: number) => number>> = {
  Add: (x, y) => x + y,
  Sub: (x, y) => x - y,
  Mul: (x, y) => x * y,
  // + 0: an int64 has no -0 (Math.trunc(-0.5) is -0).
  Div: (x, y) => Math.trunc(x / y) + 0,
  Equal: (x, y) => Number(x === y),
  Greater: (x, y) => Number(x > y),
  GreaterOrEqual: (x, y) => Number(x >= y),
  Less: (x, y) => Number(x < y),
  LessOrEqual: (x, y) => Number(x <= y),
  And: (x, y) => Number(x !== 0 && y !== 0),
  Or: (x, y) => Number(x !== 0 || y !== 0),
  Max: (x, y) => Math.max(x, y),
  Min: (x, y) => Math.min(x, y),
};

export function broadcastInts(
  op: string,
  a: number[],
  aShape: number[],
  b: number[],
  bShape: number[],
  out: number[],
): number[] {
  const apply = INT_OPS[op];
  if (!apply) throw new Error(`internal: no int64 evaluation of ${op}`);
  // Per operand: the stride of each output axis into it (0 where it is broadcast).
  const strided = (shape: number[]) => {
    const st = strides(shape);
    const offset = out.length - shape.length;
    return out.map((_, i) => (i < offset || shape[i - offset] === 1 ? 0 : st[i - offset]!));
  };
  const sa = strided(aShape);
  const sb = strided(bShape);
  const result: number[] = [];
  eachIndex(out, (index) => {
    let ia = 0;
    let ib = 0;
    for (let i = 0; i < index.length; i++) {
      ia += index[i]! * sa[i]!;
      ib += index[i]! * sb[i]!;
    }
    result.push(apply(a[ia]!, b[ib]!));
  });
  return result;
}

function gatherInts(values: number[], shape: number[], axis: number, indices: number[]): number[] {
  const outer = size(shape.slice(0, axis));
  const inner = size(shape.slice(axis + 1));
  const result: number[] = [];
  for (let o = 0; o < outer; o++)
    for (const raw of indices) {
      const i = raw < 0 ? raw + shape[axis]! : raw;
      const base = (o * shape[axis]! + i) * inner;
      for (let k = 0; k < inner; k++) result.push(values[base + k]!);
    }
  return result;
}

function concatInts(values: number[][], shapes: number[][], axis: number): number[] {
  const outer = size(shapes[0]!.slice(0, axis));
  const result: number[] = [];
  for (let o = 0; o < outer; o++)
    values.forEach((v, k) => {
      const chunk = size(shapes[k]!.slice(axis));
      result.push(...v.slice(o * chunk, (o + 1) * chunk));
    });
  return result;
}

function sliceInts(values: number[], shape: number[], s: SliceBounds): number[] {
  const st = strides(shape);
  const result: number[] = [];
  eachIndex(s.shape, (index) => {
    result.push(values[index.reduce((sum, i, a) => sum + (s.starts[a]! + i * s.steps[a]!) * st[a]!, 0)]!);
  });
  return result;
}
