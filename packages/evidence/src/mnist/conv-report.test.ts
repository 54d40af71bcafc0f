import { describe, expect, it } from 'vitest';
import { type ConvResult, convCaveats, convSection, convTerminal } from './conv-report.js';
import { OPTIMIZERS, type OptimizerName } from './optimizers.js';
import { MNIST_PRESETS } from './presets.js';
import type { RunResult } from './train.js';

function run(
  name: OptimizerName,
  lr: number,
  seed: number,
  final: number,
  test?: number,
  backend = 'wasm',
): RunResult {
  return {
    spec: { name, lr },
    backend,
    seed,
    seconds: 1,
    epochs: [
      { epoch: 0, trainLoss: 2.3, validationAccuracy: 0.1, trainSeconds: 0, evalSeconds: 0 },
      { epoch: 1, trainLoss: 0.2, validationAccuracy: final, trainSeconds: 2, evalSeconds: 0 },
    ],
    ...(test !== undefined ? { testAccuracy: test } : {}),
  };
}

function result(): ConvResult {
  const preset = { ...MNIST_PRESETS.full.conv!, epochs: 1 };
  const runs: RunResult[] = [];
  const best = {} as Record<OptimizerName, number>;
  const seedRuns = {} as Record<OptimizerName, RunResult[]>;
  for (const name of OPTIMIZERS) {
    const lrs = preset.lrs[name];
    lrs.forEach((lr, i) => runs.push(run(name, lr, 1, 0.9 + 0.01 * i, i === 1 ? 0.96 : undefined)));
    best[name] = runs.length - lrs.length + 1; // the middle rate
    const chosen = runs[best[name]]!;
    seedRuns[name] = [
      chosen,
      run(name, chosen.spec.lr, 2, 0.9, 0.97),
      run(name, chosen.spec.lr, 3, 0.9, 0.98),
    ];
  }
  return {
    preset,
    seeds: [1, 2, 3],
    batchSize: 100,
    runs,
    best,
    seedRuns,
    onnx: run('AccSGD', seedRuns.AccSGD[0]!.spec.lr, 1, 0.91, 0.955, 'onnxruntime-node cpu'),
    seconds: { sweep: 10, seeds: 5, onnx: 1 },
  };
}

describe('conv report', () => {
  it('tables the chosen settings with test mean ± std over seeds, and the ONNX cross-check', () => {
    const md = convSection(result(), 'mnist-conv.svg').join('\n');
    // Test accuracies 0.96, 0.97, 0.98: mean 97.00%, sample std 1.00 point.
    expect(md).toContain('| AccSGD | lr=0.3, kappa=1000, xi=10, smallConst=0.7 |');
    expect(md).toContain('97.00% ± 1.00 (96.00–98.00)');
    expect(md).toContain('![conv net');
    expect(md).toContain('| 1 | 0.2000 | 0.2000 | 91.00% | 91.00% |');
    expect(md).toContain('Test accuracy: 95.50% (ONNX Runtime) against 96.00% (tfjs wasm).');
    // Not chosen rates carry no test accuracy and no "chosen" note.
    expect(md).toMatch(/\| SGD \| 0\.1 \| 0\.2000 \| 90\.00% \| {2}\|/);
  });

  it('prints the same numbers and the short-run caveat in the terminal', () => {
    const lines = convTerminal(result());
    expect(lines.find((l) => l.includes('Adam'))).toContain('test 97.00% ± 1.00 (96.00–98.00)');
    expect(lines.at(-1)).toContain('test 95.50% against 96.00% on tfjs wasm');
    expect(convCaveats(result())[0]).toContain(
      '10,000 training images for 1 epoch and 3 to 4 learning rates',
    );
  });

  it('names the optimizers whose chosen rate is an edge of their grid', () => {
    expect(convSection(result()).join('\n')).toContain('Every chosen rate lies inside its grid');
    const r = result();
    // Heavy ball's grid is {0.01, 0.03, 0.1, 0.3}: choose its top rate, 0.3 (index 3 of its four runs).
    const top = r.runs.findIndex((x) => x.spec.name === 'Momentum' && x.spec.lr === 0.3);
    r.best.Momentum = top;
    r.seedRuns.Momentum = [r.runs[top]!, run('Momentum', 0.3, 2, 0.9, 0.97)];
    expect(convSection(r).join('\n')).toContain(
      'Chosen at an edge of its grid: heavy ball (momentum 0.9) (lr 0.3); the best rate may lie beyond it',
    );
  });
});
