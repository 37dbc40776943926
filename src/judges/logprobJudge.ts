import { isUserError, UserError } from '../errors.js';
import { JudgmentCache, judgmentKey } from './cache.js';
import { ConcurrencyLimit, runPool } from './pool.js';
import { fillTemplate } from './prompt.js';
import { expectedScore } from './scoring.js';
import type { ChatCompletionClient, CompletionRequest, Judge, Judgment, JudgeRequest } from './types.js';

/** The Persona Vectors judge call (App. B.1): one greedy token with its top-20 alternatives. */
export const JUDGE_COMPLETION_SETTINGS = { maxTokens: 1, temperature: 0, seed: 0, topLogprobs: 20 } as const satisfies Omit<CompletionRequest, 'messages'>;

export const DEFAULT_JUDGE_CONCURRENCY = 8;

export interface LogprobJudgeOptions {
  /** Defaults to the client's label. Part of every cache key, so judgments from different judges never mix. */
  spec?: string;
  /** Requests in flight at once; default 8. */
  concurrency?: number;
  /** JSONL file of earlier judgments to reuse and extend. */
  cacheFile?: string;
}

/**
 * Scores answers as the expected value of the judge's first token over the integers 0–100 (see `expectedScore`).
 * A request that still fails after the client's retries becomes `{score: null, error}`; a UserError (rejected key,
 * unknown model, template without `{answer}`) stops the whole run instead, since every item would fail the same way.
 */
export class LogprobJudge implements Judge {
  readonly spec: string;
  private readonly concurrency: number;
  private readonly inFlight: ConcurrencyLimit;

  constructor(
    private readonly client: ChatCompletionClient,
    private readonly options: LogprobJudgeOptions = {},
  ) {
    this.spec = options.spec ?? client.label;
    this.concurrency = options.concurrency ?? DEFAULT_JUDGE_CONCURRENCY;
    if (!Number.isInteger(this.concurrency) || this.concurrency < 1) throw new UserError(`judge concurrency must be a positive integer, got ${this.concurrency}`);
    this.inFlight = new ConcurrencyLimit(this.concurrency);
  }

  async score(requests: readonly JudgeRequest[], onProgress?: (done: number, total: number) => void): Promise<Judgment[]> {
    const prompts = requests.map((request) => fillTemplate(request.template, request.question, request.answer));
    const cache = this.options.cacheFile === undefined ? undefined : JudgmentCache.open(this.options.cacheFile);
    const judgments: Judgment[] = new Array<Judgment>(requests.length);
    let done = 0;
    await runPool(requests.length, this.concurrency, async (index) => {
      judgments[index] = await this.inFlight.run(() => this.judgeOne(prompts[index]!, cache));
      onProgress?.(++done, requests.length);
    });
    return judgments;
  }

  private async judgeOne(prompt: string, cache: JudgmentCache | undefined): Promise<Judgment> {
    if (!cache) return this.ask(prompt);
    const key = judgmentKey(this.spec, prompt);
    const cached = cache.get(key);
    if (cached !== undefined) return { score: cached };
    const judgment = await this.ask(prompt);
    if (judgment.error === undefined) cache.put(key, judgment.score);
    return judgment;
  }

  private async ask(prompt: string): Promise<Judgment> {
    try {
      const result = await this.client.complete({ messages: [{ role: 'user', content: prompt }], ...JUDGE_COMPLETION_SETTINGS });
      if (result.firstTokenLogprobs === undefined) throw new Error(`${this.client.label} returned no logprobs`);
      return { score: expectedScore(result.firstTokenLogprobs) };
    } catch (error) {
      if (isUserError(error)) throw error;
      // One line, since errors end up in CSV cells and log lines.
      return { score: null, error: (error instanceof Error ? error.message : String(error)).replace(/\s*\n\s*/g, ' ') };
    }
  }
}
