import { UserError } from '../errors.js';
import { generate } from '../runtime/generate.js';
import { SteerableModel } from '../runtime/model.js';
import { resolveModelFolder } from '../runtime/modelFolder.js';
import { LogprobJudge } from './logprobJudge.js';
import type { ChatCompletionClient, CompletionRequest, CompletionResult, TokenLogprob } from './types.js';

export const DEFAULT_LOCAL_BATCH_SIZE = 8;

export interface LocalModelClientOptions {
  /** Which graph of the folder to run (fp32, fp16, q4, …). */
  dtype?: string;
  /** Where hub-style ids (org/name) are looked up; default models/. */
  modelsDir?: string;
  /** Most prompts run together in one generate() call; default 8. */
  maxBatchSize?: number;
}

interface PendingCompletion {
  request: CompletionRequest;
  resolve: (result: CompletionResult) => void;
  reject: (error: unknown) => void;
}

/** The `count` most likely next tokens of a logit vector, as log-probabilities (log-softmax over the whole vocabulary), most likely first. */
export function topTokenLogprobs(logits: Float32Array, count: number): { id: number; logprob: number }[] {
  let max = -Infinity;
  for (const value of logits) max = Math.max(max, value);
  let sum = 0;
  for (const value of logits) sum += Math.exp(value - max);
  const logNormalizer = max + Math.log(sum);
  // Insertion into a short sorted list: count is small next to the vocabulary.
  const best: number[] = [];
  for (let id = 0; id < logits.length; id++) {
    const value = logits[id]!;
    if (best.length === count && value <= logits[best[count - 1]!]!) continue;
    let at = best.length;
    while (at > 0 && logits[best[at - 1]!]! < value) at--;
    best.splice(at, 0, id);
    if (best.length > count) best.pop();
  }
  return best.map((id) => ({ id, logprob: logits[id]! - logNormalizer }));
}

/**
 * A chat-completions client over a local ONNX model, so the local judge is the same LogprobJudge as the remote one.
 * Requests that arrive together (the judge keeps several in flight) are run as one batch. Decoding is greedy at
 * temperature 0 (the default) and sampled otherwise; top logprobs come from the first generated position.
 */
export class LocalModelClient implements ChatCompletionClient {
  readonly label: string;
  readonly maxBatchSize: number;
  private model: Promise<SteerableModel> | undefined;
  private readonly queue: PendingCompletion[] = [];
  private draining = false;

  constructor(
    private readonly location: string,
    private readonly options: LocalModelClientOptions = {},
  ) {
    this.label = `local:${location}`;
    this.maxBatchSize = options.maxBatchSize ?? DEFAULT_LOCAL_BATCH_SIZE;
    if (!Number.isInteger(this.maxBatchSize) || this.maxBatchSize < 1) throw new UserError(`local judge batch size must be a positive integer, got ${this.maxBatchSize}`);
    // A wrong folder or dtype should fail now, not after the answers to judge have been generated.
    resolveModelFolder(location, { dtype: options.dtype, modelsDir: options.modelsDir });
  }

  complete(request: CompletionRequest): Promise<CompletionResult> {
    // Keeping every step's logits over a long answer would cost vocabulary × steps floats per row.
    if ((request.topLogprobs ?? 0) > 0 && request.maxTokens !== 1) {
      return Promise.reject(new UserError('a local model gives top logprobs only for single-token completions (max tokens 1)'));
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ request, resolve, reject });
      if (!this.draining) {
        this.draining = true;
        void this.drain();
      }
    });
  }

  /** Releases the model's onnxruntime sessions (a later request loads it again). */
  async dispose(): Promise<void> {
    const model = this.model;
    this.model = undefined;
    await (await model?.catch(() => undefined))?.dispose();
  }

  private loadModel(): Promise<SteerableModel> {
    if (!this.model) {
      const loading = SteerableModel.load(this.location, { dtype: this.options.dtype, modelsDir: this.options.modelsDir });
      loading.catch(() => (this.model = undefined));
      this.model = loading;
    }
    return this.model;
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      // Let every request submitted in this turn of the event loop join the batch.
      await new Promise((resolve) => setImmediate(resolve));
      await this.runBatch(this.takeBatch());
    }
    this.draining = false;
  }

  /** The oldest request and those after it that share its decoding settings, up to the batch size. */
  private takeBatch(): PendingCompletion[] {
    const settings = (request: CompletionRequest) => `${request.maxTokens}:${request.temperature ?? 0}:${request.topLogprobs ?? 0}`;
    const wanted = settings(this.queue[0]!.request);
    const batch: PendingCompletion[] = [];
    for (let i = 0; i < this.queue.length && batch.length < this.maxBatchSize; ) {
      if (settings(this.queue[i]!.request) === wanted) batch.push(...this.queue.splice(i, 1));
      else i++;
    }
    return batch;
  }

  /** Settles every request of the batch; never throws. */
  private async runBatch(batch: PendingCompletion[]): Promise<void> {
    let model: SteerableModel;
    try {
      model = await this.loadModel();
    } catch (error) {
      for (const pending of batch) pending.reject(error);
      return;
    }
    const encoded: { pending: PendingCompletion; inputIds: number[] }[] = [];
    for (const pending of batch) {
      try {
        encoded.push({ pending, inputIds: model.tokenizer.encodeChat(pending.request.messages) });
      } catch (error) {
        pending.reject(error);
      }
    }
    if (encoded.length === 0) return;
    const { request } = encoded[0]!.pending;
    const topLogprobs = request.topLogprobs ?? 0;
    try {
      const result = await generate(
        model,
        encoded.map(({ pending, inputIds }) => ({ inputIds, seed: pending.request.seed })),
        { maxNewTokens: request.maxTokens, temperature: request.temperature ?? 0, returnLogits: topLogprobs > 0 },
      );
      encoded.forEach(({ pending }, row) => {
        const firstLogits = result.logits?.[row]?.[0];
        const text = result.texts[row] ?? '';
        pending.resolve(firstLogits ? { text, firstTokenLogprobs: decodeCandidates(model, firstLogits, topLogprobs) } : { text });
      });
    } catch (error) {
      for (const { pending } of encoded) pending.reject(error);
    }
  }
}

function decodeCandidates(model: SteerableModel, logits: Float32Array, count: number): TokenLogprob[] {
  return topTokenLogprobs(logits, count).map(({ id, logprob }) => ({ token: model.tokenizer.decode([id]), logprob }));
}

export interface LocalJudgeOptions extends LocalModelClientOptions {
  /** Requests kept in flight; default the batch size, so each batch fills. */
  concurrency?: number;
  cacheFile?: string;
}

/** The Persona Vectors judge run on a local ONNX chat model: the same scoring as the API judge, offline. */
export class LocalJudge extends LogprobJudge {
  private readonly localClient: LocalModelClient;

  constructor(location: string, options: LocalJudgeOptions = {}) {
    const client = new LocalModelClient(location, options);
    super(client, { spec: client.label, concurrency: options.concurrency ?? client.maxBatchSize, cacheFile: options.cacheFile });
    this.localClient = client;
  }

  dispose(): Promise<void> {
    return this.localClient.dispose();
  }
}
