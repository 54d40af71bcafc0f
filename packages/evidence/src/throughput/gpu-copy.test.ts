import { findNodeWebGPU, webgpuRequired } from '@accsgd/conformance';
import { describe, expect, it } from 'vitest';
import { bandwidth, formatBandwidth, wgslCopy } from './gpu-copy.js';
import { bandwidthLines } from './report.js';
import type { Row, SectionResult } from './types.js';

describe('effective bandwidth beside a copy kernel', () => {
  it('divides bytes by time and compares with the copy kernel', () => {
    // 20 B x 16,777,216 = 335,544,320 B in 10 ms: 33.6 GB/s; the copy: 8 B x 16,777,216 in 2 ms: 67.1 GB/s.
    const b = bandwidth({ bytes: 335_544_320, ms: 10 }, { bytes: 134_217_728, ms: 2 }, '20 B per element');
    expect(b.stepGBps).toBeCloseTo(33.554432, 9);
    expect(b.copyGBps).toBeCloseTo(67.108864, 9);
    expect(b.ratio).toBeCloseTo(0.5, 12);
    expect(formatBandwidth(b)).toBe(
      "33.6 GB/s, 0.50x the WGSL copy kernel's 67.1 GB/s measured in the same run (20 B per element)",
    );
    expect(formatBandwidth({ ...b, stepGBps: 0.004321, copyGBps: 512.4, ratio: 0.0000084 })).toBe(
      "0.00432 GB/s, 0.00x the WGSL copy kernel's 512 GB/s measured in the same run (20 B per element)",
    );
  });

  it('lists every row that has a bandwidth, train steps included', () => {
    const row: Row = {
      framework: '@accsgd/webgpu-kernel',
      backend: 'webgpu (x)',
      layout: '1 x 16,777,216',
      variant: 'step',
      ms: 10,
      baseline: 'copy',
      baselineMs: 5,
      ratio: 2,
    };
    const b = bandwidth({ bytes: 2e9, ms: 1000 }, { bytes: 4e9, ms: 1000 }, 'model');
    const sections: SectionResult[] = [
      { section: 'webgpu-kernel', rows: [row, { ...row, variant: 'with', bandwidth: b }] },
      {
        section: 'train-step',
        rows: [],
        trainStep: {
          workload: 'w',
          warmupSteps: 1,
          blocks: 1,
          blockSeconds: 1,
          minStepsPerBlock: 1,
          skipped: [],
          rows: [
            {
              framework: '@accsgd/tfjs',
              runtime: 'tfjs webgpu',
              variant: 'v',
              stepsPerSecond: 1,
              stepsPerBlock: 1,
              baseline: 'b',
              baselineStepsPerSecond: 1,
              ratio: 1,
              warmupLoss: 1,
              bandwidth: b,
            },
          ],
        },
      },
    ];
    expect(bandwidthLines(sections)).toEqual([
      "1 x 16,777,216, @accsgd/webgpu-kernel webgpu (x), with: 2.00 GB/s, 0.50x the WGSL copy kernel's 4.00 GB/s measured in the same run (model)",
      "train step, @accsgd/tfjs tfjs webgpu: 2.00 GB/s, 0.50x the WGSL copy kernel's 4.00 GB/s measured in the same run (model)",
    ]);
  });
});

const found = await findNodeWebGPU();
const reason = found.available ? undefined : found.reason;
if (reason && !webgpuRequired()) console.warn(`\n[accsgd] SKIPPED the WGSL copy kernel test: ${reason}\n`);

describe.skipIf(reason !== undefined && !webgpuRequired())('the WGSL copy kernel', () => {
  it('copies every element, a partial vector included', async () => {
    if (!found.available) expect.fail(`ACCSGD_REQUIRE_WEBGPU=1 but ${reason}`);
    const device = (await (found.adapter as GPUAdapter).requestDevice()) as GPUDevice;
    try {
      const n = 1_001;
      const copy = wgslCopy(device, n);
      expect(copy.bytes).toBe(8 * n);
      const values = Float32Array.from({ length: 1_004 }, (_, i) => i * 0.5 - 7);
      device.queue.writeBuffer(copy.source, 0, values);
      await copy.run();
      const readBack = device.createBuffer({
        size: values.byteLength,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      });
      const encoder = device.createCommandEncoder();
      encoder.copyBufferToBuffer(copy.target, 0, readBack, 0, values.byteLength);
      device.queue.submit([encoder.finish()]);
      await readBack.mapAsync(GPUMapMode.READ);
      expect([...new Float32Array(readBack.getMappedRange())]).toEqual([...values]);
      readBack.destroy();
      copy.destroy();
    } finally {
      device.destroy();
    }
  }, 60_000);
});
