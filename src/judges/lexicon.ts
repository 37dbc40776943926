import { UserError } from '../errors.js';
import { readJsonFile } from '../io/files.js';
import type { Judge, Judgment, JudgeRequest } from './types.js';

/** What a judge is asked to rate: how much the answer shows the trait, or how coherent it is. */
export type JudgeMetric = 'trait' | 'coherence';

export const judgeMetrics: readonly JudgeMetric[] = ['trait', 'coherence'];

/** Word lists for offline judging, lower-cased. */
export interface Lexicon {
  trait: ReadonlySet<string>;
  opposite: ReadonlySet<string>;
  /**
   * Words that stand where a trait word could (the plain alternatives). When given, the trait score is the share of
   * trait words among trait, opposite and neutral hits, so it grows with how often the trait shows, not only whether.
   */
  neutral?: ReadonlySet<string>;
  /** Ordinary words that count as coherent besides the trait and opposite words. */
  vocabulary?: ReadonlySet<string>;
}

const WORD = /\p{L}+/gu;
const SINGLE_WORD = /^\p{L}+$/u;
const BOUNDED_WORD = /^\p{L}{1,20}$/u;
const EDGE_PUNCTUATION = /^[\p{P}\p{S}]+|[\p{P}\p{S}]+$/gu;

function normalizeWord(word: string): string {
  return word.normalize('NFC').toLowerCase();
}

function wordList(json: Record<string, unknown>, name: string, file: string, required: boolean): Set<string> | undefined {
  const value = json[name];
  if (value === undefined && !required) return undefined;
  if (!Array.isArray(value)) throw new UserError(`lexicon ${file}: "${name}" must be a list of words`);
  const words = new Set<string>();
  for (const entry of value) {
    if (typeof entry !== 'string') throw new UserError(`lexicon ${file}: "${name}" contains ${JSON.stringify(entry)}, which is not a string`);
    const word = normalizeWord(entry.trim());
    if (!SINGLE_WORD.test(word)) throw new UserError(`lexicon ${file}: "${name}" entry "${entry}" is not a single word of letters`);
    words.add(word);
  }
  return words;
}

/** Reads `{ "trait": [...], "opposite": [...], "neutral"?: [...], "vocabulary"?: [...] }`. */
export function loadLexicon(file: string): Lexicon {
  const json = readJsonFile<unknown>(file, 'lexicon file');
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new UserError(`lexicon ${file} must be a JSON object with "trait" and "opposite" word lists`);
  const record = json as Record<string, unknown>;
  const trait = wordList(record, 'trait', file, true)!;
  const opposite = wordList(record, 'opposite', file, true)!;
  const neutral = wordList(record, 'neutral', file, false);
  const vocabulary = wordList(record, 'vocabulary', file, false);
  if (trait.size === 0) throw new UserError(`lexicon ${file}: "trait" is empty`);
  const shared = [...trait].find((word) => opposite.has(word) || neutral?.has(word)) ?? [...opposite].find((word) => neutral?.has(word));
  if (shared !== undefined) throw new UserError(`lexicon ${file}: "${shared}" is in more than one of "trait", "opposite" and "neutral"`);
  return { trait, opposite, ...(neutral ? { neutral } : {}), ...(vocabulary ? { vocabulary } : {}) };
}

export interface LexiconCounts {
  words: number;
  trait: number;
  opposite: number;
  neutral: number;
}

/** How many of the answer's words there are, and how many are trait or opposite words. */
export function countLexiconWords(lexicon: Lexicon, answer: string): LexiconCounts {
  const counts = { words: 0, trait: 0, opposite: 0, neutral: 0 };
  for (const match of answer.normalize('NFC').matchAll(WORD)) {
    const word = normalizeWord(match[0]);
    counts.words++;
    if (lexicon.trait.has(word)) counts.trait++;
    else if (lexicon.opposite.has(word)) counts.opposite++;
    else if (lexicon.neutral?.has(word)) counts.neutral++;
  }
  return counts;
}

/** 100·t/(t+o+n) over trait, opposite and neutral-word hits (n = 0 without a neutral list); 0 when none occurs. */
export function lexiconTraitScore(lexicon: Lexicon, answer: string): number {
  const { trait, opposite, neutral } = countLexiconWords(lexicon, answer);
  const hits = trait + opposite + neutral;
  return hits > 0 ? (100 * trait) / hits : 0;
}

/**
 * With a vocabulary: the percentage of the answer's words that the lexicon knows. Without one: the percentage of
 * whitespace-separated tokens that are words of 1–20 letters once punctuation at their edges ("Hello," "end.") is
 * set aside. An empty answer scores 0.
 */
export function lexiconCoherenceScore(lexicon: Lexicon, answer: string): number {
  if (lexicon.vocabulary) {
    const { trait, opposite, neutral, vocabulary } = lexicon;
    const words = Array.from(answer.normalize('NFC').matchAll(WORD), (match) => normalizeWord(match[0]));
    const known = words.filter((word) => trait.has(word) || opposite.has(word) || neutral?.has(word) || vocabulary.has(word)).length;
    return words.length > 0 ? (100 * known) / words.length : 0;
  }
  const tokens = answer.normalize('NFC').split(/\s+/).filter((token) => token !== '');
  const wordLike = tokens.filter((token) => BOUNDED_WORD.test(token.replace(EDGE_PUNCTUATION, ''))).length;
  return tokens.length > 0 ? (100 * wordLike) / tokens.length : 0;
}

/** Deterministic word-list scoring for one metric, for runs without a judge model. Ignores the prompt template. */
export class LexiconJudge implements Judge {
  constructor(
    readonly spec: string,
    readonly metric: JudgeMetric,
    private readonly lexicon: Lexicon,
  ) {}

  async score(requests: readonly JudgeRequest[], onProgress?: (done: number, total: number) => void): Promise<Judgment[]> {
    const scoreOf = this.metric === 'trait' ? lexiconTraitScore : lexiconCoherenceScore;
    return requests.map((request, index) => {
      const judgment = { score: scoreOf(this.lexicon, request.answer) };
      onProgress?.(index + 1, requests.length);
      return judgment;
    });
  }
}

/** Reads the lexicon once and gives the judge for either metric. */
export function lexiconJudgeFactory(file: string, spec = `lexicon:${file}`): (metric: JudgeMetric) => LexiconJudge {
  const lexicon = loadLexicon(file);
  return (metric) => new LexiconJudge(spec, metric, lexicon);
}
