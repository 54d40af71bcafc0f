/**
 * A training program that consumes a parameter the way user kernels do: bound straight from the
 * flat params buffer (FlatStorage.binding), read by a WGSL shader. It computes the gradient of the
 * least-squares loss 0.5 |X p - y|^2, X^T (X p - y), for the conformance suite's closed loop
 * (SPEC.md §5.1): what the GPU computes with after a step must be what read() reports.
 *
 * One invocation per output element j sums over the rows and, per row, over p: O(rows * n^2)
 * work, meant for the suite's small tensors, not for training.
 */

// 64 invocations: a multiple of every GPU's SIMD width (32 or 64), and within WebGPU's default
// maxComputeInvocationsPerWorkgroup (256).
const WORKGROUP_SIZE = 64;
const MAX_WORKGROUPS = 65_535;

export function leastSquaresWGSL(): string {
  return /* wgsl */ `
struct Sizes { n: u32, rows: u32 }

@group(0) @binding(0) var<storage, read> param: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> gradient: array<f32>;
@group(0) @binding(4) var<uniform> sizes: Sizes;

@compute @workgroup_size(${WORKGROUP_SIZE})
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
  let j = id.x;
  if (j >= sizes.n) { return; }
  var sum = 0.0;
  for (var r = 0u; r < sizes.rows; r++) {
    var residual = -y[r];
    for (var k = 0u; k < sizes.n; k++) { residual += x[r * sizes.n + k] * param[k]; }
    sum += x[r * sizes.n + j] * residual;
  }
  gradient[j] = sum;
}
`;
}

const STORAGE = 0x80;
const UNIFORM = 0x40;
const COPY_SRC = 0x4;
const COPY_DST = 0x8;
const MAP_READ = 0x1;
const MAP_MODE_READ = 0x1;

const pipelines = new WeakMap<GPUDevice, GPUComputePipeline>();

/**
 * X^T (X p - y) with p bound at `param` (n float32 values), x (rows x n, row-major) and y (rows)
 * uploaded for the call. Submitted after whatever the device queue already holds, so it sees the
 * parameter as the last submitted step left it.
 */
export async function leastSquaresGradientOnGPU(
  device: GPUDevice,
  param: GPUBufferBinding,
  x: Float32Array<ArrayBuffer>,
  y: Float32Array<ArrayBuffer>,
): Promise<Float32Array> {
  const rows = y.length;
  const n = rows === 0 ? 0 : x.length / rows;
  if (!Number.isInteger(n) || n === 0) throw new RangeError(`x has ${x.length} values for ${rows} rows`);
  if (Math.ceil(n / WORKGROUP_SIZE) > MAX_WORKGROUPS) throw new RangeError(`${n} elements is too many`);
  let pipeline = pipelines.get(device);
  if (!pipeline) {
    pipeline = device.createComputePipeline({
      label: 'accsgd least-squares probe',
      layout: 'auto',
      compute: { module: device.createShaderModule({ code: leastSquaresWGSL() }), entryPoint: 'main' },
    });
    pipelines.set(device, pipeline);
  }
  const upload = (values: Float32Array<ArrayBuffer> | Uint32Array<ArrayBuffer>, usage: number) => {
    const buffer = device.createBuffer({ size: Math.max(16, values.byteLength), usage: usage | COPY_DST });
    device.queue.writeBuffer(buffer, 0, values);
    return buffer;
  };
  const xBuffer = upload(x, STORAGE);
  const yBuffer = upload(y, STORAGE);
  const sizes = upload(new Uint32Array([n, rows]), UNIFORM);
  const output = device.createBuffer({ size: n * 4, usage: STORAGE | COPY_SRC });
  const staging = device.createBuffer({ size: n * 4, usage: MAP_READ | COPY_DST });
  try {
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(
      0,
      device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: param.buffer, offset: param.offset, size: n * 4 } },
          { binding: 1, resource: { buffer: xBuffer } },
          { binding: 2, resource: { buffer: yBuffer } },
          { binding: 3, resource: { buffer: output } },
          { binding: 4, resource: { buffer: sizes } },
        ],
      }),
    );
    pass.dispatchWorkgroups(Math.ceil(n / WORKGROUP_SIZE));
    pass.end();
    encoder.copyBufferToBuffer(output, 0, staging, 0, n * 4);
    device.queue.submit([encoder.finish()]);
    await staging.mapAsync(MAP_MODE_READ);
    return new Float32Array(staging.getMappedRange().slice(0));
  } finally {
    for (const buffer of [xBuffer, yBuffer, sizes, output, staging]) buffer.destroy();
  }
}
