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
  /**
   * Title of the describe block. With a title, the factory is called in the block's beforeAll.
   * Without one, the block is "AccSGD conformance" and the factory is called when vitest collects
   * the file, so that the tests can sit in a nested block named after the adapter
   * ("AccSGD conformance > core/float32 > golden: defaults"): two adapters in one file never share
   * test names. Give a title when the factory is expensive (a browser, a GPU device), so that it
   * runs only if the tests do.
   */
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
const DEFAULT_TITLE = 'AccSGD conformance';

/**
 * Registers the whole conformance suite as vitest tests, one test per check:
 *
 *   describeConformance(() => conformanceAdapter({ backend: 'cpu' }));
 *
 * Without `options.title` the tests are named after the adapter (see DescribeConformanceOptions).
 */
export function describeConformance(
  factory: () => ConformanceAdapter | Promise<ConformanceAdapter>,
  options: DescribeConformanceOptions = {},
): void {
  const title = options.title ?? DEFAULT_TITLE;
  const selected: ConformanceCheck[] = selectChecks(checks, options.only);
  const timeoutMs = options.timeoutMs ?? 120_000;
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

  const registerChecks = (adapter: () => ConformanceAdapter) => {
    afterAll(async () => {
      await options.dispose?.();
    }, 60_000);
    for (const check of selected) {
      it(
        check.name,
        async (context) => {
          const report = await runChecks(adapter(), [check]);
          const result = report.results[0] as CheckResult;
          const label = `${adapter().name} / ${check.name}: ${result.detail}`;
          expect(result.passed, label).toBe(true);
          if (result.skipped) {
            expect(options.requireClosedLoop, label).not.toBe(true);
            console.warn(`[accsgd] SKIPPED ${label}`);
            context.skip();
          }
        },
        timeoutMs,
      );
    }
  };

  if (options.title !== undefined) {
    describe(title, () => {
      let adapter: ConformanceAdapter;
      beforeAll(async () => {
        adapter = await factory();
      }, timeoutMs);
      registerChecks(() => adapter);
    });
    return;
  }

  // No title: open the adapter while collecting, to name the tests after it.
  describe(title, async () => {
    let adapter: ConformanceAdapter;
    try {
      adapter = await factory();
    } catch (error) {
      it('creates the adapter', () => {
        throw error;
      });
      return;
    }
    describe(adapter.name, () => registerChecks(() => adapter));
  });
}
