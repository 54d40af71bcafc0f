import { defineConfig } from 'vitest/config';

// SwiftShader runs WebGPU on the CPU: generous per-test and hook timeouts; test files run one at a
// time so they do not compete for the cores.
export default defineConfig({ test: { testTimeout: 120_000, hookTimeout: 120_000, fileParallelism: false } });
