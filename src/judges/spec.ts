import { UserError } from '../errors.js';
import { lexiconJudgeFactory, type JudgeMetric } from './lexicon.js';
import { LocalJudge, LocalModelClient, type LocalModelClientOptions } from './localClient.js';
import { LogprobJudge } from './logprobJudge.js';
import { OpenAiCompatibleClient, type OpenAiClientOptions } from './openaiClient.js';
import type { ChatCompletionClient, Judge } from './types.js';

const SPEC_FORMS = 'openai:<model>[@<base-url>], local:<model folder> or lexicon:<file>';

export interface JudgeSpecOptions {
  /** Requests in flight for openai: judges (default 8) and local: judges (default: the batch size). */
  concurrency?: number;
  /** JSONL cache of judgments for openai: and local: judges. */
  cacheFile?: string;
  /** Key, timeout and retry settings for openai: judges. */
  openai?: Omit<OpenAiClientOptions, 'model' | 'baseUrl'>;
  /** Graph dtype, models folder and batch size for local: judges. */
  local?: LocalModelClientOptions;
}

/** Gives the judge for each metric; model judges score both metrics with the same model (the prompts differ). */
export interface JudgeFactory {
  readonly spec: string;
  judge(metric: JudgeMetric): Judge;
  /** Releases a local judge's model; nothing to do for the others. */
  dispose(): Promise<void>;
}

function splitSpec(spec: string, forms: string, schemes: readonly string[], what: string): { trimmed: string; scheme: string; target: string } {
  const trimmed = spec.trim();
  const colon = trimmed.indexOf(':');
  const scheme = colon < 0 ? '' : trimmed.slice(0, colon).toLowerCase();
  const target = colon < 0 ? '' : trimmed.slice(colon + 1).trim();
  if (target === '' || !schemes.includes(scheme)) throw new UserError(`invalid ${what} "${trimmed}": use ${forms}`);
  return { trimmed, scheme, target };
}

function openAiClient(trimmed: string, target: string, forms: string, options: JudgeSpecOptions['openai']): OpenAiCompatibleClient {
  const at = target.indexOf('@');
  const model = (at < 0 ? target : target.slice(0, at)).trim();
  const baseUrl = at < 0 ? undefined : target.slice(at + 1).trim();
  if (model === '') throw new UserError(`invalid spec "${trimmed}": no model name; use ${forms}`);
  return new OpenAiCompatibleClient({ ...options, model, ...(baseUrl !== undefined ? { baseUrl } : {}) });
}

/** An LLM to talk to (`openai:<model>[@<base-url>]` or `local:<model folder>`), e.g. for writing trait files. */
export function parseClientSpec(spec: string, options: Pick<JudgeSpecOptions, 'openai' | 'local'> = {}): ChatCompletionClient & { dispose?: () => Promise<void> } {
  const forms = 'openai:<model>[@<base-url>] or local:<model folder>';
  const { trimmed, scheme, target } = splitSpec(spec, forms, ['openai', 'local'], 'LLM');
  return scheme === 'openai' ? openAiClient(trimmed, target, forms, options.openai) : new LocalModelClient(target, options.local);
}

/** Parses a judge spec; the openai: key comes from the options or OPENAI_API_KEY and never enters the spec. */
export function parseJudgeSpec(spec: string, options: JudgeSpecOptions = {}): JudgeFactory {
  const { trimmed, scheme, target } = splitSpec(spec, SPEC_FORMS, ['openai', 'local', 'lexicon'], 'judge');
  const shared = { concurrency: options.concurrency, cacheFile: options.cacheFile };
  if (scheme === 'openai') {
    return sameJudgeForEveryMetric(new LogprobJudge(openAiClient(trimmed, target, SPEC_FORMS, options.openai), { ...shared, spec: trimmed }));
  }
  if (scheme === 'local') {
    const judge = new LocalJudge(target, { ...options.local, ...shared });
    return { ...sameJudgeForEveryMetric(judge), dispose: () => judge.dispose() };
  }
  const forMetric = lexiconJudgeFactory(target, trimmed);
  return { spec: trimmed, judge: forMetric, dispose: async () => undefined };
}

function sameJudgeForEveryMetric(judge: Judge): JudgeFactory {
  return { spec: judge.spec, judge: () => judge, dispose: async () => undefined };
}
