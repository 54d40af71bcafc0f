import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findPyTorch, pytorchRequired } from '@accsgd/conformance';
import { fromBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tensorValues } from '../autodiff/proto.js';
import { OnnxTrainer } from './onnx-trainer.js';

/**
 * BatchNormalization's running statistics against PyTorch's own module: Debian's torch exports a
 * Conv2d + BatchNorm2d net in training mode (python/batchnorm_running_stats.py), takes one training
 * step, and writes its running statistics after it. OnnxTrainer takes one step of the export on
 * the same batch.
 *
 * The export's semantics are ONNX's: running_var moves towards the batch's population (biased)
 * variance, sum((x - mean)^2) / n, where PyTorch's BatchNorm2d moves it towards the unbiased one,
 * sum((x - mean)^2) / (n - 1). So the running mean agrees with PyTorch, and the running variance
 * is PyTorch's minus (1 - momentum) * (unbiased - biased) = 0.1 * var_biased / (n - 1) per channel
 * (n = 150 values per channel here: about 1.3e-4 on variances near 0.2), which this test measures.
 */
const SCRIPT = fileURLToPath(new URL('../../python/batchnorm_running_stats.py', import.meta.url));
const torch = findPyTorch();
if (!torch.available) {
  if (pytorchRequired()) throw new Error(`ACCSGD_REQUIRE_PYTORCH=1 but ${torch.reason}`);
  console.warn(
    `[onnx-training] SKIPPED BatchNormalization running statistics against PyTorch: ${torch.reason}`,
  );
}

interface Meta {
  x: number[];
  labels: number[];
  classes: number;
  loss: number;
  momentum: number;
  count: number;
  before: { mean: number[]; var: number[] };
  after: { mean: number[]; var: number[] };
  batch: { mean: number[]; biased: number[]; unbiased: number[] };
}

describe.skipIf(!torch.available)('BatchNormalization running statistics against PyTorch', () => {
  let dir = '';
  let meta: Meta;
  let bytes: Uint8Array;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'accsgd-bn-running-'));
    const run = spawnSync(torch.available ? torch.python : '', ['-B', SCRIPT, dir], {
      encoding: 'utf8',
      timeout: 300_000,
    });
    if (run.status !== 0) throw new Error(`batchnorm_running_stats.py failed (${run.status}): ${run.stderr}`);
    meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')) as Meta;
    bytes = new Uint8Array(readFileSync(join(dir, 'model.onnx')));
  }, 300_000);
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("one step: the running mean matches PyTorch; the running variance is ONNX's (biased), PyTorch's less 0.1 var / (n - 1)", async () => {
    const initializers = new Map(
      fromBinary(ModelProtoSchema, bytes).graph!.initializer.map((t) => [t.name, tensorValues(t)!]),
    );
    // The export holds the module's statistics as they were before the step.
    expect(Array.from(initializers.get('1.running_mean')!)).toEqual(
      Array.from(Float32Array.from(meta.before.mean)),
    );
    const trainer = await OnnxTrainer.create(bytes, {
      loss: 'softmax-cross-entropy',
      hyperparams: { lr: 0.05 },
      ort,
    });
    expect(trainer.runningStatisticNames).toEqual(['1.running_mean', '1.running_var']);
    expect(trainer.paramNames).toEqual(['0.weight', '0.bias', '1.weight', '1.bias', '5.weight', '5.bias']);
    const labels = new Float32Array(meta.labels.length * meta.classes);
    meta.labels.forEach((c, r) => {
      labels[r * meta.classes + c] = 1;
    });
    const loss = await trainer.step({ x: Float32Array.from(meta.x) }, labels);
    expect(Math.abs(loss - meta.loss)).toBeLessThan(1e-5 * meta.loss);
    const { statistics } = await trainer.read();
    await trainer.dispose();
    const mean = statistics.get('1.running_mean')!;
    const variance = statistics.get('1.running_var')!;
    const m = meta.momentum; // PyTorch's 0.1; the export's attribute is 1 - 0.1
    let meanError = 0;
    let onnxError = 0;
    let besselError = 0;
    let gap = 0;
    for (let c = 0; c < mean.length; c++) {
      meanError = Math.max(meanError, Math.abs(mean[c]! - meta.after.mean[c]!));
      const onnx = (1 - m) * meta.before.var[c]! + m * meta.batch.biased[c]!;
      onnxError = Math.max(onnxError, Math.abs(variance[c]! - onnx) / onnx);
      // PyTorch's running_var less ours is the Bessel correction's share.
      const expectedGap = m * (meta.batch.unbiased[c]! - meta.batch.biased[c]!);
      const measuredGap = meta.after.var[c]! - variance[c]!;
      besselError = Math.max(besselError, Math.abs(measuredGap - expectedGap) / expectedGap);
      gap = Math.max(gap, measuredGap / meta.after.var[c]!);
      expect(expectedGap).toBeCloseTo((m * meta.batch.biased[c]!) / (meta.count - 1), 6);
    }
    console.log(
      `[BatchNormalization vs PyTorch ${torch.available ? torch.version : ''}] running_mean max |ours - torch| ${meanError.toExponential(2)}; running_var vs ONNX (biased) ${onnxError.toExponential(2)} relative; torch's is larger by 0.1 var/(n-1) (n = ${meta.count}) within ${besselError.toExponential(2)} of that gap; gap up to ${gap.toExponential(2)} of torch's value`,
    );
    expect(meanError).toBeLessThan(1e-6);
    expect(onnxError).toBeLessThan(1e-6);
    // float32 rounding of values near 1 (~6e-8) against a gap of ~1e-4: within 1% of the gap.
    expect(besselError).toBeLessThan(1e-2);
  }, 120_000);

  it("runningVariance: 'unbiased': both running statistics match PyTorch's module after one step", async () => {
    const trainer = await OnnxTrainer.create(bytes, {
      loss: 'softmax-cross-entropy',
      runningVariance: 'unbiased',
      hyperparams: { lr: 0.05 },
      ort,
    });
    const labels = new Float32Array(meta.labels.length * meta.classes);
    meta.labels.forEach((c, r) => {
      labels[r * meta.classes + c] = 1;
    });
    await trainer.step({ x: Float32Array.from(meta.x) }, labels);
    const { statistics } = await trainer.read();
    await trainer.dispose();
    let worst = 0;
    for (const [name, theirs] of [
      ['1.running_mean', meta.after.mean],
      ['1.running_var', meta.after.var],
    ] as const) {
      const ours = statistics.get(name)!;
      theirs.forEach((t, c) => {
        worst = Math.max(worst, Math.abs(ours[c]! - t) / Math.max(1, Math.abs(t)));
      });
    }
    console.log(
      `[BatchNormalization vs PyTorch, runningVariance 'unbiased'] max relative difference ${worst.toExponential(2)}`,
    );
    expect(worst).toBeLessThan(1e-6);
  }, 120_000);
});
