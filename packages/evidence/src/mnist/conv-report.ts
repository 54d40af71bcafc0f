import { CONV_SHAPE, convParameterCount } from './conv-model.js';
import { describe, OPTIMIZER_LABELS, OPTIMIZERS, type OptimizerName } from './optimizers.js';
import type { ConvPreset } from './presets.js';
import { aggregateSeeds } from './seeds.js';
import type { RunResult } from './train.js';

/** The conv net's comparison: the MLP's protocol (sweep on seed 1, validation choice, seeds, test). */
export interface ConvResult {
  preset: ConvPreset;
  seeds: readonly number[];
  batchSize: number;
  /** Every setting of the sweep (first seed), tfjs wasm; test accuracies only for the chosen ones. */
  runs: RunResult[];
  best: Record<OptimizerName, number>;
  seedRuns: Record<OptimizerName, RunResult[]>;
  /** AccSGD's chosen setting through OnnxTrainer on onnxruntime-node cpu, same weights and batches. */
  onnx?: RunResult;
  seconds: { sweep: number; seeds: number; onnx?: number };
  command?: string;
}

const pct = (a: number) => `${(100 * a).toFixed(2)}%`;
const pctSpread = (s: { mean: number; std: number; min: number; max: number } | undefined) =>
  s
    ? `${pct(s.mean)} ± ${(100 * s.std).toFixed(2)} (${(100 * s.min).toFixed(2)}–${(100 * s.max).toFixed(2)})`
    : '-';
const loss = (l: number) => l.toFixed(4);
const finalOf = (r: RunResult) => r.epochs[r.epochs.length - 1]!;

export const CONV_NAME = `LeNet-style conv net (conv 5x5x${CONV_SHAPE.c1}, ReLU, max pool 2, conv 5x5x${CONV_SHAPE.c2}, ReLU, max pool 2, dense 10)`;

/** "3" or "3 or 4": how many learning rates the optimizers' grids hold. */
function lrCounts(p: ConvPreset): string {
  const n = OPTIMIZERS.map((o) => p.lrs[o].length);
  const [lo, hi] = [Math.min(...n), Math.max(...n)];
  return lo === hi ? `${lo}` : `${lo} to ${hi}`;
}

/** The caveats of the conv comparison, for the report and the terminal. */
export function convCaveats(c: ConvResult): string[] {
  return [
    `Conv net: ${c.preset.trainCount.toLocaleString('en-US')} training images for ${c.preset.epochs} epoch${c.preset.epochs === 1 ? '' : 's'} and ${lrCounts(c.preset)} learning rates per optimizer (CPU time on a shared 2-core machine), so its accuracies are those of a short run, well below what this net reaches when trained longer.`,
  ];
}

/** Terminal lines of the conv comparison. */
export function convTerminal(c: ConvResult): string[] {
  const lines = [
    `${CONV_NAME} on tfjs wasm (${c.preset.trainCount} training images, ${c.preset.epochs} epochs, seeds ${c.seeds.join(', ')}):`,
  ];
  for (const name of OPTIMIZERS) {
    const a = aggregateSeeds(c.seedRuns[name]);
    lines.push(
      `  ${OPTIMIZER_LABELS[name].padEnd(28)} ${describe(c.seedRuns[name][0]!.spec).padEnd(44)} test ${pctSpread(a.testAccuracy)}${a.diverged > 0 ? `  ${a.diverged} DIVERGED` : ''}`,
    );
  }
  if (c.onnx) {
    const w = c.seedRuns.AccSGD[0]!;
    lines.push(
      `  AccSGD through OnnxTrainer (onnxruntime-node cpu), same weights and batches: test ${c.onnx.testAccuracy !== undefined ? pct(c.onnx.testAccuracy) : '-'} against ${w.testAccuracy !== undefined ? pct(w.testAccuracy) : '-'} on tfjs wasm${c.onnx.diverged ? ` (diverged: ${c.onnx.diverged})` : ''}`,
    );
  }
  return lines;
}

/** The conv net's section of mnist.md. */
export function convSection(c: ConvResult, plotFile?: string): string[] {
  const L: string[] = [];
  const p = c.preset;
  L.push(
    `## The conv net: conv 5x5x${CONV_SHAPE.c1}, ReLU, max pool 2, conv 5x5x${CONV_SHAPE.c2}, ReLU, max pool 2, dense 10`,
  );
  L.push('');
  L.push(
    `Design: every optimizer trains the conv net on \`@tensorflow/tfjs-backend-wasm\`, like the MLP, from the same seeded initial weights and batches per seed; AccSGD's chosen setting is trained once more through \`@accsgd/onnx-training\`'s \`OnnxTrainer\` on \`onnxruntime-node\` cpu from the same weights and batches (dotted in the plot), as a cross-check. tfjs-backend-wasm registers no Conv2DBackpropFilter/Input or MaxPoolGrad kernels and tfjs-core's Node bundle no gradient functions, so \`src/mnist/conv-model.ts\` writes the backward pass out with forward ops (the filter and input gradients as forward convs, the pool gradient as a mask); \`conv-model.test.ts\` checks them against tfjs-backend-cpu's backward kernels, the whole gradient against central differences, and the ONNX train step against the tfjs run for four steps. Running every optimizer on wasm rather than on tfjs cpu keeps the backend the MLP uses and is about 7x faster than tfjs cpu here (whose Conv2DBackpropFilter alone took several seconds per batch of 100).`,
  );
  L.push('');
  L.push(
    `Sizes: ${convParameterCount().toLocaleString('en-US')} parameters (Glorot-uniform kernels with Keras's conv fans, zero biases, seeded as the MLP's); the first ${p.trainCount.toLocaleString('en-US')} of the MLP's training images, ${p.epochs} epoch${p.epochs === 1 ? '' : 's'}, batches of ${c.batchSize}, the same validation split (learning rates chosen on it, seed ${c.seeds[0]}) and seeds ${c.seeds.join(', ')}. Smaller than the MLP's run so that the ${c.runs.length + OPTIMIZERS.length * (c.seeds.length - 1)} conv runs fit in about an hour on a shared 2-core machine (a step takes about 0.4 s on tfjs wasm with a core to itself). Learning rates: ${OPTIMIZERS.map((n) => `${OPTIMIZER_LABELS[n]} {${p.lrs[n].join(', ')}}`).join(', ')}: the MLP's chosen rate and its neighbours about 3x apart, and for heavy ball, Nesterov and Adam one more above, since they chose the top of three in the first (one-epoch) run. Wall time: sweep ${c.seconds.sweep.toFixed(1)} s, other seeds ${c.seconds.seeds.toFixed(1)} s${c.seconds.onnx !== undefined ? `, ONNX Runtime run ${c.seconds.onnx.toFixed(1)} s` : ''}.`,
  );
  L.push('');
  if (plotFile) {
    L.push(
      `![conv net: training loss and validation accuracy per epoch, mean and range over seeds](${plotFile})`,
    );
    L.push('');
  }
  L.push(
    '| optimizer | chosen setting | final train loss | final validation accuracy | test accuracy | training s per run |',
  );
  L.push('| --- | --- | ---: | ---: | ---: | ---: |');
  for (const name of OPTIMIZERS) {
    const rs = c.seedRuns[name];
    const a = aggregateSeeds(rs);
    const last = a.epochs[a.epochs.length - 1]!;
    const train = rs.reduce((t, r) => t + r.epochs.reduce((u, e) => u + e.trainSeconds, 0), 0) / rs.length;
    const lr = rs[0]!.spec.lr;
    const grid = p.lrs[name];
    const edge = grid.length > 1 && (lr === Math.min(...grid) || lr === Math.max(...grid));
    L.push(
      `| ${OPTIMIZER_LABELS[name]} | ${describe(rs[0]!.spec)}${edge ? ' (grid edge)' : ''}${a.diverged > 0 ? ` (${a.diverged} seed(s) diverged)` : ''} | ${loss(last.trainLoss.mean)} ± ${loss(last.trainLoss.std)} | ${pctSpread(last.validationAccuracy)} | ${pctSpread(a.testAccuracy)} | ${train.toFixed(1)} |`,
    );
  }
  L.push('');
  const edges = OPTIMIZERS.filter((n) => {
    const grid = p.lrs[n];
    const lr = c.seedRuns[n][0]!.spec.lr;
    return grid.length > 1 && (lr === Math.min(...grid) || lr === Math.max(...grid));
  });
  L.push(
    edges.length > 0
      ? `Chosen at an edge of its grid: ${edges.map((n) => `${OPTIMIZER_LABELS[n]} (lr ${c.seedRuns[n][0]!.spec.lr})`).join(', ')}; the best rate may lie beyond it, so read that optimizer's row as a lower bound.`
      : 'Every chosen rate lies inside its grid (a better one beyond the grid is unlikely, though the grid is coarse: steps of about 3x).',
  );
  L.push('');
  L.push(`Every setting of the conv sweep (seed ${c.seeds[0]}, validation split):`);
  L.push('');
  L.push('| optimizer | lr | final train loss | final validation accuracy | note |');
  L.push('| --- | ---: | ---: | ---: | --- |');
  c.runs.forEach((r, i) => {
    const f = finalOf(r);
    const note = r.diverged ? `diverged at ${r.diverged}` : c.best[r.spec.name] === i ? 'chosen' : '';
    L.push(
      `| ${OPTIMIZER_LABELS[r.spec.name]} | ${r.spec.lr} | ${loss(f.trainLoss)} | ${pct(f.validationAccuracy)} | ${note} |`,
    );
  });
  if (c.onnx) {
    const w = c.seedRuns.AccSGD[0]!;
    const o = c.onnx;
    L.push('');
    L.push(
      `AccSGD (${describe(o.spec)}) through \`OnnxTrainer\` on onnxruntime-node cpu beside tfjs wasm, seed ${c.seeds[0]}: the forward model (\`src/mnist/conv-onnx-model.ts\`) holds the same initial weights in tfjs's layouts (HWIO kernels transposed inside the graph, activations back to NHWC before the dense layer), and the trainer runs forward, loss, backward and the AccSGD update in one \`session.run\` per step. The runtimes sum in different orders, so the curves should track, not match bit for bit.`,
    );
    L.push('');
    L.push('| epoch | wasm loss | ORT loss | wasm validation accuracy | ORT validation accuracy |');
    L.push('| ---: | ---: | ---: | ---: | ---: |');
    for (let i = 0; i < Math.max(w.epochs.length, o.epochs.length); i++) {
      const a = w.epochs[i];
      const b = o.epochs[i];
      L.push(
        `| ${i} | ${a ? loss(a.trainLoss) : '-'} | ${b ? loss(b.trainLoss) : '-'} | ${a ? pct(a.validationAccuracy) : '-'} | ${b ? pct(b.validationAccuracy) : '-'} |`,
      );
    }
    L.push('');
    L.push(
      `Test accuracy: ${o.testAccuracy !== undefined ? pct(o.testAccuracy) : '-'} (ONNX Runtime) against ${w.testAccuracy !== undefined ? pct(w.testAccuracy) : '-'} (tfjs wasm)${o.diverged ? `; the ONNX run diverged (${o.diverged})` : ''}.`,
    );
  }
  return L;
}
