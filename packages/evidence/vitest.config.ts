import { defineConfig } from 'vitest/config';

// Some tests train a step of a 784-256-10 MLP or start an ONNX Runtime session: well under a second
// alone, but CI runs on a loaded 2-core machine, so the timeout is sized for that, as in core.
export default defineConfig({ test: { include: ['src/**/*.test.ts'], testTimeout: 60_000 } });
