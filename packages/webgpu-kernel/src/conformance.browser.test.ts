import { fileURLToPath } from 'node:url';
import { findChromium } from '@accsgd/conformance';
import { type BrowserAdapter, openBrowserAdapter } from '@accsgd/conformance/browser';
import { describeConformance } from '@accsgd/conformance/vitest';

// The full conformance suite inside headless Chromium (WebGPU on SwiftShader without a GPU): the
// adapter module is bundled for the browser and gets its device from navigator.gpu.
const chromium = findChromium();
let adapter: BrowserAdapter | undefined;
describeConformance(
  async () => {
    adapter = await openBrowserAdapter({
      module: fileURLToPath(new URL('./conformance.ts', import.meta.url)),
    });
    // Without navigator.gpu the adapter would fail to open (its Node fallback is not in the bundle).
    if (/no WebGPU/.test(adapter.environment))
      throw new Error(`Chromium has no WebGPU adapter: ${adapter.environment}`);
    console.info(`[webgpu-kernel] browser conformance on ${adapter.environment}`);
    return adapter;
  },
  {
    title: 'webgpu-kernel conformance in headless Chromium',
    requireClosedLoop: true,
    ...(chromium.available ? {} : { unavailable: chromium.reason }),
    dispose: () => adapter?.dispose(),
  },
);
