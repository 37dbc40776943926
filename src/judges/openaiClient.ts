import { UserError } from '../errors.js';
import type { ChatCompletionClient, CompletionRequest, CompletionResult, TokenLogprob } from './types.js';

export const DEFAULT_OPENAI_BASE_URL = 'https://api.openai.com/v1';
const OPENAI_HOST = 'api.openai.com';
const MAX_DELAY_MS = 60_000;
const MAX_SERVER_MESSAGE_LENGTH = 200;

export interface OpenAiClientOptions {
  model: string;
  /** Default https://api.openai.com/v1; any OpenAI-compatible server (vLLM, llama.cpp, Ollama) works. */
  baseUrl?: string;
  /** Default: the OPENAI_API_KEY environment variable; local servers may need none. */
  apiKey?: string;
  /** Per-request limit, connection and body included; default 60 s. */
  timeoutMs?: number;
  /** Further attempts after the first for failures worth retrying; default 6. */
  maxRetries?: number;
  /** Delay before the first retry, doubling after each (with jitter); default 500 ms. */
  baseDelayMs?: number;
}

/** A failure another attempt may cure (rate limit, server error, lost connection, timeout, malformed reply). */
class RetryableError extends Error {
  constructor(
    message: string,
    /** The server's Retry-After, when it sent one. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'RetryableError';
  }
}

/**
 * A chat-completions client for OpenAI and compatible servers. Every message it throws or labels is free of the API
 * key, so callers may record them.
 */
export class OpenAiCompatibleClient implements ChatCompletionClient {
  readonly label: string;
  private readonly model: string;
  private readonly endpoint: string;
  private readonly apiKey: string | undefined;
  private readonly timeoutMs: number;
  private readonly maxRetries: number;
  private readonly baseDelayMs: number;

  constructor(options: OpenAiClientOptions) {
    if (options.model.trim() === '') throw new UserError('the OpenAI-compatible judge needs a model name');
    const baseUrl = parseBaseUrl(options.baseUrl ?? DEFAULT_OPENAI_BASE_URL);
    this.model = options.model;
    this.endpoint = `${baseUrl}/chat/completions`;
    this.label = baseUrl === DEFAULT_OPENAI_BASE_URL ? `openai:${options.model}` : `openai:${options.model}@${baseUrl}`;
    this.apiKey = resolveApiKey(options.apiKey);
    if (this.apiKey === undefined && new URL(baseUrl).hostname === OPENAI_HOST) {
      throw new UserError(`OPENAI_API_KEY is not set; the judge ${this.label} calls ${OPENAI_HOST}, which needs an API key`);
    }
    this.timeoutMs = checkedOption(options.timeoutMs ?? 60_000, 'timeoutMs', 'a positive number', (v) => v > 0);
    this.maxRetries = checkedOption(options.maxRetries ?? 6, 'maxRetries', 'a non-negative integer', (v) => Number.isInteger(v) && v >= 0);
    this.baseDelayMs = checkedOption(options.baseDelayMs ?? 500, 'baseDelayMs', 'a non-negative number', (v) => v >= 0);
  }

  async complete(request: CompletionRequest): Promise<CompletionResult> {
    const body = JSON.stringify(this.requestBody(request));
    const wantsLogprobs = (request.topLogprobs ?? 0) > 0;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.attempt(body, wantsLogprobs);
      } catch (error) {
        if (!(error instanceof RetryableError)) throw error;
        if (attempt > this.maxRetries) throw new Error(this.redact(`${this.label}: ${error.message} (gave up after ${attempt} attempts)`));
        await sleep(error.retryAfterMs ?? this.backoffMs(attempt));
      }
    }
  }

  private requestBody(request: CompletionRequest): Record<string, unknown> {
    const topLogprobs = request.topLogprobs ?? 0;
    // Unset temperature and seed are undefined here, which JSON.stringify leaves out: the server's defaults apply.
    return {
      model: this.model,
      messages: request.messages,
      max_tokens: request.maxTokens,
      temperature: request.temperature,
      seed: request.seed,
      ...(topLogprobs > 0 ? { logprobs: true, top_logprobs: topLogprobs } : {}),
    };
  }

  private async attempt(body: string, wantsLogprobs: boolean): Promise<CompletionResult> {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (this.apiKey !== undefined) headers['authorization'] = `Bearer ${this.apiKey}`;
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.timeoutMs);
    let response: Response;
    let text: string;
    try {
      response = await fetch(this.endpoint, { method: 'POST', headers, body, signal: controller.signal });
      text = await response.text();
    } catch (error) {
      throw new RetryableError(controller.signal.aborted ? `no reply within ${this.timeoutMs} ms` : `network error: ${describeNetworkError(error)}`);
    } finally {
      clearTimeout(timer);
    }
    if (!response.ok) throw this.statusError(response.status, response.headers.get('retry-after'), text);
    return parseCompletion(text, wantsLogprobs);
  }

  private statusError(status: number, retryAfter: string | null, body: string): Error {
    const detail = serverMessage(body);
    const described = this.redact(`HTTP ${status}${detail ? `: ${detail}` : ''}`);
    if (status === 401 || status === 403) {
      const advice = this.apiKey === undefined ? 'the server wants an API key; set OPENAI_API_KEY' : 'the API key (OPENAI_API_KEY) was not accepted';
      return new UserError(`${this.label}: HTTP ${status}: ${advice}`);
    }
    if (status === 404) return new UserError(`${this.label}: ${described} (check the model name and the base URL)`);
    if (status === 408 || status === 429 || status >= 500) return new RetryableError(described, parseRetryAfter(retryAfter));
    return new Error(`${this.label}: ${described}`);
  }

  /** Exponential backoff with jitter, so that parallel requests refused together do not retry together. */
  private backoffMs(attempt: number): number {
    return Math.min(this.baseDelayMs * 2 ** (attempt - 1), MAX_DELAY_MS) * (0.5 + Math.random() / 2);
  }

  /** Servers may echo the key (in part or whole) in error bodies. */
  private redact(message: string): string {
    return this.apiKey === undefined ? message : message.split(this.apiKey).join('[redacted]');
  }
}

function parseBaseUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UserError(`judge base URL "${value}" is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UserError(`judge base URL "${value}" is not an http(s) URL`);
  return value.replace(/\/+$/, '');
}

function resolveApiKey(explicit: string | undefined): string | undefined {
  const value = (explicit ?? process.env['OPENAI_API_KEY'] ?? '').trim();
  return value === '' ? undefined : value;
}

function checkedOption(value: number, name: string, expected: string, valid: (value: number) => boolean): number {
  if (!Number.isFinite(value) || !valid(value)) throw new UserError(`${name} must be ${expected}, got ${value}`);
  return value;
}

/** Retry-After in seconds (fractions accepted), capped; HTTP dates are left to the normal backoff. */
function parseRetryAfter(header: string | null): number | undefined {
  if (header === null || header.trim() === '') return undefined;
  const seconds = Number(header);
  return Number.isFinite(seconds) && seconds >= 0 ? Math.min(seconds * 1000, MAX_DELAY_MS) : undefined;
}

/** The `error.message` of an OpenAI-style error body, else the body itself, as one short line. */
function serverMessage(body: string): string {
  let message = body;
  try {
    const parsed: unknown = JSON.parse(body);
    const error = isRecord(parsed) ? parsed['error'] : undefined;
    if (isRecord(error) && typeof error['message'] === 'string') message = error['message'];
    else if (typeof error === 'string') message = error;
  } catch {
    // Not JSON: quote the body as it is.
  }
  const line = message.replace(/\s+/g, ' ').trim();
  return line.length > MAX_SERVER_MESSAGE_LENGTH ? `${line.slice(0, MAX_SERVER_MESSAGE_LENGTH)}…` : line;
}

function describeNetworkError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause;
  const code = isRecord(cause) && typeof cause['code'] === 'string' ? cause['code'] : undefined;
  return code ? `${error.message} (${code})` : error.message;
}

/** Reads `choices[0].message.content` and, when asked for, the first position's `top_logprobs`. */
function parseCompletion(body: string, wantsLogprobs: boolean): CompletionResult {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    throw new RetryableError('the reply is not valid JSON');
  }
  const choices = isRecord(parsed) ? parsed['choices'] : undefined;
  const choice: unknown = Array.isArray(choices) ? choices[0] : undefined;
  const message = isRecord(choice) ? choice['message'] : undefined;
  if (!isRecord(choice) || !isRecord(message)) throw new RetryableError('the reply has no choices[0].message');
  const content = message['content'];
  const text = typeof content === 'string' ? content : '';
  if (!wantsLogprobs) return { text };
  const logprobs = choice['logprobs'];
  const positions = isRecord(logprobs) ? logprobs['content'] : undefined;
  if (!Array.isArray(positions)) throw new RetryableError('the reply has no logprobs (does the server support logprobs?)');
  const first: unknown = positions[0];
  if (first === undefined) return { text, firstTokenLogprobs: [] };
  const candidates = isRecord(first) ? first['top_logprobs'] : undefined;
  if (!Array.isArray(candidates) || !candidates.every(isTokenLogprob)) throw new RetryableError('the reply has malformed top_logprobs');
  return { text, firstTokenLogprobs: candidates.map(({ token, logprob }) => ({ token, logprob })) };
}

function isTokenLogprob(value: unknown): value is TokenLogprob {
  return isRecord(value) && typeof value['token'] === 'string' && typeof value['logprob'] === 'number';
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
