import { defineConfig } from 'vitest/config';

// One file, in a child process: onnxruntime-node loads native code, and transformers.js reads the
// shared-ORT symbol once per process.
export default defineConfig({
  test: {
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 120_000,
    fileParallelism: false,
  },
});
