import type { MappingPreset } from './mapping.js';
import type { OptimizerName } from './optimizers.js';

/** The conv net's comparison: the same protocol as the MLP's, on fewer images (it is slower per image). */
export interface ConvPreset {
  /** The first this many of the MLP's training images. */
  trainCount: number;
  epochs: number;
  lrs: Record<OptimizerName, readonly number[]>;
  /** Also train AccSGD's chosen setting through OnnxTrainer on onnxruntime-node cpu. */
  onnxCheck: boolean;
}

export interface MnistPreset {
  name: 'quick' | 'full';
  /** Training images carved out as the validation split (the settings are chosen on it). */
  validationCount: number;
  /** Seed of the validation split (the same for every run of a report). */
  splitSeed: number;
  /** Training images used, from those left after the validation split. */
  trainCount: number;
  epochs: number;
  batchSize: number;
  /** Learning rates per optimizer (AccSGD's kappa, xi and smallConst are fixed: ACCSGD_SETTINGS). */
  lrs: Record<OptimizerName, readonly number[]>;
  /** Seeds (initial weights and batch order) of the chosen settings; the sweep uses the first. */
  seeds: readonly number[];
  /** Also train AccSGD's chosen setting on the tfjs cpu backend, to compare with wasm. */
  cpuCheck: boolean;
  /**
   * Also train AccSGD's chosen setting as an ONNX Runtime train step (@accsgd/onnx-training's
   * OnnxTrainer on onnxruntime-node cpu), from the same weights and batches.
   */
  onnxCheck?: boolean;
  /** The momentum-to-AccSGD sweep on the MLP (absent: not run). */
  mapping?: MappingPreset;
  /** The same sweep on the conv net (absent: not run). */
  convMapping?: MappingPreset;
  /** The LeNet-style conv net's comparison (absent: not run). */
  conv?: ConvPreset;
}

export const MNIST_PRESETS: Record<'quick' | 'full', MnistPreset> = {
  quick: {
    name: 'quick',
    validationCount: 10_000,
    splitSeed: 2018,
    trainCount: 10_000,
    epochs: 2,
    batchSize: 100,
    lrs: { AccSGD: [0.3], SGD: [0.3], Momentum: [0.03], Nesterov: [0.03], Adam: [0.001] },
    seeds: [1, 2, 3],
    cpuCheck: false,
    onnxCheck: true, // about 1 s here (200 steps); `--onnx no` skips it
  },
  full: {
    name: 'full',
    validationCount: 10_000,
    splitSeed: 2018,
    // 20,000 images for 3 epochs keeps the whole report (sweep, 3 seeds, mapping) near 10 CPU
    // minutes; `--train 50000 --epochs 5` trains on all of the rest.
    trainCount: 20_000,
    epochs: 3,
    batchSize: 100,
    // Heavy ball and Nesterov take a tenth of SGD's grid (momentum 0.9 multiplies the steady-state
    // step by 10); AccSGD shares SGD's (the authors' advice; the mapping sweep measures it).
    // Four rates each, about 3x apart: with three each, SGD, heavy ball, Nesterov and Adam chose
    // their largest rate (a grid edge), so the grid gained one above.
    lrs: {
      AccSGD: [0.1, 0.3, 1, 3],
      SGD: [0.1, 0.3, 1, 3],
      Momentum: [0.01, 0.03, 0.1, 0.3],
      Nesterov: [0.01, 0.03, 0.1, 0.3],
      Adam: [0.0003, 0.001, 0.003, 0.01],
    },
    seeds: [1, 2, 3],
    cpuCheck: true,
    onnxCheck: true,
    mapping: {
      trainCount: 10_000,
      epochs: 2,
      momentumLrs: [0.003, 0.01, 0.03, 0.1, 0.3],
      accsgd: { lrs: [0.03, 0.1, 0.3, 1, 3], kappas: [100, 1000, 10_000], xis: [1, 10] },
    },
    // About 0.4 s per step of 100 on tfjs wasm with a core to itself (0.7 s on the loaded shared
    // 2-core machine); scoring 10,000 images takes about a second. Two epochs of 10,000 images keep
    // the 28 runs near 40 minutes on a free core. Heavy ball, Nesterov and Adam chose the top of
    // three rates after one epoch, so their grids gained one above (about 3x). The quick preset
    // leaves the conv net out (`--conv yes` adds it).
    conv: {
      trainCount: 10_000,
      epochs: 2,
      lrs: {
        AccSGD: [0.1, 0.3, 1],
        SGD: [0.1, 0.3, 1],
        Momentum: [0.01, 0.03, 0.1, 0.3],
        Nesterov: [0.01, 0.03, 0.1, 0.3],
        Adam: [0.001, 0.003, 0.01, 0.03],
      },
      onnxCheck: true,
    },
    // The MLP's mapping sweep on the conv net, on the comparison's 10,000 images for one epoch (half
    // its length, so that the 28 runs take about 20 minutes on a free core); AccSGD's lr goes to 3
    // so that xi = 1, whose step is 5.5x shorter than xi = 10's at the same lr, has room.
    convMapping: {
      trainCount: 10_000,
      epochs: 1,
      momentumLrs: [0.01, 0.03, 0.1, 0.3],
      accsgd: { lrs: [0.1, 0.3, 1, 3], kappas: [100, 1000, 10_000], xis: [1, 10] },
    },
  },
};
