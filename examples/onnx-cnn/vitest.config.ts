import { defineConfig } from 'vitest/config';

// One file, in a child process: onnxruntime-node and the tfjs wasm backend both load native code.
export default defineConfig({
  test: {
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 120_000,
    fileParallelism: false,
  },
});
