import { describeConformance } from '@accsgd/conformance/vitest';
import { conformanceAdapter } from './conformance.js';

// The full suite (golden trajectories, resume, state file, bad inputs) on the Node backends whose
// memory JS reads directly, fused and composite. WebGPU is in conformance-webgpu.test.ts, the
// browser backends in conformance-browser.test.ts.
describeConformance(() => conformanceAdapter({ backend: 'cpu' }), {
  title: 'tfjs/cpu (fused kernel)',
  requireClosedLoop: true,
});
describeConformance(() => conformanceAdapter({ backend: 'cpu', fused: false }), {
  title: 'tfjs/cpu (composite ops)',
  requireClosedLoop: true,
});
describeConformance(() => conformanceAdapter({ backend: 'wasm' }), {
  title: 'tfjs/wasm (fused kernel)',
  requireClosedLoop: true,
});
