/**
 * transformers.js on the same onnxruntime-node module the trainer uses. transformers.js reads
 * globalThis[Symbol.for('onnxruntime')] once, when it is first imported, so the symbol is set here
 * and the library is imported dynamically after it; import transformers.js only through this module.
 */
import { SHARED_ORT_SYMBOL } from '@accsgd/onnx-training';
import * as ort from 'onnxruntime-node';

(globalThis as Record<symbol, unknown>)[SHARED_ORT_SYMBOL] = ort;
const transformers = await import('@huggingface/transformers');

export { ort };
export const { AutoTokenizer, pipeline } = transformers;
const { env } = transformers;
export type TextClassificationPipeline = Awaited<ReturnType<typeof pipeline<'text-classification'>>>;
export type Tokenizer = Awaited<ReturnType<typeof AutoTokenizer.from_pretrained>>;

/**
 * Loads models only from `modelsDir` (the folder holding model folders): never from the network,
 * and not from transformers.js's file cache either, which it consults before local folders and
 * which could hold an older model under the same name.
 */
export function useLocalModels(modelsDir: string): void {
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = modelsDir;
  env.useFSCache = false;
}

/**
 * With a host ORT set through the symbol, transformers.js lists no devices of its own and rejects
 * its Node default `'cpu'`; `'auto'` passes that empty list on, and the explicit session option
 * picks onnxruntime-node's CPU provider. `dtype: 'fp32'` loads onnx/model.onnx (the default for a
 * Node device; 'q8' would ask for onnx/model_quantized.onnx).
 */
export const LOAD_OPTIONS = {
  device: 'auto',
  dtype: 'fp32',
  session_options: { executionProviders: ['cpu'] },
} as const;

export function textClassifier(modelName: string): Promise<TextClassificationPipeline> {
  return pipeline('text-classification', modelName, LOAD_OPTIONS);
}

export function tokenizer(modelName: string): Promise<Tokenizer> {
  return AutoTokenizer.from_pretrained(modelName);
}
