import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  AccSGD,
  AccSGDStateError,
  accuracyBound,
  decodeState,
  type Hyperparams,
  type ParamGroupInput,
  relativeError,
  resolveHyperparams,
} from '@accsgd/core';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { findPyTorch, pytorchRequired } from './environment.js';
import { listGoldenCases, loadGoldenCase } from './vectors.js';

/**
 * The spec against the reference optimizer on real PyTorch, and the state file both ways.
 * @accsgd/core ships python/accsgd_torch.py: the reference AccSGD (seven in-place tensor ops per
 * parameter) and a reader and writer of the state file. python/torch_job.py here runs a job on it.
 * Needs a Python with torch (Debian: apt-get install python3-torch); without one the tests skip
 * with a notice, or fail when ACCSGD_REQUIRE_PYTORCH=1, as in CI.
 */
const ACCSGD_TORCH = createRequire(import.meta.url).resolve('@accsgd/core/python/accsgd_torch.py');
const JOB = fileURLToPath(new URL('../python/torch_job.py', import.meta.url));

const torch = findPyTorch();
if (!torch.available) {
  if (pytorchRequired()) throw new Error(`ACCSGD_REQUIRE_PYTORCH=1 but ${torch.reason}`);
  console.warn(`[conformance] skipping PyTorch tests: ${torch.reason}`);
}
const python = torch.available ? torch.python : '';

/** Runs torch_job.py on a job (see its docstring) and returns its JSON result. */
function torchJob<T>(job: unknown): T {
  const run = spawnSync(python, ['-B', JOB, ACCSGD_TORCH], {
    input: JSON.stringify(job),
    encoding: 'utf8',
    maxBuffer: 1 << 28,
  });
  if (run.status !== 0) throw new Error(`torch_job.py failed (${run.status}): ${run.stderr}`);
  return JSON.parse(run.stdout) as T;
}

/**
 * How closely float64 runs must agree with the reference on PyTorch: ten times tighter than the
 * contract's float64 bound (1e-12), since both compute the same float64 operations up to order
 * (measured: at most 6.4e-15, on the 500-step golden case).
 */
const AGREEMENT = accuracyBound('float64', 1) / 10;

type Dtype = 'float32' | 'float64';
interface JobResult {
  params: Record<string, number[]>;
  buffers: Record<string, number[] | null>;
  steps: number[];
}

// Two groups with different hyperparameters (weight decay in one). Steps count from 0: 'b' gets its
// first gradient at step 2, 'c' has none at step 4, and group 0's learning rate changes before step 5.
const SHAPES: Record<string, number[]> = { a: [5, 4], b: [7], c: [3] };
const GROUPS = [
  { lr: 0.05, kappa: 300, xi: 8, smallConst: 0.7, weightDecay: 1e-3, params: ['a', 'b'] },
  { lr: 0.02, kappa: 1000, xi: 10, smallConst: 0.5, weightDecay: 0, params: ['c'] },
];
const STEPS = 6;
const size = (name: string) => SHAPES[name]!.reduce((a, d) => a * d, 1);

/** Deterministic float32-representable values in [-scale, scale). */
function values(count: number, seed: number, scale = 1): number[] {
  let state = (seed * 2654435761) >>> 0 || 1;
  return Array.from({ length: count }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return Math.fround((state / 2 ** 31 - 1) * scale);
  });
}
const INIT = Object.fromEntries(Object.keys(SHAPES).map((name, k) => [name, values(size(name), 1 + k)]));
function gradsAt(step: number): Record<string, number[] | null> {
  return Object.fromEntries(
    Object.keys(SHAPES).map((name, k) => [
      name,
      (name === 'b' && step < 2) || (name === 'c' && step === 4)
        ? null
        : values(size(name), 100 * step + k, 2),
    ]),
  );
}
const lrAt = (step: number): Record<string, number> | undefined => (step === 5 ? { 0: 0.03 } : undefined);

const workdir = mkdtempSync(join(tmpdir(), 'accsgd-torch-'));
afterAll(() => rmSync(workdir, { recursive: true, force: true }));

function runTorch(job: {
  dtype: Dtype;
  init?: Record<string, number[]>;
  from: number;
  to: number;
  loadState?: string;
  saveState?: string;
}): JobResult {
  const input = {
    dtype: job.dtype,
    groups: GROUPS.map(({ params, ...hyperparams }) => pythonGroup(hyperparams, params)),
    params: Object.fromEntries(
      Object.keys(SHAPES).map((name) => [name, { shape: SHAPES[name], init: (job.init ?? INIT)[name] }]),
    ),
    load_state: job.loadState ?? null,
    steps: Array.from({ length: job.to - job.from }, (_, k) => ({
      grads: gradsAt(job.from + k),
      ...(lrAt(job.from + k) ? { lr: lrAt(job.from + k) } : {}),
    })),
    save_state: job.saveState ?? null,
  };
  return torchJob<JobResult>(input);
}

/** The CPU optimizer over the same problem, with parameters from `init`. */
function jsOptimizer(dtype: Dtype, init: Record<string, number[]> = INIT) {
  const Float = dtype === 'float64' ? Float64Array : Float32Array;
  const params = Object.fromEntries(Object.keys(SHAPES).map((name) => [name, Float.from(init[name]!)]));
  const groups: ParamGroupInput[] = GROUPS.map(({ params: names, ...hyper }) => ({
    ...hyper,
    params: names.map((n) => params[n]!),
    names,
    shapes: names.map((n) => SHAPES[n]!),
  }));
  const optimizer = new AccSGD(groups, { lr: GROUPS[0]!.lr });
  const run = (from: number, to: number) => {
    for (let step = from; step < to; step++) {
      const lr = lrAt(step);
      if (lr)
        for (const [group, value] of Object.entries(lr)) optimizer.setLearningRate(value, Number(group));
      const grads = gradsAt(step);
      optimizer.step(
        Object.fromEntries(Object.entries(grads).map(([n, g]) => [n, g === null ? null : Float.from(g)])),
      );
    }
  };
  return { optimizer, params, run };
}

/** Largest relative error (SPEC §3) over every parameter and buffer. */
/** Parameters and buffers by name, as either side reports them. */
interface Snapshot {
  params: Record<string, ArrayLike<number>>;
  buffers: Record<string, ArrayLike<number> | null>;
}

/** Largest relative error (SPEC §3) over every parameter and buffer of `truth`; the same buffers must exist. */
function worst(got: Snapshot, truth: Snapshot, when = ''): number {
  let error = 0;
  for (const name of Object.keys(truth.params)) {
    error = Math.max(
      error,
      relativeError(Float64Array.from(got.params[name]!), Float64Array.from(truth.params[name]!)),
    );
    const buffer = got.buffers[name];
    const expected = truth.buffers[name];
    expect(buffer === null, `${name}'s buffer ${when}`).toBe(expected === null);
    if (buffer && expected)
      error = Math.max(error, relativeError(Float64Array.from(buffer), Float64Array.from(expected)));
  }
  return error;
}

/** A group of the job file: hyperparameters resolved (defaults filled) under the reference's names. */
function pythonGroup(hyperparams: Partial<Hyperparams>, params: string[]) {
  const h = resolveHyperparams(hyperparams);
  return {
    lr: h.lr,
    kappa: h.kappa,
    xi: h.xi,
    small_const: h.smallConst,
    weight_decay: h.weightDecay,
    params,
  };
}

function jsResult({ optimizer, params }: ReturnType<typeof jsOptimizer>) {
  return {
    params,
    buffers: Object.fromEntries(Object.keys(SHAPES).map((n) => [n, optimizer.buffer(n)])),
  };
}

describe.skipIf(!torch.available)('accsgd_torch.py', () => {
  it('passes its own unit tests (reference semantics, state round trip, what it refuses)', () => {
    const run = spawnSync(
      python,
      ['-B', '-m', 'unittest', 'discover', '-s', dirname(ACCSGD_TORCH), '-p', 'test_*.py'],
      {
        encoding: 'utf8',
      },
    );
    expect(run.stderr).toMatch(/Ran 15 tests/);
    expect(run.status, run.stderr).toBe(0);
  });
});

describe.skipIf(!torch.available)(
  `PyTorch interop (${torch.available ? `${torch.python}, torch ${torch.version}` : 'no torch'})`,
  () => {
    it('the CPU optimizer follows the reference PyTorch optimizer: float64 within 1e-13, float32 within the contract', () => {
      const truth = runTorch({ dtype: 'float64', from: 0, to: STEPS });
      const js64 = jsOptimizer('float64');
      js64.run(0, STEPS);
      expect(worst(jsResult(js64), truth)).toBeLessThanOrEqual(AGREEMENT);
      expect(js64.optimizer.paramGroups.map((g) => g.step)).toEqual(truth.steps);
      expect(truth.steps).toEqual([6, 5]);

      const js32 = jsOptimizer('float32');
      js32.run(0, STEPS);
      expect(worst(jsResult(js32), truth)).toBeLessThanOrEqual(accuracyBound('float32', STEPS));
      // The reference's own float32 run (seven rounded tensor ops per parameter) meets the same
      // contract, which is what makes the bound a fair one.
      const torch32 = runTorch({ dtype: 'float32', from: 0, to: STEPS });
      const torch32Error = worst(torch32, truth);
      expect(torch32Error).toBeLessThanOrEqual(accuracyBound('float32', STEPS));
      // And the trajectory moved: a run that did nothing would be far from the truth.
      expect(relativeError(Float64Array.from(INIT.a!), Float64Array.from(truth.params.a!))).toBeGreaterThan(
        1e-3,
      );
    });

    it('a state file written by the CPU optimizer continues on PyTorch where it left off, within 1e-13', () => {
      const truth = runTorch({ dtype: 'float64', from: 0, to: STEPS });
      const js = jsOptimizer('float64');
      js.run(0, 3);
      const file = join(workdir, 'from-js.safetensors');
      writeFileSync(file, js.optimizer.exportState());
      const init = Object.fromEntries(Object.entries(js.params).map(([n, p]) => [n, Array.from(p)]));
      const resumed = runTorch({ dtype: 'float64', init, from: 3, to: STEPS, loadState: file });
      expect(resumed.steps).toEqual([6, 5]);
      expect(worst(resumed, truth)).toBeLessThanOrEqual(AGREEMENT);
    });

    it('the Python reader rejects a file that does not fit, or is damaged, and changes nothing', () => {
      const js = jsOptimizer('float64');
      js.run(0, 3);
      js.optimizer.setLearningRate(0.5); // so a half-done load would show in the hyperparameters
      const good = js.optimizer.exportState();
      const renamed = new AccSGD([{ params: [new Float64Array(20)], names: ['x'] }], { lr: 0.1 });
      renamed.step([new Float64Array(20).fill(1)]);
      const reshaped = new AccSGD(
        GROUPS.map(({ params: names, ...hyper }) => ({
          ...hyper,
          params: names.map((n) => new Float64Array(size(n))),
          names,
          shapes: names.map((n) => (n === 'a' ? [4, 5] : SHAPES[n]!)),
        })),
        { lr: 0.1 },
      );
      reshaped.step({ a: new Float64Array(20).fill(1), b: new Float64Array(7), c: new Float64Array(3) });
      reshaped.setLearningRate(0.5); // a load that set hyperparameters before failing would show
      const hugeHeader = Uint8Array.from(good);
      new DataView(hugeHeader.buffer).setBigUint64(0, 2n ** 40n, true);
      const cases: [string, Uint8Array, RegExp][] = [
        ['other names', renamed.exportState(), /the file has 1 parameter groups; the optimizer has 2/],
        [
          'other shape',
          reshaped.exportState(),
          /buffer "a.momentum_buffer" has shape \[4, 5\]; the parameter has \[5, 4\]/,
        ],
        [
          'truncated',
          good.subarray(0, good.length - 4),
          /data_offsets \[\d+, \d+\] outside the \d+-byte data section/,
        ],
        [
          'huge header length',
          hugeHeader,
          /header length 1099511627776 exceeds the limit of 100000000 bytes/,
        ],
      ];
      for (const [what, bytes, message] of cases) {
        const file = join(workdir, `bad-${what.replaceAll(' ', '-')}.safetensors`);
        writeFileSync(file, bytes);
        const result = runTorch({ dtype: 'float64', from: 0, to: 0, loadState: file }) as unknown as {
          error?: string;
          untouched?: boolean;
        };
        expect(result.error, what).toMatch(message);
        expect(result.untouched, what).toBe(true);
      }
    });

    it('a state file written by PyTorch imports into the CPU optimizer and continues the same trajectory', () => {
      const truth = runTorch({ dtype: 'float64', from: 0, to: STEPS });
      const file = join(workdir, 'from-torch.safetensors');
      const first = runTorch({ dtype: 'float64', from: 0, to: 3, saveState: file });
      const js = jsOptimizer('float64', first.params);
      js.optimizer.importState(readFileSync(file));
      // The file carried the hyperparameters and step counts, not only the buffers.
      expect(js.optimizer.paramGroups.map((g) => [g.step, g.hyperparams.smallConst])).toEqual([
        [3, 0.7],
        [3, 0.5],
      ]);
      js.run(3, STEPS);
      expect(worst(jsResult(js), truth)).toBeLessThanOrEqual(AGREEMENT);
    });
  },
);

const GOLDEN = torch.available ? await listGoldenCases() : [];

describe.skipIf(!torch.available)(
  'the golden vectors against the reference PyTorch optimizer (float64)',
  () => {
    for (const name of GOLDEN) {
      it(`${name}: every step's parameters and buffers within 1e-13`, async () => {
        const golden = await loadGoldenCase(name);
        const { trace } = torchJob<{ trace: Snapshot[] }>({
          dtype: 'float64',
          groups: golden.problem.groups.map((group) => pythonGroup(group.hyperparams, group.params)),
          params: Object.fromEntries(
            Object.entries(golden.problem.params).map(([n, p]) => [
              n,
              { shape: p.shape, init: Array.from(p.init) },
            ]),
          ),
          steps: golden.steps.map((step) => ({
            lr: Object.fromEntries(step.learningRates.map(({ group, lr }) => [group, lr])),
            grads: Object.fromEntries(Object.entries(step.grads).map(([n, g]) => [n, g && Array.from(g)])),
          })),
          trace: true,
        });
        expect(trace).toHaveLength(golden.steps.length);
        golden.steps.forEach((step, k) => {
          const when = `after step ${k + 1}`;
          expect(worst(trace[k]!, step.expected, when), when).toBeLessThanOrEqual(AGREEMENT);
        });
      });
    }
  },
);

describe.skipIf(!torch.available)(
  'the Python state reader against the JavaScript one (differential fuzzing)',
  () => {
    // A valid file: two groups, float32 and float64 buffers, and a parameter without a buffer.
    const base = (() => {
      const optimizer = new AccSGD(
        [
          { params: [new Float32Array(6), new Float64Array(2)], names: ['w', 'b'], shapes: [[2, 3], [2]] },
          { params: [new Float32Array(3)], names: ['s'], lr: 0.01, kappa: 50, xi: 2 },
        ],
        { lr: 0.1, weightDecay: 1e-4 },
      );
      optimizer.step([new Float32Array(6).fill(0.5), new Float64Array([1, -1]), null]);
      return optimizer.exportState();
    })();
    const headerLength = Number(new DataView(base.buffer, base.byteOffset).getBigUint64(0, true));
    const headerText = new TextDecoder().decode(base.subarray(8, 8 + headerLength)).trimEnd();
    const body = base.subarray(8 + headerLength);

    /** A file with this header text (raw, so it may hold literals JSON.stringify cannot write). */
    function file(text: string, data: Uint8Array = body, declared?: bigint): Uint8Array {
      const json = new TextEncoder().encode(text);
      const out = new Uint8Array(8 + json.length + data.length);
      new DataView(out.buffer).setBigUint64(0, declared ?? BigInt(json.length), true);
      out.set(json, 8);
      out.set(data, 8 + json.length);
      return out;
    }

    // Values a damaged or hostile file may hold where a number, string or list belongs. RAW(...)
    // are written as they are: literals that JSON.stringify cannot produce.
    const hostile = fc.constantFrom<unknown>(
      null,
      true,
      0,
      -1,
      1,
      3,
      1.5,
      0.7,
      1e17,
      1e-320,
      'x',
      '',
      [],
      {},
      [1, 2],
      [2, 3],
      [0, 24],
      ['w'],
      1e306,
      [2 ** 40, 2 ** 40, 0],
      [...new Array(20).fill(2 ** 53 - 1), 0],
      `RAW(1${'0'.repeat(5000)})`,
      'RAW(1e400)',
      'RAW(-0)',
      'RAW(2.0)',
      'RAW(1e1)',
      'RAW(9007199254740993)',
      'RAW(123456789012345678901234567890)',
    );
    const withRaw = (text: string) => text.replace(/"RAW\(([^)]*)\)"/g, '$1');

    /** Replaces one field (by path) of the header, or of the param_groups JSON inside it. */
    function edited(path: (string | number)[], value: unknown, inGroups: boolean): Uint8Array {
      const header = JSON.parse(headerText) as Record<string, Record<string, unknown>>;
      const set = (target: Record<string | number, unknown>, keys: (string | number)[]) => {
        let at = target;
        for (const key of keys.slice(0, -1)) at = at[key] as Record<string | number, unknown>;
        // defineProperty, so that a "__proto__" key is written as a key, not as the prototype.
        Object.defineProperty(at, keys.at(-1)!, {
          value,
          enumerable: true,
          configurable: true,
          writable: true,
        });
      };
      if (inGroups) {
        const groups = JSON.parse(header.__metadata__!.param_groups as string);
        set(groups, path);
        header.__metadata__!.param_groups = withRaw(JSON.stringify(groups));
      } else {
        set(header, path);
      }
      return file(withRaw(JSON.stringify(header)));
    }

    const tensorKeys = Object.keys(JSON.parse(headerText)).filter((k) => k !== '__metadata__');
    const damaged = fc.oneof(
      fc.integer({ min: 0, max: base.length - 1 }).map((n) => base.slice(0, n)),
      fc
        .array(fc.tuple(fc.integer({ min: 0, max: base.length - 1 }), fc.integer({ min: 1, max: 255 })), {
          minLength: 1,
          maxLength: 4,
        })
        .map((flips) => {
          const out = base.slice();
          for (const [i, x] of flips) out[i] = out[i]! ^ x;
          return out;
        }),
      fc
        .constantFrom(
          0n,
          1n,
          7n,
          BigInt(headerLength - 1),
          BigInt(headerLength + 1),
          1n << 20n,
          (1n << 64n) - 1n,
        )
        .map((n) => file(headerText, body, n)),
      fc
        .tuple(
          fc.constantFrom(...tensorKeys),
          fc.constantFrom<(string | number)[]>(
            ['dtype'],
            ['shape'],
            ['shape', 0],
            ['data_offsets'],
            ['data_offsets', 1],
            ['extra'],
            ['__proto__'],
          ),
          hostile,
        )
        .map(([key, field, value]) => edited([key, ...field], value, false)),
      fc
        .tuple(fc.constantFrom('format', 'format_version', 'param_groups', 'extra', '__proto__'), hostile)
        .map(([key, value]) => edited(['__metadata__', key], value, false)),
      fc
        .tuple(
          fc.constantFrom(0, 1),
          fc.constantFrom<(string | number)[]>(
            ['lr'],
            ['kappa'],
            ['xi'],
            ['small_const'],
            ['weight_decay'],
            ['step'],
            ['params'],
            ['params', 0],
            ['extra'],
            ['__proto__'],
          ),
          hostile,
        )
        .map(([group, field, value]) => edited([group, ...field], value, true)),
      fc.constantFrom(
        file(`\ufeff${headerText}`),
        file(` ${headerText}`),
        file(
          headerText.replace(
            /}$/,
            `,"w.momentum_buffer":${JSON.stringify(JSON.parse(headerText)['w.momentum_buffer'])}}`,
          ),
        ),
        file(headerText.replace('"format":', '"format":"x","format":')),
        // a key twice inside the param_groups JSON string (escaped quotes in the header text)
        file(headerText.replace('\\"lr\\":', '\\"lr\\":1,\\"lr\\":')),
        file(headerText, new Uint8Array([...body, 0, 0, 0, 0])),
        file(headerText.replace('{', '[').replace(/}$/, ']')),
      ),
    );

    it('accepts and rejects the same 3,000 damaged files, and never fails with anything but StateError', () => {
      const corpus = [base, ...fc.sample(damaged, { numRuns: 3000, seed: 20261128 })];
      const paths = corpus.map((bytes, k) => {
        const path = join(workdir, `fuzz-${k}.safetensors`);
        writeFileSync(path, bytes);
        return path;
      });
      const { results } = torchJob<{ results: { ok?: true; error?: string; crash?: string }[] }>({
        validate: paths,
      });
      const mismatches: string[] = [];
      let rejected = 0;
      corpus.forEach((bytes, k) => {
        let js: string | null = null;
        try {
          decodeState(bytes);
        } catch (error) {
          expect(error, `file ${k}`).toBeInstanceOf(AccSGDStateError);
          js = (error as Error).message;
        }
        const py = results[k]!;
        expect(py.crash, `file ${k}`).toBeUndefined();
        if (js !== null) rejected++;
        if ((js === null) !== (py.ok === true))
          mismatches.push(`file ${k}: JS ${js ?? 'accepts'}; Python ${py.error ?? 'accepts'}`);
      });
      expect(mismatches.slice(0, 10)).toEqual([]);
      expect(results[0]).toEqual({ ok: true });
      // Most of the corpus is damaged: a generator that produced only valid files would prove nothing.
      expect(rejected).toBeGreaterThan(2000);
    });
  },
);
