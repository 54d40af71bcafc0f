import type { Batch, OnnxTrainer } from '../train-step/onnx-trainer.js';

/**
 * Steps two trainers of the same model on the same batches (say one runtime against a reference
 * one); returns the worst relative loss difference, and the worst absolute parameter difference
 * and running-statistic difference (BatchNormalization with training_mode=1; 0 without any) after
 * the last step, with the number of running statistics compared.
 */
export async function lockstep(
  trainer: OnnxTrainer,
  reference: OnnxTrainer,
  batches: readonly { batch: Batch; labels: Float32Array }[],
): Promise<{ loss: number; params: number; statistics: number; statisticCount: number }> {
  let loss = 0;
  for (const { batch, labels } of batches) {
    const a = await trainer.step(batch, labels);
    const b = await reference.step(batch, labels);
    loss = Math.max(loss, Math.abs(a - b) / Math.abs(b));
  }
  const mine = await trainer.read();
  const theirs = await reference.read();
  const worst = (a: Map<string, Float32Array>, b: Map<string, Float32Array>) => {
    let diff = 0;
    for (const [name, values] of a) {
      const other = b.get(name)!;
      // NaN-safe: a NaN difference is the worst.
      for (let i = 0; i < values.length; i++) {
        const d = Math.abs(values[i]! - other[i]!);
        diff = Number.isNaN(d) ? Number.POSITIVE_INFINITY : Math.max(diff, d);
      }
    }
    return diff;
  };
  return {
    loss,
    params: worst(mine.params, theirs.params),
    statistics: worst(mine.statistics, theirs.statistics),
    statisticCount: mine.statistics.size,
  };
}
