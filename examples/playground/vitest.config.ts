import { defineConfig } from 'vitest/config';

// The end-to-end tests drive one headless Chromium against the built page: one file at a time,
// generous timeouts (SwiftShader runs shaders on two loaded CPU cores).
export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'e2e/**/*.test.ts'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 300_000,
    hookTimeout: 300_000,
  },
});
