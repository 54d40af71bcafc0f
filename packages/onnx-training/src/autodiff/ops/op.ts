import type { ShapeContext, ValueShape } from '../graph.js';
import type { BackwardRule } from '../rules.js';

/**
 * One op, whole: how its outputs' shapes follow from its inputs (and, for int64 values, how they
 * are computed on the host, through ShapeContext.computed), and its backward rule. An op family
 * (./conv.ts, ./pool.ts, ...) exports a record of these; ./index.ts registers every family in one
 * table that graph.ts (shape inference, lowering) and rules.ts (BACKWARD_RULES) both read, so
 * adding an op touches one file and a reviewer sees it whole.
 */
export interface OpModule {
  /** Output shapes, or `c.fail(...)` naming what is wrong. */
  infer(c: ShapeContext): ValueShape[];
  /**
   * The backward rule. Absent when `lower` always writes the op as other ops, whose rules then
   * give its gradient.
   */
  backward?: BackwardRule;
  /**
   * Writes the node as other nodes (added with `c.graph.addNode`, producing the node's own output
   * names) and returns true; false keeps the node itself. Used where ONNX Runtime has no kernel
   * for a form of the op on every execution provider (BatchNormalization's training_mode=1).
   */
  lower?(c: ShapeContext): boolean;
  /** Attributes ONNX declares FLOAT: a model that writes them as INT is refused, as ORT would. */
  floatAttributes?: readonly string[];
}

export type OpFamily = Readonly<Record<string, OpModule>>;
