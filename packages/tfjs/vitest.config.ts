import { defineConfig } from 'vitest/config';

// SwiftShader runs WebGPU and WebGL on the CPU, and the browser suite starts Chromium: generous
// per-test and hook timeouts; test files run one at a time so they do not compete for 2 cores.
export default defineConfig({ test: { testTimeout: 120_000, hookTimeout: 120_000, fileParallelism: false } });
