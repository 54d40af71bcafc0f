import { conformanceAdapter } from '@accsgd/core/conformance';
import { describe, expect, it } from 'vitest';
import { DIAGNOSIS_THRESHOLD, diagnose, formatDiagnosis } from './diagnose.js';
import * as mutants from './mutants/index.js';
import { MUTANT_SIGNATURES, SIGNATURE_CHECKS } from './mutants/signatures.js';
import { formatReport } from './report.js';
import { type ConformanceReport, conformanceChecks, runChecks } from './runner.js';
import { mutantSignatures } from './test-support/record-signatures.js';

const checks = await conformanceChecks();
const factories = mutants as unknown as Record<string, () => import('@accsgd/core').ConformanceAdapter>;

describe('diagnosis of a failing report as a known mistake (a mutant of the suite)', () => {
  it('uses signatures recorded from the current suite and mutants (`npm run signatures` when this fails)', async () => {
    const { checks: names, signatures } = await mutantSignatures();
    expect(SIGNATURE_CHECKS).toEqual(names);
    expect(MUTANT_SIGNATURES).toEqual(signatures);
    expect(Object.keys(MUTANT_SIGNATURES).sort()).toEqual(Object.keys(mutants.MUTANT_DESCRIPTIONS).sort());
  });

  for (const [mistake, exportName] of Object.entries(mutants.MUTANT_EXPORTS)) {
    it(`diagnoses ${mistake} as itself`, async () => {
      const report = await runChecks(factories[exportName]!(), checks);
      const [best] = diagnose(report);
      expect(best?.mutant).toBe(mistake);
      expect(best?.distance).toBe(0);
      const text = formatReport(report);
      expect(text).toContain(
        `diagnosis: this looks like the known mistake "${mistake}": ${mutants.MUTANT_DESCRIPTIONS[mistake as keyof typeof mutants.MUTANT_DESCRIPTIONS]}`,
      );
    });
  }

  const correct = [
    mutants.correctFloat32Fused(),
    mutants.correctFloat32Reference(),
    conformanceAdapter({ dtype: 'float32' }),
    conformanceAdapter({ dtype: 'float64' }),
  ];
  for (const adapter of correct) {
    it(`gives no diagnosis for ${adapter.name}`, async () => {
      const report = await runChecks(adapter, checks);
      expect(report.passed).toBe(true);
      expect(diagnose(report)).toEqual([]);
      expect(formatReport(report)).not.toContain('diagnosis');
    });
  }

  it('gives no diagnosis for failures unlike any known mistake', () => {
    const report: ConformanceReport = {
      adapter: 'x',
      dtype: 'float32',
      passed: false,
      results: SIGNATURE_CHECKS.map((check) =>
        check === 'golden: near-min-normal' || check === 'bad input: negative learning rate'
          ? { check, passed: false, maxError: 1e-4, bound: 2e-6, detail: 'off', ms: 0 }
          : { check, passed: true, detail: '', ms: 0 },
      ),
    };
    expect(diagnose(report)).toEqual([]);
    expect(formatDiagnosis([])).toBe('');
    expect(DIAGNOSIS_THRESHOLD).toBeLessThan(0.5);
  });
});

describe('formatReport', () => {
  it('prints one line per family, failures only, and colours only when asked', async () => {
    const report = await runChecks(mutants.ignoresLearningRateChange(), checks);
    const plain = formatReport(report);
    expect(plain).not.toContain('\u001b[');
    const families = plain.split('\n').filter((l) => /^ {2}\S.* passed, +\d+ failed/.test(l));
    expect(families.map((l) => l.trim().split(/ {2,}/)[0])).toEqual([
      'golden',
      'resume',
      'in use',
      'state file',
      'bad input',
    ]);
    expect(plain).toMatch(/^ {2}golden +12 passed, {2}1 failed {2}worst error\/bound [\d.]+e\+4$/m);
    expect(plain.match(/^ {2}FAIL /gm)).toHaveLength(2);
    expect(plain).toContain('FAIL golden: learning-rate-changes (error 8.49e-2, bound 2.62e-6');
    expect(plain).not.toMatch(/│/);
    const coloured = formatReport(report, { color: true });
    expect(coloured).toContain('\u001b[31mFAIL\u001b[0m');
    expect(coloured.replace(new RegExp(`${String.fromCharCode(27)}\\[\\d+m`, 'g'), '')).toBe(plain);
    const verbose = formatReport(report, { verbose: true });
    expect(verbose).toMatch(/│ golden: defaults +│ pass +│/);
    expect(verbose).toMatch(/│ golden: learning-rate-changes +│ FAIL +│/);
    expect(verbose).not.toContain('\u001b[');
  });
});
