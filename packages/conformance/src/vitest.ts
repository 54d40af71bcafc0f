import type { ConformanceAdapter } from '@accsgd/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { webgpuRequired } from './environment.js';
import {
  type CheckResult,
  type ConformanceCheck,
  conformanceChecks,
  runChecks,
  selectChecks,
} from './runner.js';

export interface DescribeConformanceOptions {
  /** Title of the describe block; default: the adapter's name once known, else "conformance". */
  title?: string;
  /**
   * Why the adapter cannot run here (no WebGPU adapter, no browser). The suite is then skipped
   * with a visible notice, or fails when ACCSGD_REQUIRE_WEBGPU=1, so CI cannot pass by skipping.
   */
  unavailable?: string;
  /** Only checks whose name contains one of these strings. */
  only?: string[];
  /** Per-check timeout in ms; default 120,000. */
  timeoutMs?: number;
  /**
   * Fail, rather than skip, the "in use" checks when the adapter has no leastSquaresGradient (the
   * optional closed loop, SPEC §5.1). Default false: they are skipped with a visible notice.
   */
  requireClosedLoop?: boolean;
  /** Called once after the suite, e.g. to dispose a browser. */
  dispose?: () => Promise<void> | void;
}

const checks = await conformanceChecks();

/**
 * Registers the whole conformance suite as vitest tests, one test per check:
 *
 *   describeConformance(() => conformanceAdapter({ backend: 'cpu' }));
 */
export function describeConformance(
  factory: () => ConformanceAdapter | Promise<ConformanceAdapter>,
  options: DescribeConformanceOptions = {},
): void {
  const title = options.title ?? 'AccSGD conformance';
  const selected: ConformanceCheck[] = selectChecks(checks, options.only);
  if (options.unavailable !== undefined) {
    if (webgpuRequired()) {
      describe(title, () => {
        it('has its adapter available (ACCSGD_REQUIRE_WEBGPU=1)', () => {
          expect.fail(`${title}: ${options.unavailable}`);
        });
      });
    } else {
      console.warn(`\n[accsgd] SKIPPED ${title}: ${options.unavailable}\n`);
      describe.skip(`${title} (skipped: ${options.unavailable})`, () => {
        it('conformance', () => {});
      });
    }
    return;
  }
  describe(title, () => {
    let adapter: ConformanceAdapter;
    beforeAll(async () => {
      adapter = await factory();
    }, options.timeoutMs ?? 120_000);
    afterAll(async () => {
      await options.dispose?.();
    }, 60_000);
    for (const check of selected) {
      it(
        check.name,
        async (context) => {
          const report = await runChecks(adapter, [check]);
          const result = report.results[0] as CheckResult;
          expect(result.passed, `${adapter.name} / ${check.name}: ${result.detail}`).toBe(true);
          if (result.skipped) {
            expect(options.requireClosedLoop, `${adapter.name} / ${check.name}: ${result.detail}`).not.toBe(
              true,
            );
            console.warn(`[accsgd] SKIPPED ${adapter.name} / ${check.name}: ${result.detail}`);
            context.skip();
          }
        },
        options.timeoutMs ?? 120_000,
      );
    }
  });
}
