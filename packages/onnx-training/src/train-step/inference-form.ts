import { AccSGDConfigError } from '@accsgd/core';
import type { ModelProto } from 'onnx-buf';
import { describeNode } from '../autodiff/graph.js';
import { intAttribute } from '../autodiff/proto.js';

/**
 * Rewrites, in place, every BatchNormalization with training_mode=1 of `model`'s graph into its
 * inference form (no training_mode, only the output Y): it then normalises with its running
 * statistics, as a PyTorch module does after model.eval(). ONNX Runtime runs training_mode=1 with
 * the batch's statistics, so a training-mode export would otherwise make each row's prediction
 * depend on the rest of the batch. AccSGDConfigError, changing nothing, if a running-statistics
 * output is read by another node or is a graph output: dropping it would break the graph.
 */
export function toInferenceForm(model: ModelProto): void {
  const graph = model.graph!;
  const read = new Set([...graph.node.flatMap((n) => n.input), ...graph.output.map((o) => o.name)]);
  const targets = graph.node.flatMap((node, i) =>
    node.opType === 'BatchNormalization' &&
    (node.domain === '' || node.domain === 'ai.onnx') &&
    intAttribute(node, 'training_mode', 0) === 1
      ? [{ node, i }]
      : [],
  );
  for (const { node, i } of targets) {
    const used = node.output.slice(1).find((o) => o !== '' && read.has(o));
    if (used !== undefined)
      throw new AccSGDConfigError(
        describeNode(node, i),
        used,
        'running-statistics outputs that no node reads and that are not graph outputs',
        `has its running-statistics output "${used}" read by the model, so it has no inference form; export without { inference: true }`,
      );
  }
  const dropped = new Set<string>();
  for (const { node } of targets) {
    for (const o of node.output.slice(1)) if (o !== '') dropped.add(o);
    node.output = node.output.slice(0, 1);
    node.attribute = node.attribute.filter((a) => a.name !== 'training_mode');
  }
  graph.valueInfo = graph.valueInfo.filter((v) => !dropped.has(v.name));
}
