import { fileURLToPath } from 'node:url';
import { findChromium } from '@accsgd/conformance';
import { openBrowserAdapter } from '@accsgd/conformance/browser';
import { describeConformance } from '@accsgd/conformance/vitest';

// The adapter module bundled by esbuild and run in headless Chromium (WebGL and WebGPU both on
// SwiftShader when there is no GPU). Skipped with a notice without a Chromium, failed instead
// when ACCSGD_REQUIRE_WEBGPU=1.
const chromium = findChromium();
const module = fileURLToPath(new URL('./conformance.ts', import.meta.url));

// Each backend twice: stepping as an async loop does (applyGradientsAsync), and as model.fit
// does (synchronous applyGradients; on webgpu its check runs on the device).
for (const [backend, api] of [
  ['webgl', 'applyGradientsAsync'],
  ['webgpu', 'applyGradientsAsync'],
  ['webgl', 'applyGradients'],
  ['webgpu', 'applyGradients'],
] as const) {
  let adapter: Awaited<ReturnType<typeof openBrowserAdapter>> | undefined;
  describeConformance(
    async () => {
      adapter = await openBrowserAdapter({ module, options: { backend, api } });
      return adapter;
    },
    {
      title: `tfjs/${backend}${api === 'applyGradients' ? '/sync' : ''} in headless Chromium`,
      requireClosedLoop: true,
      unavailable: chromium.available ? undefined : chromium.reason,
      dispose: () => adapter?.dispose(),
    },
  );
}
