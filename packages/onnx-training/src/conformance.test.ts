import { findNodeWebGPU } from '@accsgd/conformance';
import { describeConformance } from '@accsgd/conformance/vitest';
import { conformanceAdapter } from './conformance.js';
import { webgpuUnavailable } from './test-support/webgpu.js';

// The whole conformance suite, closed loop required, on each runtime.
describeConformance(() => conformanceAdapter({ runtime: 'node-cpu' }), {
  title: 'onnx-training conformance on onnxruntime-node cpu',
  requireClosedLoop: true,
});

describeConformance(() => conformanceAdapter({ runtime: 'web-wasm' }), {
  title: 'onnx-training conformance on onnxruntime-web wasm (in Node)',
  requireClosedLoop: true,
});

// ORT's bundled WebGPU EP does not use Dawn; findNodeWebGPU only tells whether this machine has a
// WebGPU adapter at all (skip with a notice, or fail under ACCSGD_REQUIRE_WEBGPU=1).
const node = await findNodeWebGPU();
const unavailable = await webgpuUnavailable(node);
describeConformance(() => conformanceAdapter({ runtime: 'node-webgpu' }), {
  title: 'onnx-training conformance on onnxruntime-node webgpu',
  requireClosedLoop: true,
  ...(unavailable === undefined ? {} : { unavailable }),
});
