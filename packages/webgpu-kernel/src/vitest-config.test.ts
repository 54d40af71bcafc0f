import { describe, expect, it } from 'vitest';

/**
 * Every test here may run on software Vulkan (SwiftShader, lavapipe), where a loaded 2-core CI
 * machine makes single tests take far beyond vitest's 5-second default (two float16 tests once
 * failed that way on a clean clone). The timeouts live in vitest.config.ts, for every test and
 * hook, as in packages/tfjs; this checks that they reach the tests.
 */
describe('vitest configuration', () => {
  it('gives each test 120 s (from the config, not per test)', ({ task }) => {
    expect(task.timeout).toBe(120_000);
  });

  it('gives each hook 120 s, runs test files one at a time, in forks', async () => {
    const { default: config } = (await import(new URL('../vitest.config.ts', import.meta.url).href)) as {
      default: {
        test: { hookTimeout?: number; testTimeout?: number; fileParallelism?: boolean; pool?: string };
      };
    };
    expect(config.test).toMatchObject({
      testTimeout: 120_000,
      hookTimeout: 120_000,
      fileParallelism: false,
      pool: 'forks',
    });
  });
});
