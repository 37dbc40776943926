import { UserError } from '../errors.js';
import { lexiconJudgeFactory, type JudgeMetric } from './lexicon.js';
import { LocalJudge, type LocalModelClientOptions } from './localClient.js';
import { LogprobJudge } from './logprobJudge.js';
import { OpenAiCompatibleClient, type OpenAiClientOptions } from './openaiClient.js';
import type { Judge } from './types.js';

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

/** Parses a judge spec; the openai: key comes from the options or OPENAI_API_KEY and never enters the spec. */
export function parseJudgeSpec(spec: string, options: JudgeSpecOptions = {}): JudgeFactory {
  const trimmed = spec.trim();
  const colon = trimmed.indexOf(':');
  const scheme = colon < 0 ? '' : trimmed.slice(0, colon).toLowerCase();
  const target = colon < 0 ? '' : trimmed.slice(colon + 1).trim();
  if (target === '' || !['openai', 'local', 'lexicon'].includes(scheme)) {
    throw new UserError(`invalid judge "${trimmed}": use ${SPEC_FORMS}`);
  }
  const shared = { concurrency: options.concurrency, cacheFile: options.cacheFile };
  if (scheme === 'openai') {
    const at = target.indexOf('@');
    const model = (at < 0 ? target : target.slice(0, at)).trim();
    const baseUrl = at < 0 ? undefined : target.slice(at + 1).trim();
    if (model === '') throw new UserError(`invalid judge "${trimmed}": no model name; use ${SPEC_FORMS}`);
    const client = new OpenAiCompatibleClient({ ...options.openai, model, ...(baseUrl !== undefined ? { baseUrl } : {}) });
    return sameJudgeForEveryMetric(new LogprobJudge(client, { ...shared, spec: trimmed }));
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
