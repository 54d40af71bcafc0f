import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findChromium } from '@accsgd/conformance';
import { runInBrowser } from '@accsgd/conformance/browser';
import * as ortNode from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import type { OrtModule } from '../runtime.js';
import { encoderModel, tokenBatch } from '../test-support/forward-models.js';
import { OnnxTrainer } from './onnx-trainer.js';

const chromium = findChromium();
const ortDist = dirname(createRequire(import.meta.url).resolve('onnxruntime-web/webgpu'));
// Under ACCSGD_REQUIRE_WEBGPU=1 a missing Chromium fails here (findChromium's reason) instead of skipping.
const required = process.env.ACCSGD_REQUIRE_WEBGPU === '1';
if (!chromium.available && !required)
  console.warn(`[accsgd] SKIPPED train step in headless Chromium: ${chromium.reason}`);

describe.skipIf(!chromium.available && !required)(
  'OnnxTrainer on onnxruntime-web webgpu in headless Chromium',
  () => {
    it("runs every node of the BERT-shaped encoder's train step on the GPU (disable_cpu_ep_fallback) and tracks onnxruntime-node cpu", async () => {
      if (!chromium.available) throw new Error(`ACCSGD_REQUIRE_WEBGPU=1, but ${chromium.reason}`);
      const [steps, seed] = [4, 500];
      const { losses } = await runInBrowser<{ losses: number[] }>({
        module: fileURLToPath(new URL('../test-support/train-step-in-browser.ts', import.meta.url)),
        exportName: 'encoderStepsInBrowser',
        args: { wasmPaths: '/ort/', steps, seed },
        staticDirs: { '/ort/': ortDist },
      });
      const cpu = await OnnxTrainer.create(encoderModel({ batch: 'batch', seq: 'seq', seed: 3 }), {
        loss: 'softmax-cross-entropy',
        dimensions: { batch: 8, seq: 6 },
        hyperparams: { lr: 0.05 },
        ort: ortNode as OrtModule,
      });
      let worst = 0;
      for (let step = 0; step < steps; step++) {
        const { ids, mask, labels } = tokenBatch(seed + step);
        const expected = await cpu.step({ ids, mask }, labels);
        worst = Math.max(worst, Math.abs(losses[step]! - expected) / Math.abs(expected));
      }
      await cpu.dispose();
      console.log(`[encoder in Chromium webgpu] worst relative loss difference ${worst.toExponential(2)}`);
      expect(losses).toHaveLength(steps);
      expect(worst).toBeLessThan(1e-4);
    });
  },
);
