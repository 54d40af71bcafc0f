/**
 * One AccSGD step over 16,777,216 and 67,108,864 float32 parameters, beside a copyBufferToBuffer of
 * the same element count in the same run. The step moves 20 bytes per element (read p, g, buf;
 * write p, buf) and the copy 8 (read, write), so the floor is 2.5x the copy time; "of copy
 * bandwidth" is floor / step.
 *
 *   npm run bench                       # from packages/webgpu-kernel (builds nothing: run `npm run build` first)
 *   npm run bench -- --sizes 16777216 --repeats 9 --tensors 1024
 *
 * Layouts: one tensor; 1024 tensors in one group (one multi-tensor dispatch); 1024 tensors as 1024
 * groups (1024 per-tensor dispatches in the same compute pass).
 *
 * Timing: GPU timestamps when the adapter has 'timestamp-query' (the copy is bracketed by two empty
 * compute passes, since timestamps are written only at pass boundaries), else wall time to
 * onSubmittedWorkDone. A real GPU is preferred; SwiftShader is used only when there is none.
 * Prints; asserts nothing. Plain JavaScript over dist/, like the core's bench.
 */
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createFlatStorage, WebGPUAccSGD } from '../dist/index.js';

const { values: args } = parseArgs({
  options: {
    sizes: { type: 'string', default: '16777216,67108864' },
    repeats: { type: 'string', default: '7' },
    tensors: { type: 'string', default: '1024' },
  },
});
const SIZES = args.sizes.split(',').map(Number);
const REPEATS = Number(args.repeats);
const TENSORS = Number(args.tensors);
const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
let gpuInstance;
async function openAdapter() {
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  const dawn = await import('webgpu');
  Object.assign(globalThis, dawn.globals);
  // Keep the GPU instance referenced: Dawn tears everything down when it is garbage collected.
  gpuInstance = dawn.create([]);
  let found = await gpuInstance.requestAdapter({ powerPreference: 'high-performance' });
  if (!found && !process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER_ICD)) {
    process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
    gpuInstance = dawn.create([]);
    found = await gpuInstance.requestAdapter();
  }
  if (!found)
    throw new Error('no WebGPU adapter (on a machine without a GPU: apt-get install chromium libvulkan1)');
  const info = found.info;
  return {
    adapter: found,
    how: `${info.vendor || '?'} / ${info.architecture || info.device || '?'} ${info.description ?? ''}`.trim(),
  };
}
const { adapter, how } = await openAdapter();
const timestamps = adapter.features.has('timestamp-query');
const device = await adapter.requestDevice({
  requiredFeatures: timestamps ? ['timestamp-query'] : [],
  requiredLimits: {
    maxBufferSize: adapter.limits.maxBufferSize,
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
  },
});
// Dawn's pending promises do not keep Node's event loop alive on their own.
const keepAlive = setInterval(() => {}, 1e3);
const USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
const querySet = timestamps ? device.createQuerySet({ type: 'timestamp', count: 4 }) : null;
const resolveBuffer = device.createBuffer({
  size: 32,
  usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
});
const readBuffer = device.createBuffer({
  size: 32,
  usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
});
async function readTimestamps() {
  const encoder = device.createCommandEncoder();
  encoder.resolveQuerySet(querySet, 0, 4, resolveBuffer, 0);
  encoder.copyBufferToBuffer(resolveBuffer, 0, readBuffer, 0, 32);
  device.queue.submit([encoder.finish()]);
  await readBuffer.mapAsync(GPUMapMode.READ);
  const values = [...new BigUint64Array(readBuffer.getMappedRange().slice(0))];
  readBuffer.unmap();
  return values;
}
async function timeCopy(source, target, bytes) {
  const encoder = device.createCommandEncoder();
  if (querySet) encoder.beginComputePass({ timestampWrites: { querySet, endOfPassWriteIndex: 0 } }).end();
  encoder.copyBufferToBuffer(source, 0, target, 0, bytes);
  if (querySet)
    encoder.beginComputePass({ timestampWrites: { querySet, beginningOfPassWriteIndex: 1 } }).end();
  const start = performance.now();
  device.queue.submit([encoder.finish()]);
  await device.queue.onSubmittedWorkDone();
  const wall = performance.now() - start;
  if (!querySet) return wall;
  const [a, b] = await readTimestamps();
  return Number(b - a) / 1e6;
}
async function timeStep(optimizer) {
  const start = performance.now();
  await optimizer.step(
    void 0,
    querySet ? { timestampWrites: { querySet, beginningOfPassWriteIndex: 2, endOfPassWriteIndex: 3 } } : {},
  );
  await device.queue.onSubmittedWorkDone();
  const wall = performance.now() - start;
  if (!querySet) return wall;
  const [, , a, b] = await readTimestamps();
  return Number(b - a) / 1e6;
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
async function measure(elements, layout) {
  const tensors = layout === 'one tensor' ? 1 : TENSORS;
  const per = elements / tensors;
  const storages =
    layout === 'tensors, one dispatch each'
      ? Array.from({ length: tensors }, (_, k) =>
          createFlatStorage(device, [{ name: `t${k}`, shape: [per] }]),
        )
      : [
          createFlatStorage(
            device,
            Array.from({ length: tensors }, (_, k) => ({ name: `t${k}`, shape: [per] })),
          ),
        ];
  for (const s of storages) {
    for (const buffer of [s.params, s.grads]) {
      const encoder = device.createCommandEncoder();
      encoder.clearBuffer(buffer);
      device.queue.submit([encoder.finish()]);
    }
  }
  const optimizer = await WebGPUAccSGD.create(
    device,
    storages.map((s) => ({ params: s.params, grads: s.grads, segments: s.segments })),
    { lr: 0.01 },
  );
  const copySource = device.createBuffer({ size: elements * 4, usage: USAGE });
  const copyTarget = device.createBuffer({ size: elements * 4, usage: USAGE });
  // The first step initialises the buffers (and warms up).
  await timeStep(optimizer);
  await timeCopy(copySource, copyTarget, elements * 4);
  const steps = [];
  const copies = [];
  for (let r = 0; r < REPEATS; r++) {
    steps.push(await timeStep(optimizer));
    copies.push(await timeCopy(copySource, copyTarget, elements * 4));
  }
  const row = {
    elements,
    layout: layout === 'one tensor' ? layout : `${tensors} ${layout}`,
    dispatches: optimizer.dispatchesPerStep,
    stepMs: median(steps),
    copyMs: median(copies),
  };
  optimizer.destroy();
  for (const s of storages) s.destroy();
  copySource.destroy();
  copyTarget.destroy();
  return row;
}
const rows = [];
console.log(`AccSGD WebGPU step vs copyBufferToBuffer on ${how}`);
console.log(
  `timing: ${timestamps ? 'GPU timestamps' : 'onSubmittedWorkDone wall time'}; median of ${REPEATS}; maxStorageBufferBindingSize ${device.limits.maxStorageBufferBindingSize}`,
);
for (const elements of SIZES) {
  for (const layout of ['one tensor', 'tensors, one group', 'tensors, one dispatch each']) {
    const row = await measure(elements, layout);
    rows.push(row);
    printRow(row);
  }
}
function printRow(r) {
  const floor = 2.5 * r.copyMs;
  console.log(
    [
      String(r.elements).padStart(10),
      r.layout.padEnd(32),
      String(r.dispatches).padStart(5),
      `${r.stepMs.toFixed(2)} ms`.padStart(11),
      `${r.copyMs.toFixed(2)} ms`.padStart(11),
      `${(r.stepMs / r.copyMs).toFixed(2)}x copy`.padStart(11),
      `${(r.stepMs / floor).toFixed(2)}x floor`.padStart(12),
      `${((100 * floor) / r.stepMs).toFixed(0)}% of copy bandwidth`.padStart(24),
    ].join('  '),
  );
}
console.log(
  '\nelements    layout                            disp.        step        copy   step/copy  step/floor',
);
for (const r of rows) printRow(r);
for (const elements of SIZES) {
  const multi = rows.find((r) => r.elements === elements && r.layout.endsWith('one group'));
  const single = rows.find((r) => r.elements === elements && r.layout.endsWith('dispatch each'));
  console.log(
    `${elements}: one multi-tensor dispatch is ${(single.stepMs / multi.stepMs).toFixed(2)}x faster than ${TENSORS} per-tensor dispatches`,
  );
}
clearInterval(keepAlive);
device.destroy();
process.exit(0);
