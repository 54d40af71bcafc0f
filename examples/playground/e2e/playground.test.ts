import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeSafetensors, encodeSafetensors, encodeState } from '@accsgd/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, OUTPUT, openPlayground, reloadReady, usesWebGPU, webgpuRequired } from './harness.js';

// The built page (npm run build) in headless Chromium: every backend trains, the conformance panel
// passes, save/resume continues exactly, and the page logs no error and asks nothing of the network.
// WebGPU backends skip with a notice where Chromium finds no adapter, unless ACCSGD_REQUIRE_WEBGPU=1.

const BACKENDS = [
  'tfjs-webgpu',
  'tfjs-webgl',
  'tfjs-wasm',
  'tfjs-cpu',
  'webgpu-kernel',
  'ort-webgpu',
  'ort-wasm',
] as const;
type Backend = (typeof BACKENDS)[number];
interface BackendInfo {
  name: Backend;
  available: boolean;
  reason?: string;
}
interface TrainResult {
  losses: number[];
  accuracy?: number;
  backend: string;
}

let h: Harness;
let backends: BackendInfo[];

const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;

function train(backend: string, optimizer: string, steps: number, task = 'mnist'): Promise<TrainResult> {
  return h.page.evaluate((r) => window.accsgdPlayground.train(r as never) as Promise<TrainResult>, {
    task,
    backend,
    optimizer,
    steps,
    seed: 1,
  });
}

/** Whether the backend is here; a missing WebGPU backend skips with a notice unless required. */
function availableOrSkip(backend: Backend, skip: (note: string) => void): boolean {
  const info = backends.find((b) => b.name === backend)!;
  if (info.available) return true;
  if (usesWebGPU(backend) && !webgpuRequired()) {
    console.warn(`[playground e2e] skipping ${backend}: ${info.reason}`);
    skip(info.reason ?? 'unavailable');
    return false;
  }
  throw new Error(`${backend} is unavailable in Chromium: ${info.reason}`);
}

/** Pixels of the loss chart's canvas that are not background: a drawn curve has hundreds. */
async function drawnPixels(): Promise<number> {
  return h.page.evaluate(() => {
    const canvas = document.querySelector<HTMLCanvasElement>('#loss-chart canvas');
    if (!canvas) return 0;
    const { data } = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height);
    let colored = 0;
    for (let i = 0; i < data.length; i += 4) {
      // Coloured (series) pixels: channels differ; axes and grid are grey.
      if (
        data[i + 3]! > 0 &&
        Math.max(data[i]!, data[i + 1]!, data[i + 2]!) - Math.min(data[i]!, data[i + 1]!, data[i + 2]!) > 60
      )
        colored++;
    }
    return colored;
  });
}

/** Waits until the element's text contains `text` (the page updates it asynchronously). */
async function waitForText(selector: string, text: string): Promise<void> {
  await h.page.waitForFunction(
    ({ selector, text }) =>
      [...document.querySelectorAll(selector)].some((e) => e.textContent?.includes(text)),
    { selector, text },
    { timeout: 120_000 },
  );
}

beforeAll(async () => {
  h = await openPlayground();
  backends = await h.page.evaluate(() => window.accsgdPlayground.backends() as Promise<BackendInfo[]>);
});

afterAll(async () => {
  await h?.close();
});

describe('the playground page', () => {
  it('lists the seven backends, with a reason for each one it lacks', () => {
    expect(backends.map((b) => b.name)).toEqual([...BACKENDS]);
    for (const b of backends) if (!b.available) expect(b.reason).toMatch(/\w/);
    for (const name of ['tfjs-cpu', 'tfjs-wasm', 'tfjs-webgl', 'ort-wasm'])
      expect(backends.find((b) => b.name === name)?.available, name).toBe(true);
    if (webgpuRequired())
      for (const b of backends.filter((b) => usesWebGPU(b.name)))
        expect(b.available, `${b.name}: ${b.reason} (ACCSGD_REQUIRE_WEBGPU=1)`).toBe(true);
  });

  describe.each(BACKENDS)('%s', (backend) => {
    it('trains 40 steps of AccSGD and of momentum on MNIST: the loss falls and the curve renders', async (ctx) => {
      if (!availableOrSkip(backend, (note) => ctx.skip(note))) return;
      const accsgd = await train(backend, 'accsgd', 40);
      expect(accsgd.backend).toBe(backend);
      expect(accsgd.losses).toHaveLength(40);
      // From the same initial weights every backend starts at ln(10)-ish: 2.46 for seed 1.
      expect(accsgd.losses[0]).toBeCloseTo(2.465, 2);
      expect(mean(accsgd.losses.slice(-5))).toBeLessThan(0.6 * mean(accsgd.losses.slice(0, 5)));
      expect(accsgd.accuracy).toBeGreaterThan(0.6);
      if (backend.startsWith('tfjs-')) {
        const momentum = await train(backend, 'momentum', 40);
        expect(momentum.losses).toHaveLength(40);
        expect(momentum.losses[0]).toBe(accsgd.losses[0]); // same weights, same first batch
        expect(mean(momentum.losses.slice(-5))).toBeLessThan(0.6 * mean(momentum.losses.slice(0, 5)));
      } else {
        // The raw kernel and OnnxTrainer are AccSGD only: the page says so instead of training.
        await expect(train(backend, 'momentum', 40)).rejects.toThrow(/runs only AccSGD/);
      }
      await h.page.waitForFunction(() => Number(document.body.dataset.drawn) >= 40);
      expect(await drawnPixels()).toBeGreaterThan(300);
      await waitForText('#loss-chart .u-legend', `accsgd @ ${backend}`);
      await h.page.locator('#train-panel').screenshot({ path: join(OUTPUT, `${backend}.png`) });
    });
  });

  it('trains the conv net where the backend can, and says why elsewhere', async () => {
    const cnn = await train('tfjs-cpu', 'accsgd', 20, 'mnist-cnn');
    expect(cnn.losses).toHaveLength(20);
    expect(mean(cnn.losses.slice(-3))).toBeLessThan(mean(cnn.losses.slice(0, 3)));
    // OnnxTrainer trains the same conv net (the ONNX graph transposes tfjs's HWIO kernel and NHWC
    // activations) from the same weights on the same batches: the same curve up to float32 rounding
    // (measured: 3e-7 apart after 20 steps).
    const onnx = await train('ort-wasm', 'accsgd', 20, 'mnist-cnn');
    expect(onnx.backend).toBe('ort-wasm');
    expect(onnx.losses).toHaveLength(20);
    onnx.losses.forEach((loss, i) => expect(loss, `step ${i + 1}`).toBeCloseTo(cnn.losses[i]!, 4));
    expect(mean(onnx.losses.slice(-3))).toBeLessThan(mean(onnx.losses.slice(0, 3)));
    await expect(train('tfjs-wasm', 'accsgd', 5, 'mnist-cnn')).rejects.toThrow(/no conv backward kernels/);
    await expect(train('ort-wasm', 'momentum', 5, 'mnist-cnn')).rejects.toThrow(/runs only AccSGD/);
    await expect(train('tfjs-cpu', 'rmsprop', 5)).rejects.toThrow(/optimizer "rmsprop" is not one of/);
  });

  it('trains the conv net on ort-webgpu as on the CPU', async (ctx) => {
    if (!availableOrSkip('ort-webgpu', (note) => ctx.skip(note))) return;
    // Few steps: SwiftShader runs the conv net's gradient shaders slowly (20 steps took a minute).
    const cpu = await train('tfjs-cpu', 'accsgd', 4, 'mnist-cnn');
    const gpu = await train('ort-webgpu', 'accsgd', 4, 'mnist-cnn');
    expect(gpu.backend).toBe('ort-webgpu');
    gpu.losses.forEach((loss, i) => expect(loss, `step ${i + 1}`).toBeCloseTo(cpu.losses[i]!, 4));
  });

  it.for(['core', ...BACKENDS] as const)(
    'conformance on %s in the page passes every check',
    async (adapter, ctx) => {
      if (adapter !== 'core' && !availableOrSkip(adapter, (note) => ctx.skip(note))) return;
      const result = await h.page.evaluate((a) => window.accsgdPlayground.conformance(a as never), adapter);
      expect(result.total).toBe(51);
      expect(result.passed, result.diagnosis).toBe(result.total);
      await waitForText(`#conformance-summary tr[data-adapter="${adapter}"]`, '51/51');
    },
  );

  describe.each(['tfjs-cpu', 'tfjs-webgpu', 'webgpu-kernel', 'ort-wasm', 'ort-webgpu'] as const)(
    'save and resume on %s',
    (backend) => {
      it('save, reload, import, continue: the next losses equal the uninterrupted run', async (ctx) => {
        if (!availableOrSkip(backend, (note) => ctx.skip(note))) return;
        await train(backend, 'accsgd', 10);
        const [download] = await Promise.all([h.page.waitForEvent('download'), h.page.click('#save')]);
        const file = join(OUTPUT, `checkpoint-${backend}.safetensors`);
        await download.saveAs(file);
        const uninterrupted = await h.page.evaluate(() => window.accsgdPlayground.continue(3));
        expect(uninterrupted.step).toBe(13);

        await reloadReady(h.page);
        await h.page.setInputFiles('#import', file);
        await waitForText('#checkpoint-status', 'at step 10');
        const resumed = await h.page.evaluate(() => window.accsgdPlayground.continue(3));
        expect(resumed.step).toBe(13);
        expect(resumed.losses).toEqual(uninterrupted.losses);
        // Continue through the page's own button too.
        await h.page.fill('#continue-steps', '2');
        await h.page.click('#continue');
        await h.page.waitForFunction(() => window.accsgdPlayground.currentRun()?.step === 15);
      });
    },
  );

  it('a corrupt or mismatched file shows the parser message and changes nothing', async () => {
    const saved = new Uint8Array(await readFile(join(OUTPUT, 'checkpoint-tfjs-cpu.safetensors')));
    const before = await h.page.evaluate(() => window.accsgdPlayground.currentRun());
    expect(before).not.toBeNull();
    const tryImport = async (name: string, bytes: Uint8Array) => {
      await h.page.evaluate(() => {
        document.getElementById('checkpoint-status')!.textContent = '';
      });
      await h.page.setInputFiles('#import', {
        name,
        mimeType: 'application/octet-stream',
        buffer: Buffer.from(bytes),
      });
      await h.page.waitForFunction(() => {
        const status = document.getElementById('checkpoint-status')!;
        return status.dataset.kind === 'error' && status.textContent !== '';
      });
      expect(await h.page.evaluate(() => window.accsgdPlayground.currentRun())).toEqual(before);
      return h.page.locator('#checkpoint-status').textContent();
    };
    expect(await tryImport('corrupt.safetensors', new TextEncoder().encode('not a state file'))).toMatch(
      /AccSGDStateError/,
    );
    // The optimizer state of other parameters: the adapter's own strict import rejects it.
    const file = decodeSafetensors(saved);
    const foreignState = encodeState({
      groups: [
        {
          params: ['x'],
          step: 1,
          hyperparams: { lr: 0.1, kappa: 1000, xi: 10, smallConst: 0.7, weightDecay: 0 },
        },
      ],
      buffers: new Map(),
    });
    const withForeignState = encodeSafetensors([...file.tensors], {
      ...file.metadata,
      state: Buffer.from(foreignState).toString('base64'),
    });
    expect(await tryImport('foreign-state.safetensors', withForeignState)).toMatch(/AccSGDStateError/);
    // The same on OnnxTrainer: its importState refuses the state of other parameters.
    const ort = decodeSafetensors(
      new Uint8Array(await readFile(join(OUTPUT, 'checkpoint-ort-wasm.safetensors'))),
    );
    const ortForeign = encodeSafetensors([...ort.tensors], {
      ...ort.metadata,
      state: Buffer.from(foreignState).toString('base64'),
    });
    expect(await tryImport('ort-foreign-state.safetensors', ortForeign)).toMatch(/AccSGDStateError/);
    // Parameters of another model (the MNIST weights offered as the toy task's).
    const otherTask = encodeSafetensors([...file.tensors], { ...file.metadata, task: 'toy' });
    expect(await tryImport('other-task.safetensors', otherTask)).toMatch(
      /"W1" has 50176 values in the checkpoint, expected 32/,
    );
  });

  it('trains from the form: AccSGD beside momentum on the toy task, with its decision boundary', async (ctx) => {
    const backend = backends.find((b) => b.name === 'tfjs-webgl')!.available ? 'tfjs-webgl' : 'tfjs-cpu';
    await reloadReady(h.page);
    await h.page.selectOption('#task', 'toy');
    await h.page.selectOption('#backend', backend);
    await h.page.fill('#steps', '60');
    expect(await h.page.isChecked('#use-accsgd')).toBe(true);
    expect(await h.page.isChecked('#use-momentum')).toBe(true);
    await h.page.click('#train');
    await waitForText('#status', `toy on ${backend}: accsgd`);
    const rows = await h.page.locator('#runs tbody tr').allTextContents();
    expect(rows).toHaveLength(2);
    expect(rows[0]).toContain(`accsgd @ ${backend}60`);
    const boundary = await h.page.evaluate(() => {
      const canvas = document.getElementById('boundary') as HTMLCanvasElement;
      const { data } = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height);
      const colours = new Set<number>();
      for (let i = 0; i < data.length; i += 4)
        colours.add((data[i]! << 16) | (data[i + 1]! << 8) | data[i + 2]!);
      return colours.size;
    });
    // A probability field with test points on it: many colours, not a blank canvas.
    expect(boundary).toBeGreaterThan(50);
    ctx.annotate(`form run on ${backend}: ${rows.join(' | ')}`);
    // The README's screenshot: the training panel after this run.
    await h.page.locator('#train-panel').screenshot({ path: join(OUTPUT, 'page.png') });
  });

  it("replays the paper's linear-regression result: AccSGD needs the fewest iterations at every kappa", async () => {
    await h.page.fill('#paper-kappa', '2.5');
    await h.page.click('#paper-run');
    await h.page.waitForFunction(
      () =>
        !(document.getElementById('paper-run') as HTMLButtonElement).disabled &&
        document.querySelectorAll('#paper-table tbody tr').length === 5,
    );
    const rows = await h.page.$$eval('#paper-table tbody tr', (trs) =>
      trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => Number(td.textContent))),
    );
    // kappa 16..256; columns SGD, heavy ball, Nesterov, AccSGD (iterations at each one's best setting).
    expect(rows.map((r) => r[0])).toEqual([16, 32, 64, 128, 256]);
    for (const [kappa, sgd, hb, nag, acc] of rows) {
      expect(acc, `kappa ${kappa}`).toBeLessThan(Math.min(sgd!, hb!, nag!));
      expect(sgd, `kappa ${kappa}`).toBeGreaterThan(kappa! * 4); // SGD grows like kappa
    }
    await h.page.waitForSelector('#paper-chart canvas');
  });

  it('measures AccSGD beside momentum per backend, as ratios', async () => {
    const rows = await h.page.evaluate(() => window.accsgdPlayground.throughput(['tfjs-cpu', 'tfjs-wasm']));
    expect(rows.map((r) => r.backend)).toEqual(['tfjs-wasm', 'tfjs-cpu']); // in the page's order
    for (const r of rows) {
      expect(r.accsgd).toBeGreaterThan(0);
      expect(r.momentum).toBeGreaterThan(0);
    }
    const cells = await h.page.$$eval('#throughput tbody tr', (trs) => trs.map((tr) => tr.textContent));
    expect(cells).toHaveLength(2);
    for (const text of cells) expect(text).toMatch(/\d\.\d\dx$/);
    console.info(
      `[playground e2e] throughput (steps/s, AccSGD vs momentum): ${rows.map((r) => `${r.backend} ${r.accsgd.toFixed(1)} vs ${r.momentum?.toFixed(1)}`).join(', ')}`,
    );
  });

  it('logged no console error, failed no request and asked nothing of any other origin', async () => {
    await writeFile(join(OUTPUT, 'problems.txt'), h.problems.join('\n'));
    expect(h.problems).toEqual([]);
    expect(h.foreign).toEqual([]);
  });
});
