/**
 * The full run (npm run example:text-classifier): a tiny BERT-shaped transformers.js model written
 * from scratch, fine-tuned with AccSGD through OnnxTrainer, reloaded with transformers.js's
 * pipeline('text-classification'). Ends with exactly one line
 * `held-out accuracy: before 0.xx, after 0.xx`; exits non-zero unless the accuracy improved.
 */
import { loadSentiment } from './data.js';
import { FULL_RUN, runExample, TRAINED_MODEL } from './run.js';
import { textClassifier } from './transformers.js';

const t0 = performance.now();
const log = (line: string) => console.log(line);
const data = loadSentiment();
log(
  `data/sentiment.tsv: ${data.train.length} training and ${data.test.length} held-out sentences; model folders in ${FULL_RUN.modelsDir}`,
);
const result = await runExample(data, { ...FULL_RUN, log });
// The trained folder as any transformers.js user would load it.
const classify = await textClassifier(TRAINED_MODEL);
for (const text of [
  data.test[0]!.text,
  data.test[30]!.text,
  'The waiter was friendly but the pizza was cold.',
]) {
  const [top] = (await classify(text)) as { label: string; score: number }[];
  log(`  ${JSON.stringify(text)} -> ${top!.label} ${top!.score.toFixed(3)}`);
}
await classify.dispose();
log(`whole run ${((performance.now() - t0) / 1000).toFixed(1)} s`);
if (!(result.after.accuracy > result.before.accuracy)) {
  console.error('the held-out accuracy did not improve');
  process.exitCode = 1;
}
console.log(
  `held-out accuracy: before ${result.before.accuracy.toFixed(2)}, after ${result.after.accuracy.toFixed(2)}`,
);
