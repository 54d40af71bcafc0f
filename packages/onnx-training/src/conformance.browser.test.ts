import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findChromium } from '@accsgd/conformance';
import { type BrowserAdapter, openBrowserAdapter, runInBrowser } from '@accsgd/conformance/browser';
import { describeConformance } from '@accsgd/conformance/vitest';
import { AccSGD } from '@accsgd/core';
import { describe, expect, it } from 'vitest';

// The full conformance suite in headless Chromium (WebGPU on SwiftShader without a GPU) on
// onnxruntime-web's WebGPU build: the adapter module is bundled for the page, and ORT's .wasm/.mjs
// files are served from onnxruntime-web/dist under /ort/.
const chromium = findChromium();
const ortDist = dirname(createRequire(import.meta.url).resolve('onnxruntime-web/webgpu'));
let adapter: BrowserAdapter | undefined;
describeConformance(
  async () => {
    adapter = await openBrowserAdapter({
      module: fileURLToPath(new URL('./conformance.ts', import.meta.url)),
      options: { runtime: 'web-webgpu', wasmPaths: '/ort/' },
      staticDirs: { '/ort/': ortDist },
    });
    if (/no WebGPU/.test(adapter.environment))
      throw new Error(`Chromium has no WebGPU adapter: ${adapter.environment}`);
    console.info(`[onnx-training] browser conformance on ${adapter.environment}`);
    return adapter;
  },
  {
    title: 'onnx-training conformance on onnxruntime-web webgpu in headless Chromium',
    requireClosedLoop: true,
    ...(chromium.available ? {} : { unavailable: chromium.reason }),
    dispose: () => adapter?.dispose(),
  },
);

// Under ACCSGD_REQUIRE_WEBGPU=1 a missing Chromium fails here (findChromium's reason) instead of skipping.
const required = process.env.ACCSGD_REQUIRE_WEBGPU === '1';
describe.skipIf(!chromium.available && !required)(
  'OnnxAccSGD on onnxruntime-web webgpu in headless Chromium',
  () => {
    it('keeps parameters on the GPU and matches core float32 AccSGD bit for bit', async () => {
      if (!chromium.available) throw new Error(`ACCSGD_REQUIRE_WEBGPU=1, but ${chromium.reason}`);
      const result = await runInBrowser<{ locations: string[]; params: number[]; buffer: number[] }>({
        module: fileURLToPath(new URL('./test-support/browser-residency.ts', import.meta.url)),
        exportName: 'residencyInBrowser',
        args: { wasmPaths: '/ort/' },
        staticDirs: { '/ort/': ortDist },
      });
      expect(result.locations).toEqual(['gpu-buffer', 'gpu-buffer']);
      const w = new Float32Array([1, 2, 3, 4]);
      const core = new AccSGD([w], { lr: 0.1 });
      core.step([new Float32Array([0.5, 0.5, 0.5, 0.5])]);
      core.step([new Float32Array([0.1, 0.1, 0.1, 0.1])]);
      expect(result.params).toEqual(Array.from(w));
      expect(result.buffer).toEqual(Array.from(core.buffer(0)!));
    });
  },
);
