import { defineConfig } from 'vitest/config';

// Test files run in child processes ('forks', vitest's default, pinned here): the float16 tests
// point the Vulkan loader at lavapipe by setting VK_ICD_FILENAMES at run time, which reaches
// native code (Dawn) only from a process's main thread, not from a worker thread.
//
// Every GPU test here runs on software Vulkan (SwiftShader, lavapipe) when there is no GPU, where a
// loaded 2-core machine makes a step take seconds: generous per-test and hook timeouts (as in
// packages/tfjs), and test files one at a time so they do not compete for the cores. A test that
// needs more sets its own (the 41M-parameter group).
export const TEST_TIMEOUT_MS = 120_000;

export default defineConfig({
  test: {
    pool: 'forks',
    testTimeout: TEST_TIMEOUT_MS,
    hookTimeout: TEST_TIMEOUT_MS,
    fileParallelism: false,
  },
});
