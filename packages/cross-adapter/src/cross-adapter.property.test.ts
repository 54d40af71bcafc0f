/// <reference types="@webgpu/types" preserve="true" />
import { findNodeWebGPU, webgpuRequired } from '@accsgd/conformance';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { type AdapterStats, compareOrderings, compareTraces, newStats } from './compare.js';
import { coreDriver, type Driver, onnxDriver, tfjsDriver, webgpuKernelDriver } from './drivers.js';
import { allParams, type Case, caseArb, describeCase, tally } from './problem.js';
import { runAwaited, runUnawaited } from './run.js';

/**
 * The issue "One parameter registry in core", Tests: random sequences of operations across
 * parameter groups (steps with some parameters skipped, as null or absent; setLearningRate of one
 * group or all; exportState; importState of an earlier export, into the same optimizer or a fresh
 * one over the current parameters) run on every adapter, which must end with the same parameters,
 * buffers and state files as @accsgd/core's float32 AccSGD: bit for bit where the adapter is
 * bit-identical by design, else within SPEC §3's float32 bound (against core float32 and against
 * the float64 truth). Each sequence also runs with every call issued without awaiting the earlier
 * ones (where the API allows it), which must give exactly the awaited run's outcome.
 */

const SEED = Number(process.env.ACCSGD_CROSS_SEED ?? 20_251_202);
const NUM_RUNS = Number(process.env.ACCSGD_CROSS_RUNS ?? 50);

const found = await findNodeWebGPU();
const noGPU = found.available ? undefined : found.reason;

/** Why onnxruntime-node's WebGPU EP cannot run here (a probe session), or undefined. */
async function onnxWebGPUUnavailable(): Promise<string | undefined> {
  if (noGPU) return noGPU;
  try {
    const ort = await import('onnxruntime-node');
    const { buildIdentityModel } = await import('@accsgd/onnx-training');
    const session = await ort.InferenceSession.create(buildIdentityModel(), {
      executionProviders: ['webgpu'],
    });
    await session.release();
    return undefined;
  } catch (error) {
    return `onnxruntime-node's webgpu EP does not start: ${(error as Error).message}`;
  }
}

const onnxNoGPU = await onnxWebGPUUnavailable();

const core32 = coreDriver('float32');
const truth = coreDriver('float64');
const stats = new Map<string, AdapterStats>();
const CORE_VS_TRUTH = 'core/float32 vs f64 truth';
const timings = new Map<string, number>();

function groupOf(c: Case): Map<string, number> {
  return new Map(c.problem.groups.flatMap((g, i) => g.params.map((p) => [p.name, i] as const)));
}

/** The property for one adapter: every generated case, awaited and unawaited, against core float32. */
async function checkAdapter(driver: Driver, options: { unawaited?: boolean } = {}): Promise<void> {
  const s = newStats();
  stats.set(driver.name, s);
  const started = performance.now();
  try {
    await fc.assert(
      fc.asyncProperty(caseArb, async (c) => {
        const ref = await runAwaited(core32, c, true);
        const tr = await runAwaited(truth, c);
        const awaited = await runAwaited(driver, c);
        const problems = compareTraces(driver.name, awaited, ref, tr, groupOf(c), driver.exact, s);
        if (options.unawaited !== false) {
          const unawaited = await runUnawaited(driver, c, s);
          problems.push(
            ...compareOrderings(`${driver.name} unawaited`, unawaited, awaited),
            ...compareTraces(`${driver.name} unawaited`, unawaited, ref, tr, groupOf(c), driver.exact, s),
          );
        }
        s.cases++;
        if (problems.length > 0)
          throw new Error(
            `${problems.length} disagreement(s):\n${problems.slice(0, 8).join('\n')}\n\ncase (${allParams(c.problem).length} parameters, ${c.ops.length} operations):\n${describeCase(c)}`,
          );
      }),
      { seed: SEED, numRuns: NUM_RUNS },
    );
  } finally {
    timings.set(driver.name, performance.now() - started);
  }
}

/** A WebGPU test: skipped with a visible notice when there is no adapter, failed when ACCSGD_REQUIRE_WEBGPU=1. */
function gpuIt(title: string, reason: string | undefined, body: () => Promise<void>): void {
  if (reason === undefined) {
    it(title, body);
  } else if (webgpuRequired()) {
    it(title, () => {
      expect.fail(`ACCSGD_REQUIRE_WEBGPU=1 but ${reason}`);
    });
  } else {
    console.warn(`\n[accsgd] SKIPPED ${title}: ${reason}\n`);
    it.skip(`${title} (skipped: ${reason})`, body);
  }
}

describe(`random operation sequences on every adapter = core float32 (fast-check seed ${SEED}, ${NUM_RUNS} runs each)`, () => {
  afterAll(() => {
    const rows = [...stats].map(([name, s]) => ({
      adapter: name,
      cases: s.cases,
      tensors: s.tensorsCompared,
      'bit-exact':
        name === CORE_VS_TRUTH
          ? 'n/a'
          : s.exact
            ? 'yes'
            : s.exactButFlushes
              ? 'flush-level diffs only'
              : 'no',
      'differing elements (flush-level)': `${s.differing} (${s.flushes})`,
      'worst err / bound (vs core32)': s.worstVsCore32.toExponential(2),
      'worst err / bound (vs f64 truth)': s.worstVsTruth.toExponential(2),
      'unawaited calls': s.overlapped,
      'API waits': s.barriers,
      seconds: ((timings.get(name) ?? 0) / 1000).toFixed(1),
    }));
    console.log(`\n[cross-adapter] seed ${SEED}, ${NUM_RUNS} runs per adapter`);
    console.table(rows);
    console.log(
      `[cross-adapter] bit-exact to core/float32: ${
        rows
          .filter((r) => r['bit-exact'] === 'yes')
          .map((r) => r.adapter)
          .join(', ') || 'none'
      }; identical but for flush-level differences (|diff| < 16 * 2^-126, subnormals flushed to zero): ${
        rows
          .filter((r) => r['bit-exact'] === 'flush-level diffs only')
          .map((r) => r.adapter)
          .join(', ') || 'none'
      }; compared within the SPEC §3 bound: ${
        rows
          .filter((r) => r.adapter !== CORE_VS_TRUTH && r['bit-exact'] !== 'yes')
          .map((r) => r.adapter)
          .join(', ') || 'none'
      }`,
    );
  });

  it('core/float32 itself stays within the SPEC §3 bound of the float64 truth', async () => {
    const s = newStats();
    stats.set(CORE_VS_TRUTH, s);
    const coverage: Record<string, number> = {};
    await fc.assert(
      fc.asyncProperty(caseArb, async (c) => {
        tally(c, coverage);
        const ref = await runAwaited(core32, c, true);
        const tr = await runAwaited(truth, c);
        const problems = compareTraces('core/float32', ref, ref, tr, groupOf(c), false, s);
        s.cases++;
        if (problems.length > 0) throw new Error(`${problems.join('\n')}\n\n${describeCase(c)}`);
      }),
      { seed: SEED, numRuns: NUM_RUNS * 4 },
    );
    // The same seed gives every adapter test below the first NUM_RUNS of these cases.
    console.log(
      `[cross-adapter] operations in the ${coverage.cases} generated cases: ${JSON.stringify(coverage)}`,
    );
  });

  describe('@accsgd/tfjs AccSGDOptimizer with groups', () => {
    it('cpu (bit-exact)', async () => {
      await checkAdapter(await tfjsDriver('cpu'));
    });
    it('wasm (bit-exact)', async () => {
      await checkAdapter(await tfjsDriver('wasm'));
    });
    gpuIt(`webgpu in Node (${found.available ? found.description : 'no adapter'})`, noGPU, async () => {
      await checkAdapter(await tfjsDriver('webgpu'));
    });
  });

  describe('@accsgd/webgpu-kernel WebGPUAccSGD, createFlatStorage per group', () => {
    gpuIt(`Dawn (${found.available ? found.description : 'no adapter'})`, noGPU, async () => {
      if (!found.available) return;
      // An adapter hands out one device: a fresh adapter for this test's own device.
      const adapter = await found.gpu.requestAdapter();
      if (!adapter) throw new Error('the WebGPU instance returned no adapter');
      const device = (await adapter.requestDevice()) as GPUDevice;
      try {
        await checkAdapter(await webgpuKernelDriver(device));
      } finally {
        device.destroy();
      }
    });
  });

  describe('@accsgd/onnx-training OnnxAccSGD', () => {
    it('onnxruntime-node cpu (bit-exact)', async () => {
      await checkAdapter(await onnxDriver('node-cpu'));
    });
    it('onnxruntime-web wasm (bit-exact)', async () => {
      await checkAdapter(await onnxDriver('web-wasm'));
    });
    gpuIt('onnxruntime-node webgpu', onnxNoGPU, async () => {
      await checkAdapter(await onnxDriver('node-webgpu'));
    });
  });
});
