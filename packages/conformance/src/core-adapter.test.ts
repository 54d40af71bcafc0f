import { conformanceAdapter } from '@accsgd/core/conformance';
import { describe, expect, it } from 'vitest';
import { correctFloat32Fused } from './mutants/index.js';
import { runPortability } from './runner.js';
import { describeConformance } from './vitest.js';

// The core's CPU optimizer is the first adapter; its conformance runs here because the core
// package must not depend on this one.
describeConformance(() => conformanceAdapter({ dtype: 'float32' }), {
  title: 'core/float32',
  requireClosedLoop: true,
});
describeConformance(() => conformanceAdapter({ dtype: 'float64' }), {
  title: 'core/float64',
  requireClosedLoop: true,
});

describe('portability', () => {
  it('state moves between float32 and float64 cores in both directions', async () => {
    const f32 = conformanceAdapter({ dtype: 'float32' });
    const f64 = conformanceAdapter({ dtype: 'float64' });
    for (const [from, to] of [
      [f32, f64],
      [f64, f32],
    ] as const) {
      const report = await runPortability(from, to);
      expect(report.results.length).toBe(13);
      expect(report.results.filter((r) => !r.passed).map((r) => r.detail)).toEqual([]);
    }
  });

  it('state moves from an independent float32 implementation into the core', async () => {
    const report = await runPortability(correctFloat32Fused(), conformanceAdapter({ dtype: 'float32' }));
    expect(report.passed, JSON.stringify(report.results.filter((r) => !r.passed))).toBe(true);
  });
});
