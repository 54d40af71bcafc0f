import { type FailureSignature, failureSignature } from '../diagnose.js';
import * as mutants from '../mutants/index.js';
import { conformanceChecks, runChecks } from '../runner.js';

/** Runs every mutant through the whole suite and returns the checks and each mutant's failures. */
export async function mutantSignatures(): Promise<{
  checks: string[];
  signatures: Record<string, FailureSignature>;
}> {
  const checks = await conformanceChecks();
  const signatures: Record<string, FailureSignature> = {};
  for (const [mutant, exportName] of Object.entries(mutants.MUTANT_EXPORTS)) {
    const factory = (mutants as unknown as Record<string, () => import('@accsgd/core').ConformanceAdapter>)[
      exportName
    ]!;
    signatures[mutant] = failureSignature(await runChecks(factory(), checks));
  }
  return { checks: checks.map((c) => c.name), signatures };
}
