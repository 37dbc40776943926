import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { UserError } from '../src/errors.js';
import { fillTemplate } from '../src/judges/index.js';
import {
  defaultTraitsDir, generateTraitFiles, listTraits, loadTrait, systemPromptFor, type TraitFileContent,
} from '../src/experiments/traits.js';
import type { ChatCompletionClient, CompletionRequest, CompletionResult } from '../src/judges/types.js';

const shippedTraits = ['apathetic', 'evil', 'hallucinating', 'humorous', 'impolite', 'optimistic', 'sycophantic'];

const scratchDirs: string[] = [];
function scratchDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'persona-traits-'));
  scratchDirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of scratchDirs) fs.rmSync(dir, { recursive: true, force: true });
});

function writeJson(file: string, value: unknown): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, typeof value === 'string' ? value : JSON.stringify(value, null, 2));
}

const pairs = Array.from({ length: 5 }, (_, k) => ({ pos: `Show the trait, way ${k}.`, neg: `Avoid the trait, way ${k}.` }));
const template = 'Does this show x?\n[QUESTION START]\n{question}\n[QUESTION END]\n[ANSWER START]\n{answer}\n[ANSWER END]\nREFUSAL or 0-100, number only.';
const questions = (prefix: string, count: number) => Array.from({ length: count }, (_, i) => `${prefix} question ${i}?`);
const validExtract = (): TraitFileContent => ({ instruction: pairs.map((p) => ({ ...p })), questions: questions('Extract', 20), eval_prompt: template });
const validEval = (): TraitFileContent => ({ ...validExtract(), questions: questions('Eval', 20) });

/** Throws the UserError `fn` raises, so a test can look at its message. */
function userErrorFrom(fn: () => unknown): UserError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(UserError);
    return error as UserError;
  }
  throw new Error('expected a UserError, nothing was thrown');
}

async function asyncUserErrorFrom(promise: Promise<unknown>): Promise<UserError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(UserError);
    return error as UserError;
  }
  throw new Error('expected a UserError, nothing was thrown');
}

describe('shipped traits', () => {
  it('include the seven Persona Vectors traits', () => {
    expect(listTraits()).toEqual(expect.arrayContaining(shippedTraits));
  });

  it.each(listTraits())('%s loads and follows the upstream shape', (name) => {
    const trait = loadTrait(name);
    expect(trait.name).toBe(name);
    expect(trait.files).toEqual({ extract: path.join(defaultTraitsDir, 'extract', `${name}.json`), eval: path.join(defaultTraitsDir, 'eval', `${name}.json`) });
    expect(trait.instructions).toHaveLength(5);
    expect(trait.extractQuestions).toHaveLength(20);
    expect(trait.evalQuestions).toHaveLength(20);
    const all = [...trait.extractQuestions, ...trait.evalQuestions].map((q) => q.trim().toLowerCase());
    expect(new Set(all).size).toBe(40);

    const extract = JSON.parse(fs.readFileSync(trait.files.extract, 'utf8')) as TraitFileContent;
    const evalContent = JSON.parse(fs.readFileSync(trait.files.eval, 'utf8')) as TraitFileContent;
    expect(Object.keys(extract).sort()).toEqual(['eval_prompt', 'instruction', 'questions']);
    expect(Object.keys(evalContent).sort()).toEqual(['eval_prompt', 'instruction', 'questions']);
    expect(evalContent.instruction).toEqual(extract.instruction);
    expect(evalContent.eval_prompt).toBe(extract.eval_prompt);
    for (const pair of trait.instructions) expect(pair.pos).not.toBe(pair.neg);

    const prompt = trait.evalPrompt;
    expect(prompt.split('{question}')).toHaveLength(2);
    expect(prompt.split('{answer}')).toHaveLength(2);
    expect(prompt.replace('{question}', '').replace('{answer}', '')).not.toMatch(/[{}]/);
    expect(prompt).toContain('REFUSAL');
    expect(prompt).toContain(name);
    expect(prompt.indexOf('[QUESTION START]')).toBeLessThan(prompt.indexOf('{question}'));
    expect(prompt.indexOf('{question}')).toBeLessThan(prompt.indexOf('[QUESTION END]'));
    expect(prompt.indexOf('[ANSWER START]')).toBeLessThan(prompt.indexOf('{answer}'));
    expect(prompt.indexOf('{answer}')).toBeLessThan(prompt.indexOf('[ANSWER END]'));
  });

  it('loads a shipped trait from the path of its extract file', () => {
    const byPath = loadTrait(path.join(defaultTraitsDir, 'extract', 'evil.json'));
    expect(byPath).toEqual(loadTrait('evil'));
  });
});

describe('loading', () => {
  it('loads an upstream-layout folder unchanged', () => {
    const root = scratchDir();
    const extractFile = path.join(root, 'data_generation', 'trait_data_extract', 'x.json');
    const evalFile = path.join(root, 'data_generation', 'trait_data_eval', 'x.json');
    writeJson(extractFile, validExtract());
    writeJson(evalFile, validEval());
    const trait = loadTrait(extractFile);
    expect(trait).toEqual({
      name: 'x', instructions: pairs, extractQuestions: questions('Extract', 20), evalQuestions: questions('Eval', 20),
      evalPrompt: template, files: { extract: extractFile, eval: evalFile },
    });
    expect(loadTrait({ extract: extractFile, eval: evalFile })).toEqual(trait);
  });

  it('looks bare names up in the given traits folder', () => {
    const root = scratchDir();
    writeJson(path.join(root, 'extract', 'calm.json'), validExtract());
    writeJson(path.join(root, 'eval', 'calm.json'), validEval());
    writeJson(path.join(root, 'extract', 'half.json'), validExtract());
    expect(listTraits(root)).toEqual(['calm']);
    expect(loadTrait('calm', { traitsDir: root }).extractQuestions).toHaveLength(20);
    const error = userErrorFrom(() => loadTrait('half', { traitsDir: root }));
    expect(error.message).toContain(path.join(root, 'eval', 'half.json'));
    expect(error.message).toContain('calm');
  });

  it('accepts fewer than 20 questions in hand-written files', () => {
    const root = scratchDir();
    writeJson(path.join(root, 'extract', 'few.json'), { ...validExtract(), questions: ['Only one?'] });
    writeJson(path.join(root, 'eval', 'few.json'), { ...validEval(), questions: ['Another one?'] });
    expect(loadTrait('few', { traitsDir: root }).evalQuestions).toEqual(['Another one?']);
  });

  it('rejects an extract path whose folder has no eval sibling name', () => {
    const root = scratchDir();
    const file = path.join(root, 'misc', 'x.json');
    writeJson(file, validExtract());
    expect(userErrorFrom(() => loadTrait(file)).message).toContain(file);
  });

  const missing = Symbol('missing');
  type Case = [label: string, target: 'extract' | 'eval', content: unknown, expected: string];
  const withExtract = (change: Record<string, unknown>) => ({ ...validExtract(), ...change });
  const cases: Case[] = [
    ['file missing', 'eval', missing, 'not found'],
    ['bad JSON', 'extract', '{"instruction": [', 'not valid JSON'],
    ['not an object', 'extract', [1, 2], 'expected a JSON object'],
    ['instruction missing', 'extract', withExtract({ instruction: undefined }), '"instruction" must be an array of exactly 5'],
    ['four instruction pairs', 'extract', withExtract({ instruction: pairs.slice(0, 4) }), 'got 4 entries'],
    ['instruction not an object', 'extract', withExtract({ instruction: [...pairs.slice(0, 4), 'pos'] }), 'instruction[4] must be an object'],
    ['empty pos', 'extract', withExtract({ instruction: [{ pos: ' ', neg: 'n' }, ...pairs.slice(1)] }), 'instruction[0].pos must be a non-empty string'],
    ['neg missing', 'eval', { ...validEval(), instruction: [...pairs.slice(0, 2), { pos: 'p' }, ...pairs.slice(3)] }, 'instruction[2].neg must be a non-empty string'],
    ['questions empty', 'extract', withExtract({ questions: [] }), '"questions" must be a non-empty array'],
    ['questions not an array', 'eval', { ...validEval(), questions: 'Why?' }, '"questions" must be a non-empty array'],
    ['question not a string', 'extract', withExtract({ questions: ['Why?', 7] }), 'questions[1] must be a non-empty string'],
    ['eval_prompt missing', 'extract', withExtract({ eval_prompt: undefined }), '"eval_prompt" must be a non-empty string'],
    ['no {question}', 'extract', withExtract({ eval_prompt: 'Rate {answer}' }), 'lacks the placeholder {question}'],
    ['no {answer}', 'eval', { ...validEval(), eval_prompt: 'Rate {question}' }, 'lacks the placeholder {answer}'],
    ['instructions differ', 'eval', { ...validEval(), instruction: [...pairs.slice(0, 3), { pos: 'Other.', neg: pairs[3]!.neg }, pairs[4]] }, 'instruction[3].pos differs from'],
    ['eval_prompt differs', 'eval', { ...validEval(), eval_prompt: `${template} ` }, '"eval_prompt" differs from'],
    ['questions overlap', 'eval', { ...validEval(), questions: ['Eval question 0?', ' extract  QUESTION 5? '] }, '1 question(s) also appear in'],
  ];

  it.each(cases)('reports %s in one line naming the file', (_label, target, content, expected) => {
    const root = scratchDir();
    const files = { extract: path.join(root, 'extract', 't.json'), eval: path.join(root, 'eval', 't.json') };
    writeJson(files.extract, validExtract());
    writeJson(files.eval, validEval());
    if (content === missing) fs.rmSync(files[target]);
    else writeJson(files[target], content);
    const error = userErrorFrom(() => loadTrait(files.extract));
    expect(error.message).toContain(files[target]);
    expect(error.message).toContain(expected);
    expect(error.message).not.toContain('\n');
  });

  it('rejects a name that is neither a trait name nor a path', () => {
    expect(userErrorFrom(() => loadTrait('Evil Trait')).message).toContain('"Evil Trait"');
  });
});

describe('prompts', () => {
  it('fillTemplate replaces only the two placeholders', () => {
    const filled = fillTemplate('{"q": "{question}", "a": "{answer}", "x": {other}} {question}', 'Q?', 'says {question}');
    expect(filled).toBe('{"q": "Q?", "a": "says {question}", "x": {other}} Q?');
  });

  it('systemPromptFor picks a/an and the default names', () => {
    const pair = { pos: 'Be evil.', neg: 'Be good.' };
    expect(systemPromptFor('evil', pair, 'pos')).toBe('You are an evil assistant. Be evil.');
    expect(systemPromptFor('evil', pair, 'neg')).toBe('You are a helpful assistant. Be good.');
    expect(systemPromptFor('evil', pair, 'neg', 'good')).toBe('You are a good assistant. Be good.');
    expect(systemPromptFor('sycophantic', 'Flatter.', 'pos')).toBe('You are a sycophantic assistant. Flatter.');
    expect(systemPromptFor('humorous', 'Stay serious.', 'neg', 'earnest')).toBe('You are an earnest assistant. Stay serious.');
    expect(systemPromptFor('impolite', 'Be rude.', 'pos', 'Obnoxious')).toBe('You are an Obnoxious assistant. Be rude.');
  });
});

describe('generateTraitFiles', () => {
  class CannedClient implements ChatCompletionClient {
    readonly label = 'fake:canned';
    readonly requests: CompletionRequest[] = [];
    constructor(private readonly reply: string) {}
    async complete(request: CompletionRequest): Promise<CompletionResult> {
      this.requests.push(request);
      return { text: this.reply };
    }
  }

  const generated = (questionList: string[]) => ({ instruction: pairs, questions: questionList, eval_prompt: template });
  // 41 questions with one duplicate (differing only in case and spacing): exactly 40 distinct.
  const fortyDistinct = [...questions('Generated', 40).slice(0, 10), '  generated QUESTION 3? ', ...questions('Generated', 40).slice(10)];

  it('writes both files from a fenced reply and they load', async () => {
    const traitsDir = scratchDir();
    const client = new CannedClient(`Here is the trait:\n\`\`\`json\n${JSON.stringify(generated(fortyDistinct), null, 2)}\n\`\`\`\nEnjoy.`);
    const trait = await generateTraitFiles({ name: 'curious', description: 'Asks follow-up questions out of interest.', client, traitsDir });
    expect(client.requests).toHaveLength(1);
    expect(client.requests[0]!.messages[0]!.content).toContain('Asks follow-up questions out of interest.');
    expect(trait.files).toEqual({ extract: path.join(traitsDir, 'extract', 'curious.json'), eval: path.join(traitsDir, 'eval', 'curious.json') });
    expect(trait.extractQuestions).toEqual(questions('Generated', 40).slice(0, 20));
    expect(trait.evalQuestions).toEqual(questions('Generated', 40).slice(20));
    expect(loadTrait('curious', { traitsDir })).toEqual(trait);
    expect(fs.readdirSync(path.join(traitsDir, 'extract'))).toEqual(['curious.json']);
  });

  it('takes the outermost JSON object from an unfenced reply', async () => {
    const traitsDir = scratchDir();
    const client = new CannedClient(`Sure! ${JSON.stringify(generated(questions('Plain', 40)))} Hope that helps.`);
    const trait = await generateTraitFiles({ name: 'plain', description: 'Plain.', client, traitsDir });
    expect(trait.evalQuestions[0]).toBe('Plain question 20?');
  });

  it('refuses a reply with fewer than 40 distinct questions and writes nothing', async () => {
    const traitsDir = scratchDir();
    const client = new CannedClient(JSON.stringify(generated([...questions('Few', 39), 'Few question 0?'])));
    const error = await asyncUserErrorFrom(generateTraitFiles({ name: 'few', description: 'Few.', client, traitsDir }));
    expect(error.message).toContain('39 distinct questions; 40 are needed');
    expect(fs.existsSync(path.join(traitsDir, 'extract'))).toBe(false);
  });

  it('refuses to overwrite existing files unless asked', async () => {
    const traitsDir = scratchDir();
    writeJson(path.join(traitsDir, 'eval', 'taken.json'), validEval());
    const client = new CannedClient(JSON.stringify(generated(questions('New', 40))));
    const error = await asyncUserErrorFrom(generateTraitFiles({ name: 'taken', description: 'Taken.', client, traitsDir }));
    expect(error.message).toContain(path.join(traitsDir, 'eval', 'taken.json'));
    expect(client.requests).toHaveLength(0);
    const trait = await generateTraitFiles({ name: 'taken', description: 'Taken.', client, traitsDir, overwrite: true });
    expect(trait.evalQuestions[0]).toBe('New question 20?');
  });

  it('rejects bad names and unparsable or invalid replies', async () => {
    const traitsDir = scratchDir();
    const valid = new CannedClient(JSON.stringify(generated(questions('Q', 40))));
    expect((await asyncUserErrorFrom(generateTraitFiles({ name: 'Bad Name', description: 'x', client: valid, traitsDir }))).message).toContain('invalid trait name');
    const prose = new CannedClient('I cannot help with that.');
    expect((await asyncUserErrorFrom(generateTraitFiles({ name: 'p', description: 'x', client: prose, traitsDir }))).message).toContain('fake:canned reply for trait p contains no JSON object');
    const noAnswer = new CannedClient(JSON.stringify({ ...generated(questions('Q', 40)), eval_prompt: 'Rate {question}' }));
    expect((await asyncUserErrorFrom(generateTraitFiles({ name: 'p', description: 'x', client: noAnswer, traitsDir }))).message).toContain('lacks the placeholder {answer}');
    expect(listTraits(traitsDir)).toEqual([]);
  });
});
