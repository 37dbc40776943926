import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CHATML_TEMPLATE } from '../src/builder/tokenizerFiles.js';
import { ChatTokenizer, generate, promptMessages } from '../src/runtime/index.js';
import { tempDir, tinyModel } from './helpers/models.js';
import { openModel } from './helpers/open.js';

describe('the generation loop', () => {
  it('stops a row at a stop string (text cut before it), at eos, or at the token limit; streams every token', async () => {
    const model = await openModel(tinyModel('llama', 'optimum', 'fp32').dir, {});
    const rows = [{ inputIds: [11, 42, 7] }, { inputIds: [3, 180, 64, 9] }];
    const free = await generate(model, rows, { maxNewTokens: 12, eosTokenIds: [] });
    // A stop string taken from the middle of row 0's own text: generation must stop right when it appears.
    const text = free.texts[0]!;
    const stop = text.slice(3, 5);
    expect(stop.length).toBe(2);
    const events: { row: number; step: number; tokenId: number }[] = [];
    const stopped = await generate(model, rows, { maxNewTokens: 12, eosTokenIds: [], stopStrings: [stop], onToken: (e) => events.push(e) });
    expect(stopped.finishReasons[0]).toBe('stop');
    expect(stopped.texts[0]).toBe(text.slice(0, text.indexOf(stop)));
    expect(model.tokenizer.decode(stopped.sequences[0]!)).toContain(stop);
    expect(stopped.sequences[0]!.length).toBeLessThan(12);
    expect(stopped.sequences[0]).toEqual(free.sequences[0]!.slice(0, stopped.sequences[0]!.length));
    // Streaming: one event per generated token, in order, per row.
    for (const row of [0, 1]) expect(events.filter((e) => e.row === row).map((e) => e.tokenId)).toEqual(stopped.sequences[row]);
    // eos: the row ends with the eos id included; another row runs on to the limit.
    const eosId = free.sequences[1]![4]!;
    const ended = await generate(model, rows, { maxNewTokens: 12, eosTokenIds: [eosId] });
    expect(ended.finishReasons[1]).toBe('eos');
    expect(ended.sequences[1]!.at(-1)).toBe(eosId);
    expect(ended.sequences[1]!.length).toBe(free.sequences[1]!.indexOf(eosId) + 1);
    expect(free.finishReasons).toEqual(['length', 'length']);
  });

  it('seeded sampling is reproducible and each row has its own stream, whatever the batch', async () => {
    const model = await openModel(tinyModel('qwen2', 'optimum', 'fp32').dir);
    const row = { inputIds: [5, 6, 7], seed: 42 };
    const settings = { maxNewTokens: 10, temperature: 1.2, topP: 0.95, topK: 50, eosTokenIds: [] };
    const alone = await generate(model, [row], settings);
    const again = await generate(model, [row], settings);
    const inBatch = await generate(model, [{ inputIds: [9, 9, 9, 9, 9], seed: 7 }, row], settings);
    expect(again.sequences[0]).toEqual(alone.sequences[0]);
    expect(inBatch.sequences[1]).toEqual(alone.sequences[0]);
    const otherSeed = await generate(model, [{ ...row, seed: 43 }], settings);
    expect(otherSeed.sequences[0]).not.toEqual(alone.sequences[0]);
  });
});

describe('chat templates', () => {
  it('a template without a system role gets the system prompt prepended to the first user turn', async () => {
    const dir = path.join(tempDir('template'), 'tok');
    fs.cpSync(tinyModel('llama', 'optimum', 'fp32').dir, dir, { recursive: true });
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    // Gemma-style: refuses system messages.
    config.chat_template = "{% for message in messages %}{% if message['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config));
    const tokenizer = await ChatTokenizer.load(dir);
    expect(tokenizer.supportsSystemRole()).toBe(false);
    expect(tokenizer.formatChat(promptMessages('How are you?', 'Be brief.'))).toBe('<|im_start|>user\nBe brief.\n\nHow are you?<|im_end|>\n<|im_start|>assistant\n');
    const chatml = await ChatTokenizer.load(tinyModel('llama', 'optimum', 'fp32').dir);
    expect(chatml.supportsSystemRole()).toBe(true);
    expect(chatml.formatChat(promptMessages('Hi', 'Be brief.'), false)).toBe('<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n');
    expect(CHATML_TEMPLATE).toContain('add_generation_prompt');
  });
});
