import type { AttributeProto } from 'onnx-buf';
import type { GraphBuilder } from '../graph.js';
import { type AttributeValue, attribute, makeNode } from '../proto.js';
import type { RuleContext } from '../rules.js';

/** Input k's name. */
export const x = (c: RuleContext, k: number) => c.node.input[k]!;
/** Output k's name. */
export const y = (c: RuleContext, k = 0) => c.node.output[k]!;
/** A name hint for input k's gradient. */
export const hint = (c: RuleContext, k: number) => `${x(c, k)}_grad`;
export const zero = (g: GraphBuilder) => g.floatConstant([0]);
export const one = (g: GraphBuilder) => g.floatConstant([1]);

/** dY broadcast back: the gradient of a broadcasting op with respect to input k. */
export const reduceTo = (c: RuleContext, k: number, term: string) =>
  c.g.sumToShape(term, c.g.shape(x(c, k)), hint(c, k));

/** Where(condition, a, b) with the condition computed by a comparison op. */
export function select(
  c: RuleContext,
  compare: 'Greater' | 'Less' | 'Equal' | 'GreaterOrEqual' | 'LessOrEqual',
  left: string,
  right: string,
  then: string,
  otherwise: string,
  name: string,
): string {
  const mask = c.g.op(compare, [left, right], `${name}_mask`);
  return c.g.op('Where', [mask, then, otherwise], name);
}

/**
 * Adds a node producing the given output names (a lowered op's last step writes the original
 * node's outputs), inferred like any other.
 */
export function addNamed(
  g: GraphBuilder,
  index: number | undefined,
  opType: string,
  inputs: readonly string[],
  outputs: readonly string[],
  /** Attribute values, or AttributeProtos as they are (a FLOAT that may be whole: floatAttribute). */
  attrs: Record<string, AttributeValue | AttributeProto> = {},
): void {
  const name = g.fresh(`${outputs[0]}_${opType}`);
  g.addNode(
    makeNode(
      opType,
      inputs,
      outputs,
      name,
      Object.entries(attrs).map(([k, v]) =>
        (v as AttributeProto).$typeName === 'onnx.AttributeProto'
          ? (v as AttributeProto)
          : attribute(k, v as AttributeValue),
      ),
    ),
    index,
  );
}
