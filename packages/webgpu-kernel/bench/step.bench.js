/**
 * One AccSGD step over 16,777,216 and 67,108,864 float32 parameters, beside a copyBufferToBuffer of
 * the same element count in the same run. The step moves 20 bytes per element (read p, g, buf;
 * write p, buf) and the copy 8 (read, write), so the floor is 2.5x the copy time; "of copy
 * bandwidth" is floor / step.
 *
 * A second baseline is a WGSL copy kernel (vec4 loads and stores, the update's own workgroup size
 * and grid-stride loop) over the same bytes. On a GPU it runs near copyBufferToBuffer; on CPU
 * implementations such as SwiftShader, where copyBufferToBuffer is a memcpy but every shader storage
 * access is emulated lane by lane, it is many times slower, and 2.5x its time ("kernel floor") is
 * the fastest any WGSL update could hope to be there.
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
import {
  createFlatStorage,
  defaultWorkgroupsPerDispatch,
  dispatchSize,
  WebGPUAccSGD,
  WORKGROUP_SIZE,
} from '../dist/index.js';

const { values: args } = parseArgs({
  options: {
    sizes: { type: 'string', default: '16777216,67108864' },
    repeats: { type: 'string', default: '7' },
    tensors: { type: 'string', default: '1024' },
    'non-finite': { type: 'string', default: 'error' },
    workgroups: { type: 'string' },
    layouts: { type: 'string', default: 'one tensor,tensors in one group,tensors as groups' },
  },
});
const SIZES = args.sizes.split(',').map(Number);
const REPEATS = Number(args.repeats);
const TENSORS = Number(args.tensors);
const NON_FINITE = args['non-finite'];
const WORKGROUPS = args.workgroups === undefined ? undefined : Number(args.workgroups);
const KNOWN_LAYOUTS = ['one tensor', 'tensors in one group', 'tensors as groups'];
const LAYOUTS = args.layouts.split(',').map((name) => name.trim());
for (const name of LAYOUTS) {
  if (!KNOWN_LAYOUTS.includes(name))
    throw new Error(`unknown layout "${name}" in --layouts (expected some of: ${KNOWN_LAYOUTS.join(', ')})`);
}
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
// Targets (see the README): on a GPU, "of copy bw" >= 80% (step <= 1.25x the copy floor); on a CPU
// adapter (SwiftShader, lavapipe), step <= 1.3x the copy floor.
const CPU_ADAPTER = /swiftshader|llvmpipe|lavapipe/i.test(how);
const TARGET = CPU_ADAPTER ? 1.3 : 1 / 0.8;
const TARGET_TEXT = CPU_ADAPTER ? 'step/floor <= 1.3x (CPU adapter)' : 'of copy bw >= 80% (GPU)';
const met = (r) => r.stepMs / (2.5 * r.copyMs) <= TARGET;
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
/**
 * Submits the encoder's work and returns its time in ms: between timestamps 0 and 1 when the
 * adapter has timestamp-query, else wall time to onSubmittedWorkDone.
 */
async function submitTimed(encoder) {
  const start = performance.now();
  device.queue.submit([encoder.finish()]);
  await device.queue.onSubmittedWorkDone();
  const wall = performance.now() - start;
  if (!querySet) return wall;
  const [a, b] = await readTimestamps();
  return Number(b - a) / 1e6;
}
async function timeCopy(source, target, bytes) {
  const encoder = device.createCommandEncoder();
  if (querySet) encoder.beginComputePass({ timestampWrites: { querySet, endOfPassWriteIndex: 0 } }).end();
  encoder.copyBufferToBuffer(source, 0, target, 0, bytes);
  if (querySet)
    encoder.beginComputePass({ timestampWrites: { querySet, beginningOfPassWriteIndex: 1 } }).end();
  return submitTimed(encoder);
}
// The simplest grid-stride copy, one vec4 per invocation per pass: on SwiftShader it measured the
// fastest of the shapes tried (unrolled runs per invocation, contiguous blocks per invocation).
device.pushErrorScope('validation');
const copyModule = device.createShaderModule({
  label: 'bench: WGSL copy kernel',
  code: `@group(0) @binding(0) var<storage, read> source: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> destination: array<vec4<f32>>;
@compute @workgroup_size(${WORKGROUP_SIZE})
fn main(@builtin(workgroup_id) workgroup: vec3<u32>, @builtin(num_workgroups) workgroups: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
  let length = arrayLength(&destination);
  let stride = workgroups.x * workgroups.y * ${WORKGROUP_SIZE}u;
  for (var i = (workgroup.y * workgroups.x + workgroup.x) * ${WORKGROUP_SIZE}u + lane; i < length; i += stride) {
    destination[i] = source[i];
  }
}`,
});
const copyPipeline = device.createComputePipeline({
  label: 'bench: WGSL copy kernel',
  layout: 'auto',
  compute: { module: copyModule, entryPoint: 'main' },
});
const copyKernelError = await device.popErrorScope();
if (copyKernelError) throw new Error(`the WGSL copy kernel does not build: ${copyKernelError.message}`);
/** Bind groups of the copy kernel over source and target, one per binding window (like the update's). */
function copyKernelBindGroups(source, target, bytes) {
  const window = Math.floor(device.limits.maxStorageBufferBindingSize / 256) * 256;
  const groups = [];
  for (let offset = 0; offset < bytes; offset += window) {
    const size = Math.min(window, bytes - offset);
    groups.push({
      elements: size / 4,
      bindGroup: device.createBindGroup({
        layout: copyPipeline.getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: source, offset, size } },
          { binding: 1, resource: { buffer: target, offset, size } },
        ],
      }),
    });
  }
  return groups;
}
async function timeCopyKernel(windows) {
  const encoder = device.createCommandEncoder();
  const pass = encoder.beginComputePass(
    querySet ? { timestampWrites: { querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } } : {},
  );
  pass.setPipeline(copyPipeline);
  for (const { elements, bindGroup } of windows) {
    pass.setBindGroup(0, bindGroup);
    const [x, y] = dispatchSize(
      elements,
      device.limits.maxComputeWorkgroupsPerDimension,
      WORKGROUPS ?? defaultWorkgroupsPerDispatch(device),
      WORKGROUP_SIZE * 4,
    );
    pass.dispatchWorkgroups(x, y);
  }
  pass.end();
  return submitTimed(encoder);
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
    layout === 'tensors as groups'
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
    { nonFinite: NON_FINITE, workgroupsPerDispatch: WORKGROUPS },
  );
  const copySource = device.createBuffer({ size: elements * 4, usage: USAGE });
  const copyTarget = device.createBuffer({ size: elements * 4, usage: USAGE });
  // The first step initialises the buffers (and warms up).
  await timeStep(optimizer);
  const copyWindows = copyKernelBindGroups(copySource, copyTarget, elements * 4);
  await timeCopy(copySource, copyTarget, elements * 4);
  await timeCopyKernel(copyWindows);
  const steps = [];
  const copies = [];
  const kernelCopies = [];
  for (let r = 0; r < REPEATS; r++) {
    steps.push(await timeStep(optimizer));
    copies.push(await timeCopy(copySource, copyTarget, elements * 4));
    kernelCopies.push(await timeCopyKernel(copyWindows));
  }
  const row = {
    elements,
    layout: layout === 'one tensor' ? layout : `${tensors} ${layout}`,
    dispatches: optimizer.dispatchesPerStep,
    stepMs: median(steps),
    copyMs: median(copies),
    kernelCopyMs: median(kernelCopies),
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
// Columns: header, width, value of a row.
const COLUMNS = [
  ['elements', 10, (r) => String(r.elements)],
  ['layout', 30, (r) => r.layout],
  ['disp.', 5, (r) => String(r.dispatches)],
  ['step', 11, (r) => `${r.stepMs.toFixed(2)} ms`],
  ['copy', 10, (r) => `${r.copyMs.toFixed(2)} ms`],
  ['step/floor', 10, (r) => `${(r.stepMs / (2.5 * r.copyMs)).toFixed(2)}x`],
  ['of copy bw', 10, (r) => `${((250 * r.copyMs) / r.stepMs).toFixed(0)}%`],
  ['WGSL copy', 11, (r) => `${r.kernelCopyMs.toFixed(2)} ms`],
  ['step/kernel floor', 17, (r) => `${(r.stepMs / (2.5 * r.kernelCopyMs)).toFixed(2)}x`],
  ['target', 6, (r) => (met(r) ? 'met' : 'missed')],
];
const line = (cells) =>
  cells.map((cell, k) => (k === 1 ? cell.padEnd(COLUMNS[k][1]) : cell.padStart(COLUMNS[k][1]))).join('  ');
const printRow = (r) => console.log(line(COLUMNS.map(([, , value]) => value(r))));
const printHeader = () => console.log(line(COLUMNS.map(([header]) => header)));
printHeader();
for (const elements of SIZES) {
  for (const layout of LAYOUTS) {
    const row = await measure(elements, layout);
    rows.push(row);
    printRow(row);
  }
}
console.log('');
printHeader();
for (const r of rows) printRow(r);
for (const elements of SIZES) {
  const multi = rows.find((r) => r.elements === elements && r.layout.endsWith('in one group'));
  const single = rows.find((r) => r.elements === elements && r.layout.endsWith('as groups'));
  if (!multi || !single) continue;
  console.log(
    `${elements}: one multi-tensor dispatch is ${(single.stepMs / multi.stepMs).toFixed(2)}x faster than ${TENSORS} per-tensor dispatches`,
  );
}
console.log(
  `target: ${TARGET_TEXT}: ${rows.filter(met).length} of ${rows.length} rows met, ${rows.filter((r) => !met(r)).length} missed`,
);
clearInterval(keepAlive);
device.destroy();
process.exit(0);
