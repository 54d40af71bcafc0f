import { defineConfig } from 'vitest/config';

// Test files run in child processes ('forks'), one file at a time: onnxruntime-node's WebGPU EP
// runs on software Vulkan (SwiftShader) when there is no GPU, where a loaded machine makes sessions
// and steps slow. Generous per-test and hook timeouts, as in the other adapters.
export const TEST_TIMEOUT_MS = 120_000;

export default defineConfig({
  test: {
    pool: 'forks',
    testTimeout: TEST_TIMEOUT_MS,
    hookTimeout: TEST_TIMEOUT_MS,
    fileParallelism: false,
  },
});
