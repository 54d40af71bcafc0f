import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { findPyTorch } from '@accsgd/conformance';
import { LAYOUTS, type Row, type SectionResult } from './types.js';

const SCRIPT = fileURLToPath(new URL('./torch_bench.py', import.meta.url));

interface TorchOutput {
  torch: string;
  threads: number;
  results: { tensors: number; size: number; referenceMs: number; sgdMs: number }[];
}

/** PyTorch at `threads` intra-op threads: the reference AccSGD beside SGD(momentum=0.9, foreach=True). */
export function runTorch(threads: number, repeats: number): SectionResult {
  const section = `torch:${threads}`;
  const found = findPyTorch();
  if (!found.available) return { section, rows: [], skipped: found.reason };
  const child = spawnSync(
    found.python,
    [
      SCRIPT,
      '--threads',
      String(threads),
      '--repeats',
      String(repeats),
      '--layouts',
      LAYOUTS.map((l) => `${l.tensors}x${l.size}`).join(','),
    ],
    { encoding: 'utf8', maxBuffer: 1 << 24, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  if (child.status !== 0) throw new Error(`${found.python} ${SCRIPT} exited with ${child.status}`);
  const out = JSON.parse(child.stdout.trim().split('\n').at(-1)!) as TorchOutput;
  const rows: Row[] = out.results.map((r) => ({
    framework: 'PyTorch',
    backend: `torch ${out.torch}, ${out.threads} thread${out.threads === 1 ? '' : 's'}`,
    layout: LAYOUTS.find((l) => l.tensors === r.tensors)!.label,
    variant: 'reference AccSGD (7 in-place ops per parameter)',
    ms: r.referenceMs,
    baseline: 'torch.optim.SGD(momentum=0.9, foreach=True)',
    baselineMs: r.sgdMs,
    ratio: r.referenceMs / r.sgdMs,
  }));
  return { section, rows, info: `${found.python}: torch ${out.torch}` };
}
