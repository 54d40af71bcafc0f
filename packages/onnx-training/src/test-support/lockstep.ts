import type { Batch, OnnxTrainer } from '../train-step/onnx-trainer.js';

/**
 * Steps two trainers of the same model on the same batches (say one runtime against a reference
 * one); returns the worst relative loss difference, and the worst absolute parameter difference
 * after the last step.
 */
export async function lockstep(
  trainer: OnnxTrainer,
  reference: OnnxTrainer,
  batches: readonly { batch: Batch; labels: Float32Array }[],
): Promise<{ loss: number; params: number }> {
  let loss = 0;
  for (const { batch, labels } of batches) {
    const a = await trainer.step(batch, labels);
    const b = await reference.step(batch, labels);
    loss = Math.max(loss, Math.abs(a - b) / Math.abs(b));
  }
  const mine = (await trainer.read()).params;
  const theirs = (await reference.read()).params;
  let params = 0;
  for (const [name, values] of mine) {
    const other = theirs.get(name)!;
    for (let i = 0; i < values.length; i++) params = Math.max(params, Math.abs(values[i]! - other[i]!));
  }
  return { loss, params };
}
