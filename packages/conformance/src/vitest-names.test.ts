import { conformanceAdapter } from '@accsgd/core/conformance';
import type { RunnerTask } from 'vitest';
import { expect, it } from 'vitest';
import { describeConformance } from './vitest.js';

// Two adapters in one file, neither with a title: their tests must not share names.
describeConformance(() => conformanceAdapter({ dtype: 'float32' }), { only: ['golden: defaults'] });
describeConformance(async () => conformanceAdapter({ dtype: 'float64' }), { only: ['golden: defaults'] });
// With a title, the title names the block.
describeConformance(() => conformanceAdapter({ dtype: 'float32' }), {
  title: 'titled',
  only: ['golden: defaults'],
});

function fullNames(tasks: readonly RunnerTask[], prefix: string[] = []): string[] {
  return tasks.flatMap((task) =>
    task.type === 'suite'
      ? fullNames(task.tasks, [...prefix, task.name])
      : [[...prefix, task.name].join(' > ')],
  );
}

it('names the tests after the adapter when no title is given, so that they are distinct', ({ task }) => {
  const names = fullNames(task.file.tasks).filter((n) => !n.startsWith('names the tests'));
  expect(names).toEqual([
    'AccSGD conformance > core/float32 > golden: defaults',
    'AccSGD conformance > core/float64 > golden: defaults',
    'titled > golden: defaults',
  ]);
});
