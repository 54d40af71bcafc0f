import type { MnistSplit } from './idx.js';
import { CLASSES, INPUTS } from './model.js';
import { permutation, Rng } from './random.js';

export interface Batch {
  /** batchSize x 784 pixels in [0, 1]. */
  x: Float32Array;
  /** batchSize x 10 float one-hot labels. */
  labels: Float32Array;
}

/**
 * Seeded shuffled mini-batches: epoch e uses the e-th permutation drawn from one generator seeded
 * with `seed`, cut into floor(count / batchSize) full batches (the remainder, different images each
 * epoch, is left out: the train step is built for one static batch size).
 */
export class BatchSchedule {
  private readonly rng: Rng;
  private readonly perms: Uint32Array[] = [];

  constructor(
    readonly split: MnistSplit,
    readonly batchSize: number,
    seed: number,
  ) {
    if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > split.count)
      throw new Error(`batch size ${batchSize} does not fit ${split.count} images`);
    this.rng = new Rng(seed);
  }

  get stepsPerEpoch(): number {
    return Math.floor(this.split.count / this.batchSize);
  }

  /** Batch `step` (0-based) of epoch `epoch` (0-based); the same arguments give the same batch. */
  batch(epoch: number, step: number): Batch {
    while (this.perms.length <= epoch) this.perms.push(permutation(this.rng, this.split.count));
    const perm = this.perms[epoch]!;
    const b = this.batchSize;
    const x = new Float32Array(b * INPUTS);
    const labels = new Float32Array(b * CLASSES);
    for (let r = 0; r < b; r++) {
      const i = perm[step * b + r]!;
      x.set(this.split.x.subarray(i * INPUTS, (i + 1) * INPUTS), r * INPUTS);
      labels[r * CLASSES + this.split.y[i]!] = 1;
    }
    return { x, labels };
  }
}
