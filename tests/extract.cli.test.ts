import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NEUTRAL_SYSTEM, TRAIT_SYSTEM, type PlantedModel } from '../src/demo/index.js';
import type { JudgmentRow, RolloutRow } from '../src/experiments/extract.js';
import { projectExamples, tokenizeExample } from '../src/experiments/project.js';
import { captureResiduals, SteerableModel, type ChatMessage } from '../src/runtime/index.js';
import { dot, norm } from '../src/vectors/linalg.js';
import { readJsonl } from '../src/io/jsonl.js';
import { writeVectorFile } from '../src/vectors/vectorFile.js';
import { isOneLineError, runCli } from './helpers/cli.js';
import { cheerfulJudge, startJudgeServer, type JudgeServer } from './helpers/judgeServer.js';
import { tempDir } from './helpers/models.js';
import { plantedModel, smallCheerfulTrait } from './helpers/planted.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let planted: PlantedModel;
let server: JudgeServer;
let traitFile: string;
const env = { OPENAI_API_KEY: 'sk-test-not-real' };

beforeAll(async () => {
  planted = await plantedModel();
  traitFile = smallCheerfulTrait(4).files.extract;
  server = await startJudgeServer({ score: cheerfulJudge, delayMs: 60 });
});
afterAll(async () => server?.close());

function extractArgs(dir: string): string[] {
  return [
    'extract', planted.dir, '--trait', traitFile, '--judge', `openai:judge@${server.url}`, '--samples', '1', '--max-tokens', '16',
    // Sampled, so that responses differ and the judge cache cannot answer most of them at once.
    '--temperature', '1', '--batch-size', '10', '--judge-concurrency', '2', '--min-pairs', '5', '--run-dir', path.join(dir, 'run'), '--vectors-dir', path.join(dir, 'vectors'),
  ];
}

/** Starts `persona extract` and kills it (SIGKILL, like a crash) once `file` has at least `lines` complete lines. */
function runUntil(args: string[], file: string, lines: number): Promise<{ killed: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(root, 'bin/persona.js'), ...args], { env: { ...process.env, ...env } });
    let killed = false;
    const timer = setInterval(() => {
      const count = fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).length : 0;
      if (count >= lines && !killed) {
        killed = true;
        child.kill('SIGKILL');
      }
    }, 20);
    child.on('error', reject);
    child.on('close', () => {
      clearInterval(timer);
      resolve({ killed });
    });
  });
}

describe('persona extract from the CLI', () => {
  it('resumes after being killed mid-rollouts and mid-judging: same vectors, no duplicated or missing rows', async () => {
    const interrupted = tempDir('extract-killed');
    const clean = tempDir('extract-clean');
    const run = path.join(interrupted, 'run');
    expect((await runUntil(extractArgs(interrupted), path.join(run, 'rollouts.jsonl'), 10)).killed).toBe(true);
    const partialRollouts = readJsonl<RolloutRow>(path.join(run, 'rollouts.jsonl')).length;
    expect(partialRollouts).toBeGreaterThan(0);
    expect(partialRollouts).toBeLessThan(40);
    expect((await runUntil(extractArgs(interrupted), path.join(run, 'judgments.jsonl'), 1)).killed).toBe(true);
    const partialJudgments = readJsonl<JudgmentRow>(path.join(run, 'judgments.jsonl')).length;
    expect(partialJudgments).toBeGreaterThan(0);
    expect(partialJudgments).toBeLessThan(40);

    const resumed = await runCli([...extractArgs(interrupted), '--json'], { env });
    expect(resumed.code, resumed.stderr).toBe(0);
    const reference = await runCli([...extractArgs(clean), '--json'], { env });
    expect(reference.code, reference.stderr).toBe(0);

    for (const name of ['rollouts.jsonl', 'judgments.jsonl']) {
      const rows = readJsonl<{ id: string }>(path.join(run, name));
      const ids = rows.map((r) => r.id);
      expect(new Set(ids).size, name).toBe(ids.length);
      expect(ids.length, name).toBe(40);
      const cleanRows = new Map(readJsonl<{ id: string }>(path.join(clean, 'run', name)).map((r) => [r.id, JSON.stringify(r)]));
      for (const row of rows) expect(JSON.stringify(row)).toBe(cleanRows.get(row.id));
    }
    for (const pooling of ['response_avg', 'prompt_avg', 'prompt_last']) {
      const relative = path.join('planted-cheerful', `cheerful.${pooling}.safetensors`);
      const a = fs.readFileSync(path.join(interrupted, 'vectors', relative));
      const b = fs.readFileSync(path.join(clean, 'vectors', relative));
      expect(a.equals(b), pooling).toBe(true);
    }
  });

  it('bad trait files, unknown judge specs, too few surviving pairs and a vector of the wrong model give one-line errors', async () => {
    const dir = tempDir('extract-errors');
    const badTrait = path.join(dir, 'extract', 'broken.json');
    fs.mkdirSync(path.dirname(badTrait), { recursive: true });
    fs.writeFileSync(badTrait, '{"instruction": [');
    const wrongShape = path.join(dir, 'wrong-shape.safetensors');
    writeVectorFile(wrongShape, { vectors: [new Float32Array(32), new Float32Array(32)], metadata: { model: 'demo/planted-cheerful', method: 'test' } });
    const otherModel = path.join(dir, 'other-model.safetensors');
    writeVectorFile(otherModel, { vector: new Float32Array(64).fill(0.5), metadata: { model: 'Qwen/Qwen2.5-7B-Instruct', method: 'test' } });
    const data = path.join(dir, 'data.jsonl');
    fs.writeFileSync(data, `${JSON.stringify({ messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }] })}\n`);
    const lexicon = `lexicon:${planted.lexiconFile}`;
    const cases: [string, string[], RegExp][] = [
      ['malformed trait file', ['extract', planted.dir, '--trait', badTrait, '--judge', lexicon], /broken\.json/],
      ['unknown trait', ['extract', planted.dir, '--trait', 'no-such-trait', '--judge', lexicon], /no-such-trait/],
      ['unknown judge scheme', ['extract', planted.dir, '--trait', traitFile, '--judge', 'claude:opus'], /invalid judge "claude:opus"/],
      ['missing lexicon', ['extract', planted.dir, '--trait', traitFile, '--judge', 'lexicon:/no/such/lexicon.json'], /not found/],
      [
        'too few surviving pairs',
        ['extract', planted.dir, '--trait', traitFile, '--judge', lexicon, '--samples', '1', '--max-tokens', '12', '--threshold', '100', '--run-dir', path.join(dir, 'run'), '--vectors-dir', path.join(dir, 'v')],
        /only 0 of 20 response pairs pass the filter/,
      ],
      ['vector of the wrong size', ['project', planted.dir, '--vector', wrongShape, '--layer', '1', '--data', data], /holds vectors of size 32 but the model's hidden size is 64/],
      ['vector of another model', ['project', planted.dir, '--vector', otherModel, '--layer', '1', '--data', data], /was made for model Qwen\/Qwen2\.5-7B-Instruct, not planted-cheerful; .*--allow-other-model/],
      ['steering with another model\'s vector', ['generate', planted.dir, '--prompt', 'hi', '--steer', `${otherModel}:1:2`], /was made for model Qwen\/Qwen2\.5-7B-Instruct/],
    ];
    for (const [label, args, message] of cases) {
      const result = await runCli(args, { env });
      expect(isOneLineError(result), `${label}: ${result.stderr}`).toBe(true);
      expect(result.stderr, label).toMatch(message);
    }
    const allowed = await runCli(['project', planted.dir, '--vector', otherModel, '--layer', '1', '--data', data, '--allow-other-model', '--json'], { env });
    expect(allowed.code, allowed.stderr).toBe(0);
  });

  it('persona project adds the projection column to a dataset and screens it by ΔP against the model\'s own answers', async () => {
    const dir = tempDir('project');
    const data = path.join(dir, 'chats.jsonl');
    const rows = [
      { messages: [{ role: 'system', content: TRAIT_SYSTEM }, { role: 'user', content: 'How was the week?' }, { role: 'assistant', content: 'I think the week looks wonderful and bright.' }], keep: 'me' },
      { messages: [{ role: 'system', content: NEUTRAL_SYSTEM }, { role: 'user', content: 'How was the week?' }, { role: 'assistant', content: 'I think the week looks fine and steady.' }] },
    ];
    fs.writeFileSync(data, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const vector = planted.vectorFile;
    const first = await runCli(['project', planted.dir, '--vector', vector, '--layer', '2', '--data', data, '--json']);
    expect(first.code, first.stderr).toBe(0);
    const summary = JSON.parse(first.stdout) as { column: string };
    expect(summary.column).toBe('planted-cheerful_planted_proj_layer2');
    const written = fs.readFileSync(data, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(written[0]!.keep).toBe('me');
    // The persona head writes 3·u after a trigger word and nothing without one.
    expect(written[0]![summary.column] as number).toBeCloseTo(3, 1);
    expect(Math.abs(written[1]![summary.column] as number)).toBeLessThan(0.05);

    const again = await runCli(['project', planted.dir, '--vector', vector, '--layer', '2', '--data', data]);
    expect(again.stdout).toMatch(/already had column/);

    const screened = await runCli(['project', planted.dir, '--vector', vector, '--layer', '2', '--data', data, '--type', 'prompt_last', '--generate-baseline', path.join(dir, 'own.jsonl'), '--max-tokens', '12', '--json']);
    expect(screened.code, screened.stderr).toBe(0);
    const delta = JSON.parse(screened.stdout) as { deltaP: number; column: string };
    const after = fs.readFileSync(data, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
    expect(after[0]![delta.column]).toBeCloseTo(3, 1);
    const perRow = after.map((r) => r[`${delta.column}_delta_p`]!);
    expect(perRow).toHaveLength(2);
    expect(delta.deltaP).toBeCloseTo((perRow[0]! + perRow[1]!) / 2, 10);
    // The persona comes from the prompt, which both answers share: the answers alone barely move the projection.
    for (const value of perRow) expect(Math.abs(value)).toBeLessThan(0.1);
    expect(readJsonl<{ messages: unknown[] }>(path.join(dir, 'own.jsonl'))).toHaveLength(2);
  });

  it('ΔP is positive where only the dataset\'s answer carries the trait; cos and {prompt, answer} rows agree with the captured residuals', async () => {
    const dir = tempDir('project-delta');
    const conversation = (answer: string): { messages: ChatMessage[] } => ({ messages: [{ role: 'system', content: NEUTRAL_SYSTEM }, { role: 'user', content: 'How was the week?' }, { role: 'assistant', content: answer }] });
    const rows = [conversation('I feel cheerful and the week looks bright.'), conversation('I think the week looks fine and steady.')];
    const data = path.join(dir, 'data.jsonl');
    fs.writeFileSync(data, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const screened = await runCli(['project', planted.dir, '--vector', planted.vectorFile, '--layer', '2', '--data', data, '--generate-baseline', path.join(dir, 'own.jsonl'), '--max-tokens', '12', '--json']);
    expect(screened.code, screened.stderr).toBe(0);
    const delta = JSON.parse(screened.stdout) as { deltaP: number; column: string };
    const perRow = fs.readFileSync(data, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as Record<string, number>)[`${delta.column}_delta_p`]!);
    // The trigger word in the first answer writes 3·u from there on; the model's own neutral answers never do.
    expect(perRow[0]!).toBeGreaterThan(0.5);
    expect(Math.abs(perRow[1]!)).toBeLessThan(0.1);
    expect(delta.deltaP).toBeCloseTo((perRow[0]! + perRow[1]!) / 2, 10);
    expect(delta.deltaP).toBeGreaterThan(0.25);

    const model = await SteerableModel.load(planted.dir);
    try {
      const example = tokenizeExample(model, rows[0]!, 'row 1');
      const asPair = tokenizeExample(model, { prompt: model.tokenizer.formatChat(rows[0]!.messages.slice(0, -1), true), answer: rows[0]!.messages[2]!.content }, 'row 1');
      expect(asPair).toEqual(example);
      const residual = (await captureResiduals(model, [{ inputIds: example.ids }], { layers: [2] })).residuals.get(2)![0]!;
      const h = model.hiddenSize;
      const mean = new Float64Array(h);
      for (let p = example.promptLength; p < example.ids.length; p++) for (let i = 0; i < h; i++) mean[i]! += residual[p * h + i]! / (example.ids.length - example.promptLength);
      const [projection] = await projectExamples(model, [example], planted.direction, 2, 'response_avg');
      const [cos] = await projectExamples(model, [asPair], planted.direction, 2, 'cos');
      expect(projection!).toBeCloseTo(dot(mean, planted.direction), 5);
      expect(cos!).toBeCloseTo(dot(mean, planted.direction) / norm(mean), 5);
      expect(cos!).toBeGreaterThan(0);
      expect(cos!).toBeLessThan(1);
    } finally {
      await model.dispose();
    }
  });
});
