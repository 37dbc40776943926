import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors.js';
import { writeFileAtomic } from '../io/files.js';
import { captureResiduals, generate, type ChatMessage, type SteerableModel } from '../runtime/index.js';
import { cosine, dot, normalize } from '../vectors/linalg.js';
import { poolResidual } from './pooling.js';

/**
 * Monitoring with a persona vector (methods.md §A.10): the projection of a response's activations on the unit
 * vector, as `cal_projection` computes it, and projection-difference screening (ΔP) of a dataset against the
 * model's own responses to the same prompts.
 */

export type ProjectionType = 'response_avg' | 'prompt_last' | 'cos';
export const projectionTypes: readonly ProjectionType[] = ['response_avg', 'prompt_last', 'cos'];

/** A row of a dataset: a conversation whose last message is the assistant's answer, or a templated prompt and an answer. */
export type DatasetRow = { messages: ChatMessage[] } | { prompt: string; answer: string };

export interface TokenizedExample {
  ids: number[];
  promptLength: number;
}

/**
 * Token ids of prompt + answer and where the prompt ends. As the released code does, the prompt is the chat template
 * of all but the last message with the generation prompt, and the text prompt + answer is tokenised as one string.
 */
export function tokenizeExample(model: SteerableModel, row: DatasetRow, where: string): TokenizedExample {
  let prompt: string;
  let answer: string;
  if ('messages' in row) {
    const last = row.messages.at(-1);
    if (!last || last.role !== 'assistant' || row.messages.length < 2) throw new UserError(`${where}: "messages" must end with an assistant message after at least one other`);
    prompt = model.tokenizer.formatChat(row.messages.slice(0, -1), true);
    answer = last.content;
  } else {
    prompt = row.prompt;
    answer = row.answer;
  }
  const promptLength = model.tokenizer.encode(prompt, false).length;
  const ids = model.tokenizer.encode(prompt + answer, false);
  if (promptLength === 0) throw new UserError(`${where}: the prompt is empty`);
  return { ids, promptLength };
}

/** Reads a dataset JSONL of `{messages}` or `{prompt, answer}` rows, keeping every row's other fields. */
export function readDataset(file: string): Record<string, unknown>[] {
  if (!fs.existsSync(file)) throw new UserError(`data file not found: ${file}`);
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .map((line, i) => ({ line, number: i + 1 }))
    .filter(({ line }) => line.trim() !== '')
    .map(({ line, number }) => {
      let row: unknown;
      try {
        row = JSON.parse(line);
      } catch (error) {
        throw new UserError(`${file} line ${number} is not valid JSON: ${(error as Error).message}`);
      }
      const record = row as Record<string, unknown>;
      const isMessages = Array.isArray(record?.messages);
      const isPair = typeof record?.prompt === 'string' && typeof record?.answer === 'string';
      if (!isMessages && !isPair) throw new UserError(`${file} line ${number} needs "messages" or "prompt" and "answer"`);
      return record;
    });
}

/** Projection of each example's activations after block `layer` on `vector`, by the released code's three measures. */
export async function projectExamples(
  model: SteerableModel,
  examples: readonly TokenizedExample[],
  vector: ArrayLike<number>,
  layer: number,
  type: ProjectionType,
  options: { batchSize?: number; onProgress?: (done: number, total: number) => void } = {},
): Promise<number[]> {
  const unit = normalize(vector);
  const values: number[] = [];
  const batchSize = options.batchSize ?? 8;
  for (let start = 0; start < examples.length; start += batchSize) {
    const batch = examples.slice(start, start + batchSize);
    for (const [i, example] of batch.entries()) {
      if (type !== 'prompt_last' && example.ids.length <= example.promptLength) throw new UserError(`example ${start + i + 1} has no answer tokens`);
    }
    const result = await captureResiduals(model, batch.map((e) => ({ inputIds: e.ids, promptLength: e.promptLength })), { layers: [layer] });
    batch.forEach((example, i) => {
      const residual = result.residuals.get(layer)![i]!;
      const pooled = poolResidual(residual, model.hiddenSize, example.promptLength, type === 'prompt_last' ? 'prompt_last' : 'response_avg');
      values.push(type === 'cos' ? cosine(pooled, vector) : dot(pooled, unit));
    });
    options.onProgress?.(Math.min(start + batchSize, examples.length), examples.length);
  }
  return values;
}

/** `{basename(model)}_{vector file stem}_{type}_layer{L}`, the released code's column name. */
export function projectionColumn(modelId: string, vectorFile: string, type: ProjectionType, layer: number): string {
  const stem = path.basename(vectorFile).replace(/\.safetensors$/, '');
  const typeName = { response_avg: 'proj', prompt_last: 'prompt_last_proj', cos: 'cos_sim' }[type];
  return `${path.basename(modelId)}_${stem}_${typeName}_layer${layer}`;
}

/** Rewrites a dataset file with the rows given (atomically: the old file stays whole until the new one is complete). */
export function writeDataset(file: string, rows: readonly Record<string, unknown>[]): void {
  writeFileAtomic(file, `${rows.map((row) => JSON.stringify(row)).join('\n')}\n`);
}

/** The model's own (greedy) answers to a dataset's prompts, as `{messages}` rows with the answer swapped. */
export async function generateBaseline(model: SteerableModel, rows: readonly Record<string, unknown>[], options: { maxTokens: number; batchSize?: number }): Promise<Record<string, unknown>[]> {
  const conversations = rows.map((row, i) => {
    if (!Array.isArray(row.messages)) throw new UserError(`row ${i + 1}: generating a baseline needs "messages" rows`);
    return (row.messages as ChatMessage[]).slice(0, -1);
  });
  const out: Record<string, unknown>[] = [];
  const batchSize = options.batchSize ?? 8;
  for (let start = 0; start < conversations.length; start += batchSize) {
    const batch = conversations.slice(start, start + batchSize);
    const result = await generate(model, batch.map((messages) => ({ inputIds: model.tokenizer.encodeChat(messages) })), { maxNewTokens: options.maxTokens, temperature: 0 });
    batch.forEach((messages, i) => out.push({ messages: [...messages, { role: 'assistant', content: result.texts[i]! }] }));
  }
  return out;
}

export interface ProjectionDifference {
  /** ΔP_i = ⟨ā(x_i, y_i) − ā(x_i, y′_i), v̂⟩ per sample (ā = mean over response tokens). */
  perSample: number[];
  /** The dataset-level ΔP: the mean of the per-sample values. */
  dataset: number;
}

/** Projection-difference screening: the dataset's responses against the model's own responses to the same prompts. */
export async function projectionDifference(
  model: SteerableModel,
  dataset: readonly TokenizedExample[],
  baseline: readonly TokenizedExample[],
  vector: ArrayLike<number>,
  layer: number,
): Promise<ProjectionDifference> {
  if (dataset.length !== baseline.length) throw new UserError(`the baseline has ${baseline.length} rows but the dataset has ${dataset.length}`);
  dataset.forEach((example, i) => {
    const other = baseline[i]!;
    if (example.promptLength !== other.promptLength || example.ids.slice(0, example.promptLength).some((id, j) => id !== other.ids[j])) {
      throw new UserError(`row ${i + 1}: the baseline's prompt differs from the dataset's; ΔP compares two answers to the same prompt`);
    }
  });
  const data = await projectExamples(model, dataset, vector, layer, 'response_avg');
  const base = await projectExamples(model, baseline, vector, layer, 'response_avg');
  const perSample = data.map((value, i) => value - base[i]!);
  return { perSample, dataset: perSample.reduce((a, b) => a + b, 0) / perSample.length };
}
