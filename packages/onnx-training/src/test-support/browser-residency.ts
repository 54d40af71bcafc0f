import * as ort from 'onnxruntime-web/webgpu';
import { OnnxAccSGD } from '../onnx-optimizer.js';

/**
 * Runs in Chromium (runInBrowser): two steps on onnxruntime-web's WebGPU EP with strict placement,
 * and reports where the parameter and buffer tensors live and what they hold.
 */
export async function residencyInBrowser(args: { wasmPaths: string }) {
  ort.env.wasm.wasmPaths = args.wasmPaths;
  ort.env.wasm.numThreads = 1;
  const opt = await OnnxAccSGD.create(
    [{ lr: 0.1, params: [{ name: 'w', data: new Float32Array([1, 2, 3, 4]) }] }],
    { lr: 0.1 },
    { ort, executionProvider: 'webgpu', strictPlacement: true },
  );
  const locations = [opt.paramTensor('w').location];
  await opt.step({ w: new Float32Array([0.5, 0.5, 0.5, 0.5]) });
  await opt.step({ w: new Float32Array([0.1, 0.1, 0.1, 0.1]) });
  locations.push(opt.paramTensor('w').location);
  const { params, buffers } = await opt.read();
  await opt.dispose();
  return { locations, params: Array.from(params.get('w')!), buffer: Array.from(buffers.get('w')!) };
}
