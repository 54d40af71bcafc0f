import { findNodeWebGPU } from '@accsgd/conformance';
import { describeConformance } from '@accsgd/conformance/vitest';
import { conformanceAdapter } from './conformance.js';

// tfjs-backend-webgpu in Node, on the `webgpu` package (Dawn); on a machine without a GPU, on
// Chromium's SwiftShader Vulkan driver. Skipped with a notice when there is no adapter, failed
// instead when ACCSGD_REQUIRE_WEBGPU=1.
const found = await findNodeWebGPU();
describeConformance(() => conformanceAdapter({ backend: 'webgpu' }), {
  title: `tfjs/webgpu in Node (${found.available ? found.description : 'no adapter'})`,
  requireClosedLoop: true,
  unavailable: found.available ? undefined : found.reason,
});
// The same on the path model.fit takes: synchronous applyGradients, checked on the device.
describeConformance(() => conformanceAdapter({ backend: 'webgpu', api: 'applyGradients' }), {
  title: `tfjs/webgpu/sync in Node (${found.available ? found.description : 'no adapter'})`,
  requireClosedLoop: true,
  unavailable: found.available ? undefined : found.reason,
});
