/**
 * The stages of `npm start`: each is one package script with its arguments, exactly the command
 * that a committed report records as having generated it, so that `npm start -- --full` regenerates
 * every committed report and nothing else does it differently.
 */
export type StageScript = 'linear-regression' | 'report:full' | 'mnist' | 'report:mnist';

export interface Stage {
  script: StageScript;
  args: readonly string[];
  /** What the stage writes (in reports/, or reports/quick/ for the quick presets). */
  writes: readonly string[];
}

export function stages(full: boolean): Stage[] {
  const lr: StageScript = full ? 'report:full' : 'linear-regression';
  const linear: Stage[] = [
    {
      script: lr,
      args: [],
      writes: ['linear-regression.md', 'linear-regression.json', 'linear-regression.svg'],
    },
    // After ours: its report puts our slopes (from linear-regression.json) beside its own.
    {
      script: lr,
      args: ['--protocol', 'paper'],
      writes: ['linear-regression-paper.md', 'linear-regression-paper.json', 'linear-regression-paper.svg'],
    },
  ];
  if (!full)
    return [...linear, { script: 'mnist', args: [], writes: ['mnist.md', 'mnist.json', 'mnist.svg'] }];
  return [
    ...linear,
    // Each MNIST part on its own, saved as JSON; the MLP stage comes last and merges them into mnist.md.
    { script: 'report:mnist', args: ['--mapping', 'only'], writes: ['mnist-mapping.json'] },
    { script: 'report:mnist', args: ['--conv', 'only'], writes: ['mnist-conv.json'] },
    { script: 'report:mnist', args: ['--conv-mapping', 'only'], writes: ['mnist-conv-mapping.json'] },
    {
      script: 'report:mnist',
      args: ['--mapping', 'no', '--conv', 'no', '--conv-mapping', 'no'],
      writes: [
        'mnist.md',
        'mnist.json',
        'mnist.svg',
        'mnist-mapping.svg',
        'mnist-conv.svg',
        'mnist-conv-mapping.svg',
      ],
    },
  ];
}

/** The stage as the reports record it. */
export const stageCommand = (s: Stage): string =>
  `npm run ${s.script} -w @accsgd/evidence${s.args.length > 0 ? ` -- ${s.args.join(' ')}` : ''}`;

/**
 * The node arguments that run a stage: the package script (`tsx FILE ARGS...`, no shell syntax) as
 * `node --import tsx FILE ARGS...`, then the stage's arguments.
 */
export function stageArgv(s: Stage, scripts: Record<string, string>, packageRoot: string): string[] {
  const script = scripts[s.script];
  if (script === undefined) throw new Error(`package.json has no script ${s.script}`);
  const [runner, file, ...rest] = script.split(/\s+/);
  if (runner !== 'tsx' || file === undefined || rest.some((a) => !/^--?[\w-]+$/.test(a)))
    throw new Error(`script ${s.script} is not "tsx FILE [--flags]": ${script}`);
  return ['--import', 'tsx', `${packageRoot}/${file}`, ...rest, ...s.args];
}
