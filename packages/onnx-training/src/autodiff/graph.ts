import { AccSGDConfigError } from '@accsgd/core';
import { type NodeProto, type TensorProto, TensorProto_DataType } from 'onnx-buf';
import {
  type AttributeValue,
  attribute,
  type FloatType,
  floatTensor,
  int64Tensor,
  intAttribute,
  intsAttribute,
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

  /** Appends a node (forward model's or own), inferring its outputs' shapes. */
  addNode(node: NodeProto, index: number | undefined): void {
    const outputs = inferNode(node, index, this);
    node.output.forEach((name, k) => {
      if (name !== '') this.declare(name, outputs[k]!);
    });
    this.nodes.push(node);
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

  int64Constant(values: readonly number[]): string {
    const name = this.fresh('const_i64');
    this.initializers.push(int64Tensor(name, [values.length], values));
    this.declare(name, { kind: 'int64', shape: [values.length] });
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

/** Output shapes of one node, or AccSGDConfigError naming the node. */
function inferNode(node: NodeProto, index: number | undefined, graph: GraphBuilder): ValueShape[] {
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
    const values = graph.intConstants.get(node.input[k] ?? '');
    if (!values)
      fail(
        node,
        index,
        `input ${k} ("${node.input[k]}") must be an int64 constant (initializer or Constant node)`,
      );
    return values;
  };
  switch (node.opType) {
    case 'Add':
    case 'Sub':
    case 'Mul':
    case 'Div': {
      const out = broadcastShapes(floatInput(0), floatInput(1));
      if (!out)
        fail(
          node,
          index,
          `has inputs of shapes [${floatInput(0)}] and [${floatInput(1)}], which do not broadcast`,
        );
      return [float(out)];
    }
    case 'Greater': {
      const out = broadcastShapes(floatInput(0), floatInput(1));
      if (!out) fail(node, index, 'has inputs that do not broadcast');
      return [{ kind: 'bool', shape: out }];
    }
    case 'Where': {
      const c = input(0);
      const out = broadcastShapes(broadcastShapes(c.shape, floatInput(1)) ?? [], floatInput(2));
      if (!out) fail(node, index, 'has inputs that do not broadcast');
      return [float(out)];
    }
    case 'Neg':
    case 'Relu':
    case 'Tanh':
    case 'Sigmoid':
    case 'Exp':
    case 'Log':
    case 'Sqrt':
    case 'Identity':
      return [float([...floatInput(0)])];
    case 'Softmax': {
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
      const shape = floatInput(0);
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
      return [float(out)];
    }
    case 'Expand': {
      const shape = floatInput(0);
      const out = broadcastShapes(shape, constant(1));
      if (!out) fail(node, index, 'has a shape that does not broadcast');
      return [float(out)];
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
      const a = node.attribute.find((x) => x.name === 'value');
      const t = a?.t;
      const values = t ? tensorValues(t) : undefined;
      if (!t || !values || node.attribute.length !== 1)
        fail(node, index, 'must hold a float or int64 tensor in its "value" attribute');
      const shape = t.dims.map((d) => Number(d));
      if (t.dataType === TensorProto_DataType.INT64) {
        graph.intConstants.set(node.output[0]!, values);
        return [{ kind: 'int64', shape }];
      }
      if (t.dataType !== graph.floatType)
        fail(node, index, "holds a tensor of another float type than the model's");
      return [float(shape)];
    }
    default:
      fail(node, index, 'has no shape rule');
  }
}
