import { describe, expect, it } from 'vitest';
import { conformanceChecks, runChecks } from '../runner.js';
import * as mutants from './index.js';

const checks = await conformanceChecks();

describe('the suite rejects adapters one mistake away from correct', () => {
  for (const [mistake, exportName] of Object.entries(mutants.MUTANT_EXPORTS)) {
    it(`${mistake}: ${mutants.MUTANT_DESCRIPTIONS[mistake as keyof typeof mutants.MUTANT_DESCRIPTIONS]}`, async () => {
      const factory = (mutants as unknown as Record<string, () => import('@accsgd/core').ConformanceAdapter>)[
        exportName
      ]!;
      const report = await runChecks(factory(), checks);
      const caughtBy = mutants.MUTANT_CAUGHT_BY[mistake as keyof typeof mutants.MUTANT_CAUGHT_BY];
      const aimed = report.results.filter((r) => !r.passed && caughtBy.checks.test(r.check));
      expect(report.passed).toBe(false);
      // It must be caught by the check aimed at it, not by an incidental one,
      expect(aimed.length, JSON.stringify(report.results.filter((r) => !r.passed))).toBeGreaterThan(0);
      // and where that check measures, by a wide margin.
      if (caughtBy.numeric) {
        const worst = Math.max(
          ...aimed.map((r) => (r.maxError ?? Number.POSITIVE_INFINITY) / (r.bound ?? 1)),
        );
        expect(worst).toBeGreaterThan(10);
      }
    });
  }
});

describe('the suite accepts strict float32 implementations (the bound is not tighter than float32)', () => {
  for (const factory of [mutants.correctFloat32Fused, mutants.correctFloat32Reference]) {
    it(factory().name, async () => {
      const report = await runChecks(factory(), checks);
      expect(report.results.filter((r) => !r.passed).map((r) => `${r.check}: ${r.detail}`)).toEqual([]);
      // The closed loop ran (it is optional in the contract; these adapters have it).
      expect(report.results.filter((r) => r.skipped).map((r) => r.check)).toEqual([]);
      expect(report.results.filter((r) => r.check.startsWith('in use: ')).length).toBe(3);
    });
  }
});
