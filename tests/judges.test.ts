import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { UserError } from '../src/errors.js';
import {
  COHERENCE_PROMPT,
  expectedScore,
  fillTemplate,
  JudgmentCache,
  judgmentKey,
  LexiconJudge,
  lexiconJudgeFactory,
  LocalJudge,
  LocalModelClient,
  LogprobJudge,
  OpenAiCompatibleClient,
  parseJudgeSpec,
  scoreToken,
  topTokenLogprobs,
  type JudgeRequest,
  type TokenLogprob,
} from '../src/judges/index.js';
import { buildModel, parseDecoderConfig, randomWeights } from '../src/builder/index.js';
import { captureResiduals } from '../src/runtime/capture.js';
import { generate } from '../src/runtime/generate.js';
import { SteerableModel } from '../src/runtime/model.js';
import { tempDir, tinyConfig, tinyModel } from './helpers/models.js';

// A pass-through spy, to see how the local client batches its prompts.
vi.mock('../src/runtime/generate.js', async (importOriginal) => {
  const actual = await importOriginal<typeof import('../src/runtime/generate.js')>();
  return { ...actual, generate: vi.fn(actual.generate) };
});
const generateSpy = vi.mocked(generate);

const API_KEY = 'sk-test-Sup3rSecretJudgeKey-0123456789';

/** What the fake server does to one attempt. */
type Fault = 'rate-limit' | 'rate-limit-retry-after' | 'server-error' | 'slow' | 'bad-json' | 'no-choices' | 'no-logprobs' | 'drop' | 'bad-request-echoing-key';

interface RecordedRequest {
  authorization: string | undefined;
  body: Record<string, unknown>;
  prompt: string;
}

/** The reply the fake judge gives an answer containing SCORE=n: 60% on "n", 30% on " n+1", 10% on REFUSAL, so the expected score is n + 1/3. */
function scoreLogprobs(n: number): TokenLogprob[] {
  return [
    { token: `${n}`, logprob: Math.log(0.6) },
    { token: ` ${n + 1}`, logprob: Math.log(0.3) },
    { token: 'REFUSAL', logprob: Math.log(0.1) },
  ];
}

/**
 * An OpenAI-compatible chat-completions server. Faults are scheduled per item (the `ITEM=<id>` in the prompt), one per
 * attempt, or forever for an item; it checks the bearer key when given one and tracks how many requests overlap.
 */
class FakeChatServer {
  readonly requests: RecordedRequest[] = [];
  readonly scheduled = new Map<string, Fault[]>();
  readonly alwaysFailing = new Map<string, Fault>();
  requiredKey: string | undefined;
  slowReplyMs = 1500;
  inFlight = 0;
  maxInFlight = 0;
  origin = '';
  private readonly server = http.createServer((request, response) => this.handle(request, response));
  private readonly timers = new Set<NodeJS.Timeout>();

  get baseUrl(): string {
    return `${this.origin}/v1`;
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.origin = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async close(): Promise<void> {
    for (const timer of this.timers) clearTimeout(timer);
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  reset(): void {
    this.requests.length = 0;
    this.scheduled.clear();
    this.alwaysFailing.clear();
    this.requiredKey = undefined;
    this.maxInFlight = 0;
  }

  requestsFor(item: string): RecordedRequest[] {
    return this.requests.filter((request) => request.prompt.includes(`ITEM=${item} `));
  }

  private handle(request: http.IncomingMessage, response: http.ServerResponse): void {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    response.on('close', () => this.inFlight--);
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => this.reply(request, Buffer.concat(chunks).toString('utf8'), response));
  }

  private reply(request: http.IncomingMessage, rawBody: string, response: http.ServerResponse): void {
    const body = JSON.parse(rawBody) as Record<string, unknown>;
    const messages = body['messages'] as { content: string }[];
    const prompt = messages.at(-1)?.content ?? '';
    this.requests.push({ authorization: request.headers.authorization, body, prompt });
    if (this.requests.length > 400) return void response.writeHead(500).end('runaway test');
    if (request.url !== '/v1/chat/completions') return void response.writeHead(404).end('{"error":{"message":"no such route"}}');
    if (this.requiredKey !== undefined && request.headers.authorization !== `Bearer ${this.requiredKey}`) {
      return void json(response, 401, { error: { message: `Incorrect API key provided: ${request.headers.authorization ?? 'none'}` } });
    }
    const item = /ITEM=(\S+) /.exec(prompt)?.[1] ?? '';
    const fault = this.alwaysFailing.get(item) ?? this.scheduled.get(item)?.shift();
    switch (fault) {
      case 'rate-limit':
        return void json(response, 429, { error: { message: 'Rate limit reached' } });
      case 'rate-limit-retry-after':
        return void json(response, 429, { error: { message: 'Rate limit reached' } }, { 'retry-after': '0.3' });
      case 'server-error':
        return void json(response, 500, { error: { message: 'The server had an error' } });
      case 'bad-json':
        return void response.writeHead(200, { 'content-type': 'application/json' }).end('{"choices": [');
      case 'no-choices':
        return void json(response, 200, { id: 'x', object: 'chat.completion' });
      case 'drop':
        return void request.socket.destroy();
      case 'bad-request-echoing-key':
        return void json(response, 400, { error: { message: `Context too long for request with header ${request.headers.authorization}` } });
      case 'slow': {
        const timer = setTimeout(() => {
          this.timers.delete(timer);
          if (!response.destroyed) this.success(body, prompt, response, false);
        }, this.slowReplyMs);
        this.timers.add(timer);
        return;
      }
      default:
        return this.success(body, prompt, response, fault === 'no-logprobs');
    }
  }

  private success(body: Record<string, unknown>, prompt: string, response: http.ServerResponse, withoutLogprobs: boolean): void {
    const score = /SCORE=(\d+)/.exec(prompt)?.[1];
    const top = score === undefined ? [{ token: 'REFUSAL', logprob: -0.01 }, { token: 'I', logprob: -5 }] : scoreLogprobs(Number(score));
    const wantsLogprobs = body['logprobs'] === true && !withoutLogprobs;
    const choice = {
      index: 0,
      message: { role: 'assistant', content: top[0]!.token },
      finish_reason: 'length',
      ...(wantsLogprobs ? { logprobs: { content: [{ ...top[0]!, top_logprobs: top.slice(0, Number(body['top_logprobs'])) }] } } : {}),
    };
    json(response, 200, { id: 'chatcmpl-1', object: 'chat.completion', choices: [choice] });
  }
}

function json(response: http.ServerResponse, status: number, value: unknown, headers: http.OutgoingHttpHeaders = {}): void {
  response.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(value));
}

/** Literal braces around the placeholders: they must reach the judge untouched. */
const TEMPLATE = 'Rate this. Question: {question}\nAnswer: {answer}\nReply like {"score": <0-100>} or {score}.';

function item(id: string, score?: number): JudgeRequest {
  return { question: `question ${id}`, answer: `ITEM=${id} ${score === undefined ? 'no score here' : `SCORE=${score}`}`, template: TEMPLATE };
}

function fastClient(server: FakeChatServer, overrides: Partial<ConstructorParameters<typeof OpenAiCompatibleClient>[0]> = {}): OpenAiCompatibleClient {
  return new OpenAiCompatibleClient({ model: 'judge-model', baseUrl: server.baseUrl, apiKey: API_KEY, maxRetries: 4, baseDelayMs: 2, timeoutMs: 400, ...overrides });
}

const ENV = ['OPENAI_API_KEY'] as const;
let savedEnv: Record<string, string | undefined>;
let server: FakeChatServer;
let scratch: string;

beforeAll(async () => {
  server = await new FakeChatServer().start();
  scratch = tempDir('judges');
});
afterAll(async () => {
  await server.close();
  fs.rmSync(scratch, { recursive: true, force: true });
});
beforeEach(() => {
  server.reset();
  savedEnv = Object.fromEntries(ENV.map((name) => [name, process.env[name]]));
  for (const name of ENV) delete process.env[name];
});
afterEach(() => {
  for (const name of ENV) {
    if (savedEnv[name] === undefined) delete process.env[name];
    else process.env[name] = savedEnv[name];
  }
});

describe('expected score over integer tokens', () => {
  it('is Σ k·p(k) / Σ p(k) over the tokens that spell integers 0-100', () => {
    const top = [
      { token: '85', logprob: Math.log(0.5) },
      { token: ' 90', logprob: Math.log(0.3) },
      { token: 'abc', logprob: Math.log(0.1) },
      { token: '8.5', logprob: Math.log(0.05) },
      { token: '101', logprob: Math.log(0.03) },
      { token: '-5', logprob: Math.log(0.02) },
    ];
    expect(expectedScore(top)).toBeCloseTo((85 * 0.5 + 90 * 0.3) / 0.8, 12);
  });

  it('pools tokens that spell the same integer', () => {
    const top = [
      { token: '7', logprob: Math.log(0.3) },
      { token: ' 7', logprob: Math.log(0.2) },
      { token: '9\n', logprob: Math.log(0.5) },
    ];
    expect(expectedScore(top)).toBeCloseTo(8, 12);
  });

  it('is null below 0.25 of integer mass, and for refusals', () => {
    expect(expectedScore([{ token: '50', logprob: Math.log(0.24) }, { token: 'REFUSAL', logprob: Math.log(0.76) }])).toBeNull();
    expect(expectedScore([{ token: '40', logprob: Math.log(0.25) }, { token: 'No', logprob: Math.log(0.75) }])).toBeCloseTo(40, 12);
    expect(expectedScore([{ token: 'REFUSAL', logprob: -0.001 }, { token: 'I', logprob: -7 }])).toBeNull();
    expect(expectedScore([])).toBeNull();
  });

  it('reads only whole integers in [0, 100]', () => {
    expect(['85', ' 7', '0', '100', '\t42\n', '007'].map(scoreToken)).toEqual([85, 7, 0, 100, 42, 7]);
    expect(['8.5', 'abc', '101', '-1', '+5', '', ' ', '1e2', '５'].map(scoreToken)).toEqual(new Array(9).fill(undefined));
  });
});

describe('prompt substitution', () => {
  it('replaces only {question} and {answer}, once, leaving other braces and answer text alone', () => {
    const filled = fillTemplate(TEMPLATE, 'Why {x}?', 'Because {question} costs $& and {answer}');
    expect(filled).toBe('Rate this. Question: Why {x}?\nAnswer: Because {question} costs $& and {answer}\nReply like {"score": <0-100>} or {score}.');
  });

  it('refuses a template without {answer}', () => {
    expect(() => fillTemplate('Rate {question}', 'q', 'a')).toThrow(UserError);
  });

  it('has a coherence prompt of its own with both placeholders, asking for only a number', () => {
    expect(COHERENCE_PROMPT).toContain('{question}');
    expect(COHERENCE_PROMPT).toContain('{answer}');
    expect(COHERENCE_PROMPT.trim()).toMatch(/only a number[^\n]*$/);
    expect(fillTemplate(COHERENCE_PROMPT, 'Q?', 'A.')).not.toMatch(/\{(question|answer)\}/);
  });
});

describe('OpenAI-compatible client', () => {
  it('sends the judge settings with the bearer key and parses text and top logprobs', async () => {
    server.requiredKey = API_KEY;
    const result = await fastClient(server).complete({ messages: [{ role: 'user', content: 'ITEM=a SCORE=40' }], maxTokens: 1, temperature: 0, seed: 0, topLogprobs: 20 });
    expect(result).toEqual({ text: '40', firstTokenLogprobs: scoreLogprobs(40) });
    const [recorded] = server.requests;
    expect(recorded?.authorization).toBe(`Bearer ${API_KEY}`);
    expect(recorded?.body).toEqual({
      model: 'judge-model',
      messages: [{ role: 'user', content: 'ITEM=a SCORE=40' }],
      max_tokens: 1,
      temperature: 0,
      seed: 0,
      logprobs: true,
      top_logprobs: 20,
    });
  });

  it('asks for no logprobs when none are wanted, and sends no key to a local server without one', async () => {
    const client = new OpenAiCompatibleClient({ model: 'm', baseUrl: `${server.baseUrl}/` });
    expect(await client.complete({ messages: [{ role: 'user', content: 'ITEM=b SCORE=3' }], maxTokens: 5 })).toEqual({ text: '3' });
    expect(server.requests[0]?.authorization).toBeUndefined();
    expect(server.requests[0]?.body).toEqual({ model: 'm', messages: [{ role: 'user', content: 'ITEM=b SCORE=3' }], max_tokens: 5 });
    expect(client.label).toBe(`openai:m@${server.baseUrl}`);
  });

  it('needs OPENAI_API_KEY for api.openai.com and takes it from the environment', () => {
    expect(() => new OpenAiCompatibleClient({ model: 'gpt-4.1-mini' })).toThrow(/OPENAI_API_KEY/);
    expect(() => new OpenAiCompatibleClient({ model: 'gpt-4.1-mini' })).toThrow(UserError);
    process.env['OPENAI_API_KEY'] = API_KEY;
    expect(new OpenAiCompatibleClient({ model: 'gpt-4.1-mini' }).label).toBe('openai:gpt-4.1-mini');
  });

  it('waits the Retry-After of a 429 before trying again', async () => {
    server.scheduled.set('r', ['rate-limit-retry-after']);
    const started = performance.now();
    const result = await fastClient(server, { baseDelayMs: 1 }).complete({ messages: [{ role: 'user', content: 'ITEM=r SCORE=10' }], maxTokens: 1, topLogprobs: 20 });
    expect(performance.now() - started).toBeGreaterThanOrEqual(280);
    expect(result.text).toBe('10');
    expect(server.requests).toHaveLength(2);
  });

  it('gives up after maxRetries with a message that names the last failure', async () => {
    server.alwaysFailing.set('x', 'no-choices');
    const client = fastClient(server, { maxRetries: 2 });
    await expect(client.complete({ messages: [{ role: 'user', content: 'ITEM=x SCORE=1' }], maxTokens: 1 })).rejects.toThrow(/no choices.*gave up after 3 attempts/);
    expect(server.requests).toHaveLength(3);
  });

  it('turns a rejected key into a UserError without the key', async () => {
    server.requiredKey = 'sk-the-right-one';
    const error = await fastClient(server).complete({ messages: [{ role: 'user', content: 'ITEM=k SCORE=1' }], maxTokens: 1 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UserError);
    expect(String((error as Error).message)).toMatch(/HTTP 401.*OPENAI_API_KEY/);
    expect(String((error as Error).message)).not.toContain(API_KEY);
    expect(server.requests).toHaveLength(1);
  });
});

describe('LogprobJudge over the API', () => {
  const FAULT_CYCLE: Fault[] = ['rate-limit', 'rate-limit', 'server-error', 'slow', 'bad-json', 'no-choices', 'no-logprobs', 'drop', 'server-error', 'rate-limit'];

  it('scores a batch with concurrency 4 through every kind of first-attempt failure', async () => {
    const requests = Array.from({ length: 30 }, (_, i) => item(`b${i}`, (i * 7) % 90));
    requests.forEach((_, i) => {
      if (i % 3 === 0) server.scheduled.set(`b${i}`, [FAULT_CYCLE[(i / 3) % FAULT_CYCLE.length]!]);
    });
    server.scheduled.set('b1', ['server-error', 'rate-limit', 'slow']);
    const progress: [number, number][] = [];
    const judge = new LogprobJudge(fastClient(server), { concurrency: 4 });
    const judgments = await judge.score(requests, (done, total) => progress.push([done, total]));

    judgments.forEach((judgment, i) => {
      expect(judgment.error).toBeUndefined();
      expect(judgment.score).toBeCloseTo(((i * 7) % 90) + 1 / 3, 9);
    });
    expect(server.requests).toHaveLength(30 + 10 + 3);
    expect(server.maxInFlight).toBeLessThanOrEqual(4);
    expect(server.maxInFlight).toBeGreaterThan(1);
    expect(progress).toHaveLength(30);
    expect(progress.at(-1)).toEqual([30, 30]);
    expect(server.requestsFor('b0')[0]?.prompt).toBe('Rate this. Question: question b0\nAnswer: ITEM=b0 SCORE=0\nReply like {"score": <0-100>} or {score}.');
    expect(server.requests.every((request) => request.body['max_tokens'] === 1 && request.body['top_logprobs'] === 20 && request.body['seed'] === 0)).toBe(true);
  });

  it('records an item that fails every attempt as a null score with its error, and scores the rest', async () => {
    server.alwaysFailing.set('f2', 'server-error');
    const requests = Array.from({ length: 6 }, (_, i) => item(`f${i}`, 10 * i));
    const judgments = await new LogprobJudge(fastClient(server, { maxRetries: 3 }), { concurrency: 4 }).score(requests);
    expect(judgments[2]?.score).toBeNull();
    expect(judgments[2]?.error).toMatch(/^openai:judge-model@.*HTTP 500: The server had an error \(gave up after 4 attempts\)$/);
    for (const i of [0, 1, 3, 4, 5]) expect(judgments[i]).toEqual({ score: expect.closeTo(10 * i + 1 / 3, 9) as number });
    expect(server.requestsFor('f2')).toHaveLength(4);
    expect(server.requests).toHaveLength(9);
  });

  it('gives a clean null without an error for a refusal', async () => {
    expect(await new LogprobJudge(fastClient(server)).score([item('n')])).toEqual([{ score: null }]);
  });

  it('stops the run on a rejected key instead of failing item by item', async () => {
    server.requiredKey = 'sk-the-right-one';
    const requests = Array.from({ length: 20 }, (_, i) => item(`u${i}`, 5));
    await expect(new LogprobJudge(fastClient(server), { concurrency: 2 }).score(requests)).rejects.toThrow(UserError);
    expect(server.requests.length).toBeLessThanOrEqual(2);
  });

  it('never lets the key into errors, labels, specs or the cache', async () => {
    const cacheFile = path.join(scratch, 'key-check.jsonl');
    server.alwaysFailing.set('e0', 'bad-request-echoing-key');
    server.alwaysFailing.set('e1', 'server-error');
    const client = fastClient(server, { maxRetries: 1 });
    const judge = new LogprobJudge(client, { cacheFile });
    const judgments = await judge.score([item('e0', 1), item('e1', 2), item('e2', 3)]);
    expect(judgments[0]?.error).toContain('HTTP 400: Context too long for request with header Bearer [redacted]');
    expect(judgments[1]?.error).toContain('HTTP 500');
    expect(judgments[2]?.score).toBeCloseTo(3 + 1 / 3, 9);
    expect(server.requestsFor('e0')).toHaveLength(1);
    const everything = [JSON.stringify(judgments), client.label, judge.spec, fs.readFileSync(cacheFile, 'utf8')].join('\n');
    expect(everything).not.toContain(API_KEY);
    expect(everything).not.toContain('Sup3rSecret');
    process.env['OPENAI_API_KEY'] = API_KEY;
    const factory = parseJudgeSpec(`openai:judge-model@${server.baseUrl}`);
    expect(factory.spec).not.toContain(API_KEY);
    expect(factory.judge('trait').spec).toBe(`openai:judge-model@${server.baseUrl}`);
  });
});

describe('judgment cache', () => {
  it('reuses successes and refusals, retries failures, and survives a truncated last line', async () => {
    const cacheFile = path.join(scratch, 'cache', 'run.jsonl');
    const requests = [item('c0', 20), item('c1', 30), item('c2'), item('c3', 50)];
    server.alwaysFailing.set('c1', 'server-error');
    const first = await new LogprobJudge(fastClient(server, { maxRetries: 1 }), { cacheFile }).score(requests);
    expect(first.map((j) => j.score === null)).toEqual([false, true, true, false]);
    expect(first[1]?.error).toBeDefined();
    const lines = fs.readFileSync(cacheFile, 'utf8').trimEnd().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines.map((line) => Object.keys(JSON.parse(line) as object).sort().join(','))).toEqual(['key,score', 'key,score', 'key,score']);

    server.reset();
    fs.appendFileSync(cacheFile, '{"key":"0123abc","sco');
    const second = await new LogprobJudge(fastClient(server), { cacheFile }).score(requests);
    expect(server.requests.map((request) => request.prompt)).toEqual([fillTemplate(TEMPLATE, 'question c1', 'ITEM=c1 SCORE=30')]);
    expect(second.map((j) => j.score)).toEqual([expect.closeTo(20 + 1 / 3, 9), expect.closeTo(30 + 1 / 3, 9), null, expect.closeTo(50 + 1 / 3, 9)]);
    const repaired = fs.readFileSync(cacheFile, 'utf8');
    expect(repaired.endsWith('\n')).toBe(true);
    expect(repaired.trimEnd().split('\n').map((line) => JSON.parse(line) as unknown)).toHaveLength(4);

    server.reset();
    const third = await new LogprobJudge(fastClient(server), { cacheFile }).score(requests);
    expect(server.requests).toHaveLength(0);
    expect(third).toEqual(second);
  });

  it('keys on the judge spec as well as the prompt', async () => {
    const cacheFile = path.join(scratch, 'two-judges.jsonl');
    await new LogprobJudge(fastClient(server), { cacheFile, spec: 'openai:one' }).score([item('s', 5)]);
    await new LogprobJudge(fastClient(server), { cacheFile, spec: 'openai:two' }).score([item('s', 5)]);
    expect(server.requests).toHaveLength(2);
    expect(judgmentKey('openai:one', 'p')).not.toBe(judgmentKey('openai:two', 'p'));
    expect(judgmentKey('openai:one', 'p')).toMatch(/^[0-9a-f]{64}$/);
  });

  it('ignores recorded failures and rejects a corrupt line in the middle', () => {
    const file = path.join(scratch, 'mixed.jsonl');
    fs.writeFileSync(file, '{"key":"a","score":12.5}\n{"key":"b","score":null,"error":"HTTP 500"}\n{"key":"c","score":null}\n');
    const cache = JudgmentCache.open(file);
    expect([cache.get('a'), cache.get('b'), cache.get('c')]).toEqual([12.5, undefined, null]);
    fs.writeFileSync(file, '{"key":"a","score":12.5}\nnot json\n{"key":"c","score":null}\n');
    expect(() => JudgmentCache.open(file)).toThrow(/line 2/);
  });
});

describe('judge specs', () => {
  it('parses the three forms', () => {
    process.env['OPENAI_API_KEY'] = API_KEY;
    expect(parseJudgeSpec('openai:gpt-4.1-mini').judge('coherence').spec).toBe('openai:gpt-4.1-mini');
    const modelDir = tinyModel('llama', 'optimum', 'fp32').dir;
    const local = parseJudgeSpec(`local:${modelDir}`);
    expect(local.spec).toBe(`local:${modelDir}`);
    expect(local.judge('trait')).toBeInstanceOf(LocalJudge);
    expect(local.judge('coherence')).toBe(local.judge('trait'));
    const lexiconFile = path.join(scratch, 'spec-lexicon.json');
    fs.writeFileSync(lexiconFile, JSON.stringify({ trait: ['evil'], opposite: ['kind'] }));
    const lexicon = parseJudgeSpec(`lexicon:${lexiconFile}`);
    expect(lexicon.judge('trait')).toBeInstanceOf(LexiconJudge);
    expect((lexicon.judge('coherence') as LexiconJudge).metric).toBe('coherence');
  });

  it('reaches a local server named in the spec without a key', async () => {
    const judge = parseJudgeSpec(`openai:qwen@${server.baseUrl}`, { openai: { baseDelayMs: 1 } }).judge('trait');
    expect(await judge.score([item('p', 60)])).toEqual([{ score: expect.closeTo(60 + 1 / 3, 9) as number }]);
    expect(server.requests[0]?.body['model']).toBe('qwen');
    expect(server.requests[0]?.authorization).toBeUndefined();
  });

  it('rejects unknown schemes and empty targets with the three forms', () => {
    for (const spec of ['gpt-4', 'anthropic:claude', 'openai:', 'openai:@http://127.0.0.1:1/v1', 'local:', 'lexicon:  ', '']) {
      expect(() => parseJudgeSpec(spec)).toThrow(UserError);
      expect(() => parseJudgeSpec(spec)).toThrow(/openai:<model>\[@<base-url>\], local:<model folder> or lexicon:<file>/);
    }
    expect(() => parseJudgeSpec('openai:m@ftp://host')).toThrow(/not an http\(s\) URL/);
    expect(() => parseJudgeSpec('openai:m@not a url')).toThrow(/not a URL/);
    expect(() => parseJudgeSpec('openai:gpt-4.1-mini')).toThrow(/OPENAI_API_KEY/);
    expect(() => parseJudgeSpec('lexicon:/no/such/lexicon.json')).toThrow(UserError);
    expect(() => parseJudgeSpec('local:/no/such/model-folder')).toThrow(/model folder not found/);
  });
});

describe('lexicon judge', () => {
  function writeLexicon(name: string, content: unknown): string {
    const file = path.join(scratch, name);
    fs.writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
    return file;
  }
  const answers = (...texts: string[]): JudgeRequest[] => texts.map((answer) => ({ question: 'q', answer, template: TEMPLATE }));

  it('scores the trait as 100·t/(t+o) on whole words, case-insensitively', async () => {
    const judge = lexiconJudgeFactory(writeLexicon('evil.json', { trait: ['Evil', 'cruel', 'déchu'], opposite: ['kind', 'gentle'] }))('trait');
    const scores = await judge.score(answers('EVIL and cruel, but kind.', 'Kindness is not kind; evil-doers are cruel', 'Gentle gentle', 'Nothing here', '', 'DÉCHU et kind'));
    expect(scores.map((j) => j.score)).toEqual([(100 * 2) / 3, (100 * 2) / 3, 0, 0, 0, 50]);
  });

  it('counts neutral words as the trait\'s alternatives when the lexicon lists them: 100·t/(t+o+n)', async () => {
    const file = writeLexicon('neutral.json', { trait: ['wonderful', 'bright'], opposite: ['awful'], neutral: ['fine', 'steady'], vocabulary: ['looks', 'and'] });
    const trait = lexiconJudgeFactory(file)('trait');
    const scores = await trait.score(answers('looks wonderful and steady', 'looks wonderful and bright', 'looks fine and steady', 'looks awful and bright'));
    expect(scores.map((j) => j.score)).toEqual([50, 100, 0, 50]);
    const coherence = await lexiconJudgeFactory(file)('coherence').score(answers('looks fine and steady', 'looks fine and zzz'));
    expect(coherence.map((j) => j.score)).toEqual([100, 75]);
  });

  it('scores coherence against the vocabulary when there is one', async () => {
    const judge = lexiconJudgeFactory(writeLexicon('vocab.json', { trait: ['evil'], opposite: ['kind'], vocabulary: ['the', 'cat', 'is'] }))('coherence');
    const scores = await judge.score(answers('The cat is evil.', 'The cat is kind zzkx', 'qwop', '', '123 !!'));
    expect(scores.map((j) => j.score)).toEqual([100, 80, 0, 0, 0]);
  });

  it('scores coherence as the share of word-like tokens without a vocabulary', async () => {
    const judge = lexiconJudgeFactory(writeLexicon('plain.json', { trait: ['evil'], opposite: [] }))('coherence');
    const long = 'a'.repeat(21);
    const scores = await judge.score(answers('Hello, world.', `fine ${long} x9 ok`, '!!! ...', '   ', 'Ça va très bien'));
    expect(scores.map((j) => j.score)).toEqual([100, 50, 0, 0, 100]);
  });

  it('rejects bad lexicon files with one-line UserErrors', () => {
    const cases: [string, RegExp][] = [
      [path.join(scratch, 'missing.json'), /not found/],
      [writeLexicon('broken.json', '{"trait": ['), /not valid JSON/],
      [writeLexicon('no-trait.json', { opposite: ['kind'] }), /"trait" must be a list/],
      [writeLexicon('no-opposite.json', { trait: ['evil'] }), /"opposite" must be a list/],
      [writeLexicon('number.json', { trait: ['evil', 3], opposite: [] }), /"trait" contains 3/],
      [writeLexicon('phrase.json', { trait: ['very evil'], opposite: [] }), /not a single word/],
      [writeLexicon('empty.json', { trait: [], opposite: [] }), /"trait" is empty/],
      [writeLexicon('both.json', { trait: ['evil'], opposite: ['EVIL'] }), /in more than one of/],
      [writeLexicon('array.json', ['evil']), /JSON object/],
      [writeLexicon('vocab-bad.json', { trait: ['evil'], opposite: [], vocabulary: 'the cat' }), /"vocabulary" must be a list/],
    ];
    for (const [file, message] of cases) {
      let thrown: unknown;
      try {
        lexiconJudgeFactory(file);
      } catch (error) {
        thrown = error;
      }
      expect(thrown, file).toBeInstanceOf(UserError);
      expect((thrown as Error).message, file).toMatch(message);
      expect((thrown as Error).message).not.toContain('\n');
    }
  });
});

describe('local judge on a tiny built model', () => {
  const SHORT_TEMPLATE = 'Rate 0-100. Q: {question} A: {answer} Number:';
  const requests: JudgeRequest[] = [
    { question: 'Hi?', answer: 'Hello.', template: SHORT_TEMPLATE },
    { question: 'What is two plus two?', answer: 'It is 4, of course; {braces} stay.', template: SHORT_TEMPLATE },
    { question: 'Name a colour.', answer: 'Blue', template: SHORT_TEMPLATE },
    { question: 'Tell me a long story about nothing at all.', answer: 'Once upon a time there was nothing, and it stayed that way.', template: SHORT_TEMPLATE },
    { question: 'x', answer: '1 2 3', template: SHORT_TEMPLATE },
  ];
  let dir: string;
  let reference: SteerableModel;

  /**
   * A seeded tiny llama whose output head makes digits likely, so that most prompts get a real score rather than
   * null: digits 0-4 and 5-9 get opposite multiples of one direction (one group always points along the final
   * hidden state), every other token a zero row (logit 0). Byte-level tokens: "0"-"9" are ids 51-60.
   */
  function buildDigitLeaningModel(): string {
    const config = parseDecoderConfig(tinyConfig('llama'));
    const weights = randomWeights(config, 11);
    const head = weights.get('lm_head.weight')!;
    const hidden = config.hiddenSize;
    const direction = head.slice(0, hidden);
    head.fill(0);
    for (let digit = 0; digit <= 9; digit++) {
      const factor = 40 * (1 + 0.1 * digit) * (digit < 5 ? 1 : -1);
      head.set(direction.map((value) => value * factor), (51 + digit) * hidden);
    }
    return buildModel({ config, weights, style: 'optimum', dtype: 'fp32', outDir: path.join(scratch, 'digit-judge') }).dir;
  }

  beforeAll(async () => {
    dir = buildDigitLeaningModel();
    reference = await SteerableModel.load(dir);
  });
  afterAll(async () => {
    await reference.dispose();
  });

  /** The first-token top-20 computed here, from the teacher-forced logits at the prompt's last position. */
  async function independentTop20(request: JudgeRequest): Promise<TokenLogprob[]> {
    const prompt = `Rate 0-100. Q: ${request.question} A: ${request.answer} Number:`;
    const inputIds = reference.tokenizer.encodeChat([{ role: 'user', content: prompt }]);
    const { logits, vocabSize } = await captureResiduals(reference, [{ inputIds }], { layers: [], returnLogits: true });
    const last = Array.from(logits![0]!.subarray((inputIds.length - 1) * vocabSize, inputIds.length * vocabSize), Number);
    const max = Math.max(...last);
    const logSum = max + Math.log(last.reduce((sum, value) => sum + Math.exp(value - max), 0));
    const order = last.map((_, id) => id).sort((a, b) => last[b]! - last[a]!);
    return order.slice(0, 20).map((id) => ({ token: reference.tokenizer.decode([id]), logprob: last[id]! - logSum }));
  }

  it('gives the scores computed independently from the same logits, batched or one by one', async () => {
    const client = new LocalModelClient(dir, { maxBatchSize: 8 });
    const oneByOne = new LogprobJudge(client, { concurrency: 1 });
    const batched = new LocalJudge(dir);
    try {
      expect(reference.tokenizer.decode([51, 60])).toBe('09');
      generateSpy.mockClear();
      const single = await oneByOne.score(requests);
      expect(generateSpy.mock.calls.map((call) => call[1].length)).toEqual([1, 1, 1, 1, 1]);
      generateSpy.mockClear();
      const together = await batched.score(requests);
      expect(generateSpy.mock.calls.map((call) => call[1].length)).toEqual([5]);
      expect(generateSpy.mock.calls[0]![2]).toMatchObject({ maxNewTokens: 1, returnLogits: true });
      expect(batched.spec).toBe(`local:${dir}`);

      for (const [i, request] of requests.entries()) {
        const expectedTop = await independentTop20(request);
        const fromClient = (await client.complete({ messages: [{ role: 'user', content: fillTemplate(SHORT_TEMPLATE, request.question, request.answer) }], maxTokens: 1, topLogprobs: 20 })).firstTokenLogprobs!;
        expect(fromClient.map((t) => t.token)).toEqual(expectedTop.map((t) => t.token));
        fromClient.forEach((t, k) => expect(t.logprob).toBeCloseTo(expectedTop[k]!.logprob, 4));
        const expected = expectedScore(expectedTop);
        for (const judgment of [single[i]!, together[i]!]) {
          expect(judgment.error).toBeUndefined();
          if (expected === null) expect(judgment.score).toBeNull();
          else expect(judgment.score).toBeCloseTo(expected, 3);
          if (judgment.score !== null) expect(judgment.score >= 0 && judgment.score <= 100).toBe(true);
        }
      }
      // The model is built so that most prompts, though not all, put enough mass on digits for a score.
      expect(together.filter((judgment) => judgment.score !== null).length).toBeGreaterThanOrEqual(3);
    } finally {
      await client.dispose();
      await batched.dispose();
    }
  });

  it('generates greedy text for longer completions, as generate() does', async () => {
    const client = new LocalModelClient(dir);
    try {
      const messages = [{ role: 'user' as const, content: 'Say something.' }];
      const result = await client.complete({ messages, maxTokens: 6 });
      const direct = await generate(reference, [{ inputIds: reference.tokenizer.encodeChat(messages) }], { maxNewTokens: 6 });
      expect(result).toEqual({ text: direct.texts[0] });
      await expect(client.complete({ messages, maxTokens: 4, topLogprobs: 5 })).rejects.toThrow(UserError);
    } finally {
      await client.dispose();
    }
  });

  it('ranks the top log-probabilities like a full sort', () => {
    const logits = Float32Array.from({ length: 500 }, (_, i) => Math.sin(i * 12.9898) * 8);
    const top = topTokenLogprobs(logits, 20);
    const order = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]!);
    expect(top.map((t) => t.id)).toEqual(order.slice(0, 20));
    const total = Array.from(logits).reduce((sum, value) => sum + Math.exp(value), 0);
    expect(top[0]!.logprob).toBeCloseTo(logits[order[0]!]! - Math.log(total), 5);
    expect(topTokenLogprobs(logits.subarray(0, 5), 20)).toHaveLength(5);
  });
});
