import type { OptimizerName } from './optimizers.js';

export interface MnistPreset {
  name: 'quick' | 'full';
  /** The first `trainCount` training images are used (60,000: all). */
  trainCount: number;
  epochs: number;
  batchSize: number;
  /** Learning rates per optimizer (AccSGD's kappa, xi and smallConst are fixed: ACCSGD_SETTINGS). */
  lrs: Record<OptimizerName, readonly number[]>;
  /** Also train AccSGD's best setting on the tfjs cpu backend, to compare with wasm. */
  cpuCheck: boolean;
  /**
   * Also train AccSGD's best setting as an ONNX Runtime train step (@accsgd/onnx-training's
   * OnnxTrainer on onnxruntime-node cpu), from the same weights and batches. Absent in reports
   * written before it existed.
   */
  onnxCheck?: boolean;
}

export const MNIST_PRESETS: Record<'quick' | 'full', MnistPreset> = {
  quick: {
    name: 'quick',
    trainCount: 10_000,
    epochs: 2,
    batchSize: 100,
    lrs: { AccSGD: [0.3], SGD: [0.3], Momentum: [0.03], Nesterov: [0.03], Adam: [0.001] },
    cpuCheck: false,
    onnxCheck: true, // about 1 s here (200 steps); `--onnx no` skips it
  },
  full: {
    name: 'full',
    trainCount: 60_000,
    epochs: 5,
    batchSize: 100,
    // AccSGD's lr is set as SGD's (the authors' advice), so the two share a grid; heavy ball and
    // Nesterov take a tenth of it (momentum 0.9 multiplies the steady-state step by 10).
    lrs: {
      AccSGD: [0.1, 0.3, 1],
      SGD: [0.1, 0.3, 1],
      Momentum: [0.01, 0.03, 0.1],
      Nesterov: [0.01, 0.03, 0.1],
      Adam: [0.0003, 0.001, 0.003],
    },
    cpuCheck: true,
    onnxCheck: true,
  },
};
