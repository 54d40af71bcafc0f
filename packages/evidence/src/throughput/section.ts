/**
 * One section of the throughput report, run in a child process of its own (cli.ts starts it) so
 * that the frameworks' memory and threads do not meet: prints the section's result as one JSON line
 * after RESULT_MARKER.
 *
 *   tsx src/throughput/section.ts core|tfjs:cpu|tfjs:wasm|tfjs:webgpu|webgpu-kernel|onnx|many|torch:1|torch:2|train-step|conv-train-step [repeats]
 */
import { RESULT_MARKER, type SectionResult } from './types.js';

const [section, repeatsArg] = process.argv.slice(2);
const repeats = Number(repeatsArg ?? 5);
if (!section || !Number.isInteger(repeats) || repeats < 1)
  throw new Error('usage: section.ts <section> [repeats]');

async function run(): Promise<SectionResult> {
  if (section === 'core') return (await import('./section-core.js')).runCore(repeats);
  if (section!.startsWith('tfjs:'))
    return (await import('./section-tfjs.js')).runTfjs(section!.slice('tfjs:'.length), repeats);
  if (section === 'webgpu-kernel') return (await import('./section-webgpu.js')).runWebGPU(repeats);
  if (section === 'onnx') return (await import('./section-onnx.js')).runOnnx(repeats);
  if (section === 'many') return (await import('./section-many.js')).runMany(repeats);
  if (section === 'train-step') return (await import('./train-step.js')).runTrainStep(repeats);
  if (section === 'conv-train-step') return (await import('./conv-train-step.js')).runConvTrainStep(repeats);
  if (section!.startsWith('torch:'))
    return (await import('./section-torch.js')).runTorch(Number(section!.slice('torch:'.length)), repeats);
  throw new Error(`unknown section ${section}`);
}

const result = await run();
process.stdout.write(`\n${RESULT_MARKER}${JSON.stringify(result)}\n`);
// tfjs, Dawn and onnxruntime keep handles open; the result is out.
process.exit(0);
