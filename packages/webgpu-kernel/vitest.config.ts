import { defineConfig } from 'vitest/config';

// Test files run in child processes ('forks', vitest's default, pinned here): the float16 tests
// point the Vulkan loader at lavapipe by setting VK_ICD_FILENAMES at run time, which reaches
// native code (Dawn) only from a process's main thread, not from a worker thread.
export default defineConfig({ test: { pool: 'forks' } });
