/**
 * A tiny BERT-shaped text classifier written from scratch, in the layout transformers.js loads from a
 * folder: config.json, tokenizer.json (WordLevel), tokenizer_config.json and onnx/model.onnx with the
 * inputs and output of a Hugging Face `BertForSequenceClassification` export. Nothing is downloaded.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type Attribute,
  encodeModel,
  floatInitializer,
  int64Initializer,
  node,
  valueInfo,
} from '@accsgd/onnx-training/model-builder';
import { normalValues, Rng } from './random.js';

export interface TinyBertConfig {
  hiddenSize: number;
  numHeads: number;
  numLayers: number;
  intermediateSize: number;
  /** The longest sequence the position embeddings cover (tokenizer_config's model_max_length). */
  maxPositions: number;
  /** Standard deviation of the normal initialisation of every weight matrix and embedding. */
  initStd: number;
  /** Seed of the generator the initial weights are drawn from. */
  seed: number;
}

/**
 * initStd 0.15 rather than BERT's 0.02: 0.02 suits hidden size 768 (about 1/sqrt(768)); at hidden
 * size 32 it leaves the words a voice of about 1% in the [CLS] vector (two 0.02-scaled 32 x 32
 * products), and AccSGD did not move the loss off ln 2 in 40 epochs at any lr tried (README).
 */
export const TINY_BERT: TinyBertConfig = {
  hiddenSize: 32,
  numHeads: 2,
  numLayers: 2,
  intermediateSize: 64,
  maxPositions: 64,
  initStd: 0.15,
  seed: 1,
};

/** Class index -> label, as in config.json's id2label. */
export const LABELS = ['NEGATIVE', 'POSITIVE'] as const;

export const SPECIAL_TOKENS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]'] as const;
const [PAD, UNK, CLS, SEP] = SPECIAL_TOKENS;

// BERT's attention mask bias and LayerNorm epsilon, as Hugging Face's BertModel uses them.
const MASK_BIAS = -10000;
const LAYER_NORM_EPS = 1e-12;

/**
 * Words as the tokenizer's Lowercase normalizer and BertPreTokenizer see them: lowercased, split at
 * whitespace, every punctuation character a word of its own.
 */
export function words(text: string): string[] {
  return text.toLowerCase().match(/[\p{L}\p{N}]+|[^\s\p{L}\p{N}]/gu) ?? [];
}

/** The special tokens (ids 0-3, [PAD] = 0), then every word of `texts` in sorted order. */
export function buildVocabulary(texts: readonly string[]): string[] {
  const found = new Set<string>();
  for (const text of texts) for (const w of words(text)) found.add(w);
  for (const s of SPECIAL_TOKENS) found.delete(s);
  return [...SPECIAL_TOKENS, ...[...found].sort()];
}

/** tokenizer.json: a WordLevel model (unseen words are [UNK]) with BERT's [CLS] ... [SEP] template. */
export function tokenizerJson(vocabulary: readonly string[]): object {
  const id = (token: string) => vocabulary.indexOf(token);
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIAL_TOKENS.map((content) => ({
      id: id(content),
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: { type: 'Lowercase' },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [
        { SpecialToken: { id: CLS, type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: SEP, type_id: 0 } },
      ],
      pair: [
        { SpecialToken: { id: CLS, type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: SEP, type_id: 0 } },
        { Sequence: { id: 'B', type_id: 1 } },
        { SpecialToken: { id: SEP, type_id: 1 } },
      ],
      special_tokens: Object.fromEntries([CLS, SEP].map((t) => [t, { id: t, ids: [id(t)], tokens: [t] }])),
    },
    decoder: null,
    model: {
      type: 'WordLevel',
      vocab: Object.fromEntries(vocabulary.map((token, k) => [token, k])),
      unk_token: UNK,
    },
  };
}

/** tokenizer_config.json: BertTokenizer is the class that returns token_type_ids. */
export function tokenizerConfig(config: TinyBertConfig): object {
  return {
    tokenizer_class: 'BertTokenizer',
    do_lower_case: true,
    model_max_length: config.maxPositions,
    padding_side: 'right',
    pad_token: PAD,
    unk_token: UNK,
    cls_token: CLS,
    sep_token: SEP,
  };
}

/** config.json: what transformers.js reads to pick BertForSequenceClassification and name the labels. */
export function modelConfig(config: TinyBertConfig, vocabSize: number): object {
  return {
    architectures: ['BertForSequenceClassification'],
    model_type: 'bert',
    vocab_size: vocabSize,
    hidden_size: config.hiddenSize,
    num_attention_heads: config.numHeads,
    num_hidden_layers: config.numLayers,
    intermediate_size: config.intermediateSize,
    hidden_act: 'gelu',
    max_position_embeddings: config.maxPositions,
    type_vocab_size: 2,
    layer_norm_eps: LAYER_NORM_EPS,
    initializer_range: config.initStd,
    pad_token_id: 0,
    problem_type: 'single_label_classification',
    id2label: Object.fromEntries(LABELS.map((label, k) => [String(k), label])),
    label2id: Object.fromEntries(LABELS.map((label, k) => [label, k])),
  };
}

/** Collects nodes and initializers; every helper returns the name of the value it made. */
class GraphWriter {
  readonly nodes: ReturnType<typeof node>[] = [];
  readonly initializers: ReturnType<typeof floatInitializer>[] = [];

  constructor(private readonly rng: Rng) {}

  op(opType: string, inputs: string[], output: string, attributes: Record<string, Attribute> = {}): string {
    this.nodes.push(node(opType, inputs, [output], attributes));
    return output;
  }

  normal(count: number, std: number): Float32Array {
    return normalValues(this.rng, count, std);
  }

  /** A trained float initializer: normal(0, std), filled with `fill`, or the given values. */
  weight(
    name: string,
    dims: number[],
    init: { std: number } | { fill: number } | { values: Float32Array },
  ): string {
    const count = dims.reduce((a, b) => a * b, 1);
    const values =
      'values' in init
        ? init.values
        : 'std' in init
          ? this.normal(count, init.std)
          : new Float32Array(count).fill(init.fill);
    this.initializers.push(floatInitializer(name, dims, values));
    return name;
  }

  /** An int64 initializer (never trained: the train step trains float initializers only). */
  ints(name: string, dims: number[], values: number[]): string {
    this.initializers.push(int64Initializer(name, dims, values));
    return name;
  }

  /** A float scalar as a Constant node, so that it is not an initializer and so not trained. */
  constant(name: string, value: number): string {
    return this.op('Constant', [], name, { value: floatInitializer(name, [], [value]) });
  }

  /** x @ W + b, W stored [in, out] (the transpose of PyTorch's nn.Linear weight). */
  linear(
    x: string,
    prefix: string,
    inSize: number,
    outSize: number,
    std: number,
    output = `${prefix}/Add`,
  ): string {
    const w = this.weight(`${prefix}.weight`, [inSize, outSize], { std });
    const b = this.weight(`${prefix}.bias`, [outSize], { fill: 0 });
    return this.op('Add', [this.op('MatMul', [x, w], `${prefix}/MatMul`), b], output);
  }

  layerNorm(x: string, prefix: string, size: number): string {
    const gamma = this.weight(`${prefix}.weight`, [size], { fill: 1 });
    const beta = this.weight(`${prefix}.bias`, [size], { fill: 0 });
    return this.op('LayerNormalization', [x, gamma, beta], `${prefix}/LayerNorm`, {
      axis: -1,
      epsilon: { float: LAYER_NORM_EPS },
    });
  }
}

/**
 * The forward model: inputs input_ids, attention_mask, token_type_ids (int64, [batch_size,
 * sequence_length]), output logits (float32, [batch_size, 2]); opset 17, standard ops only, the ops
 * the train step differentiates. Weights are normal(0, initStd) from a seeded generator, LayerNorm
 * gamma 1 and beta 0, biases 0, the [PAD] embedding row 0 (as Hugging Face's padding_idx).
 */
export function tinyBertModel(config: TinyBertConfig, vocabSize: number): Uint8Array {
  const { hiddenSize: H, numHeads, intermediateSize, maxPositions, initStd: std } = config;
  if (H % numHeads !== 0) throw new Error(`hiddenSize ${H} is not a multiple of numHeads ${numHeads}`);
  const headDim = H / numHeads;
  const g = new GraphWriter(new Rng(config.seed));

  // Embeddings. Position ids are a slice of a [1, maxPositions] table, its length read from
  // input_ids' shape (as Hugging Face exports do), so inference works at any sequence length.
  // Row 0 ([PAD]) starts at zero, as Hugging Face's padding_idx leaves it.
  const wordValues = g.normal(vocabSize * H, std).fill(0, 0, H);
  const wordTable = g.weight('bert.embeddings.word_embeddings.weight', [vocabSize, H], {
    values: wordValues,
  });
  const positionTable = g.weight('bert.embeddings.position_embeddings.weight', [maxPositions, H], { std });
  const typeTable = g.weight('bert.embeddings.token_type_embeddings.weight', [2, H], { std });
  const positionIds = g.ints(
    'bert.embeddings.position_ids',
    [1, maxPositions],
    Array.from({ length: maxPositions }, (_, k) => k),
  );
  const shape = g.op('Shape', ['input_ids'], 'embeddings/Shape');
  const length = g.op('Gather', [shape, g.ints('const.one', [], [1])], 'embeddings/length', { axis: 0 });
  // [0] serves as Unsqueeze's axes and as Slice's starts.
  const zeroAxis = g.ints('const.axes0', [1], [0]);
  const end = g.op('Unsqueeze', [length, zeroAxis], 'embeddings/end');
  const positions = g.op(
    'Slice',
    [positionIds, zeroAxis, end, g.ints('const.axes1', [1], [1])],
    'embeddings/position_ids',
  );
  let hidden = g.op(
    'Add',
    [
      g.op(
        'Add',
        [
          g.op('Gather', [wordTable, 'input_ids'], 'embeddings/words', { axis: 0 }),
          g.op('Gather', [typeTable, 'token_type_ids'], 'embeddings/types', { axis: 0 }),
        ],
        'embeddings/words_types',
      ),
      g.op('Gather', [positionTable, positions], 'embeddings/positions', { axis: 0 }),
    ],
    'embeddings/sum',
  );
  hidden = g.layerNorm(hidden, 'bert.embeddings.LayerNorm', H);

  // (1 - mask) * -10000, broadcast over heads and query positions: [batch, 1, 1, length].
  const mask = g.op(
    'Cast',
    [g.op('Unsqueeze', ['attention_mask', g.ints('const.axes12', [2], [1, 2])], 'mask/unsqueeze')],
    'mask/float',
    { to: 1 },
  );
  const maskBias = g.op(
    'Mul',
    [
      g.op('Sub', [g.constant('const.float_one', 1), mask], 'mask/inverted'),
      g.constant('const.mask_bias', MASK_BIAS),
    ],
    'mask/bias',
  );
  // 0 in a Reshape shape copies that dimension, so these work for any batch size and length.
  const splitHeads = g.ints('const.split_heads', [4], [0, 0, numHeads, headDim]);
  const mergeHeads = g.ints('const.merge_heads', [3], [0, 0, H]);
  const scale = g.constant('const.attention_scale', Math.sqrt(headDim));
  const half = g.constant('const.half', 0.5);
  const invSqrt2 = g.constant('const.inv_sqrt2', Math.SQRT1_2);
  const one = 'const.float_one';

  for (let layer = 0; layer < config.numLayers; layer++) {
    const p = `bert.encoder.layer.${layer}`;
    const heads = (name: string, perm: number[]) =>
      g.op(
        'Transpose',
        [
          g.op(
            'Reshape',
            [g.linear(hidden, `${p}.attention.self.${name}`, H, H, std), splitHeads],
            `${p}/${name}/split`,
          ),
        ],
        `${p}/${name}/heads`,
        { perm },
      );
    const q = heads('query', [0, 2, 1, 3]);
    const kT = heads('key', [0, 2, 3, 1]);
    const v = heads('value', [0, 2, 1, 3]);
    const scores = g.op(
      'Add',
      [g.op('Div', [g.op('MatMul', [q, kT], `${p}/scores`), scale], `${p}/scaled`), maskBias],
      `${p}/masked`,
    );
    const probs = g.op('Softmax', [scores], `${p}/probs`, { axis: -1 });
    const context = g.op(
      'Reshape',
      [
        g.op('Transpose', [g.op('MatMul', [probs, v], `${p}/context`)], `${p}/context/transposed`, {
          perm: [0, 2, 1, 3],
        }),
        mergeHeads,
      ],
      `${p}/context/merged`,
    );
    const attended = g.linear(context, `${p}.attention.output.dense`, H, H, std);
    hidden = g.layerNorm(
      g.op('Add', [attended, hidden], `${p}/attention/residual`),
      `${p}.attention.output.LayerNorm`,
      H,
    );

    // GELU, exact: x * 0.5 * (1 + erf(x / sqrt(2))).
    const x = g.linear(hidden, `${p}.intermediate.dense`, H, intermediateSize, std);
    const erf = g.op('Erf', [g.op('Mul', [x, invSqrt2], `${p}/gelu/scaled`)], `${p}/gelu/erf`);
    const gelu = g.op(
      'Mul',
      [g.op('Mul', [x, half], `${p}/gelu/half`), g.op('Add', [erf, one], `${p}/gelu/shifted`)],
      `${p}/gelu`,
    );
    const out = g.linear(gelu, `${p}.output.dense`, intermediateSize, H, std);
    hidden = g.layerNorm(g.op('Add', [out, hidden], `${p}/output/residual`), `${p}.output.LayerNorm`, H);
  }

  // The pooler reads the [CLS] token (position 0): Gather with a scalar index drops the axis.
  const cls = g.op('Gather', [hidden, g.ints('const.zero', [], [0])], 'pooler/cls', { axis: 1 });
  const pooled = g.op('Tanh', [g.linear(cls, 'bert.pooler.dense', H, H, std)], 'pooler/tanh');
  g.linear(pooled, 'classifier', H, LABELS.length, std, 'logits');

  const dims = ['batch_size', 'sequence_length'];
  return encodeModel({
    name: 'tiny_bert_for_sequence_classification',
    nodes: g.nodes,
    inputs: [
      valueInfo('input_ids', dims, 'int64'),
      valueInfo('attention_mask', dims, 'int64'),
      valueInfo('token_type_ids', dims, 'int64'),
    ],
    outputs: [valueInfo('logits', ['batch_size', LABELS.length], 'float32')],
    initializers: g.initializers,
    opset: 17,
    producerName: '@accsgd/example-text-classifier',
  });
}

/** The text files of a model folder (everything but onnx/model.onnx). */
export function modelFolderFiles(
  config: TinyBertConfig,
  vocabulary: readonly string[],
): Record<string, object> {
  return {
    'config.json': modelConfig(config, vocabulary.length),
    'tokenizer.json': tokenizerJson(vocabulary),
    'tokenizer_config.json': tokenizerConfig(config),
  };
}

/** Writes a model folder transformers.js loads with env.localModelPath set to its parent. */
export async function writeModelFolder(
  dir: string,
  files: Record<string, object>,
  model: Uint8Array,
): Promise<void> {
  await mkdir(join(dir, 'onnx'), { recursive: true });
  for (const [name, json] of Object.entries(files))
    await writeFile(join(dir, name), `${JSON.stringify(json, null, 2)}\n`);
  await writeFile(join(dir, 'onnx', 'model.onnx'), model);
}
