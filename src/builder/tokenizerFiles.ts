import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors.js';
import { readJsonFile } from '../io/files.js';

/** ChatML, the template Qwen models use; models built without a tokenizer of their own get it. */
export const CHATML_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

export const SYNTHETIC_SPECIAL_TOKENS = { pad: '<|endoftext|>', bos: '<|im_start|>', eos: '<|im_end|>' } as const;

/** GPT-2's reversible byte → printable character map used by byte-level BPE. */
function byteLevelAlphabet(): string[] {
  const printable: number[] = [];
  for (let b = 33; b <= 126; b++) printable.push(b);
  for (let b = 161; b <= 172; b++) printable.push(b);
  for (let b = 174; b <= 255; b++) printable.push(b);
  const chars: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) chars[b] = String.fromCharCode(printable.includes(b) ? b : 256 + extra++);
  return chars;
}

/** Vocabulary of the synthetic tokenizer: 3 special tokens + 256 bytes, then reserved tokens up to the config's size. */
export const SYNTHETIC_MIN_VOCAB = 3 + 256;

/**
 * A byte-level BPE tokenizer with no merges (every byte is a token) and ChatML special tokens, so a seeded model
 * with any vocabulary ≥ 259 tokenises text, applies a chat template and decodes through the real transformers.js path.
 */
export function syntheticTokenizerFiles(vocabSize: number): { tokenizer: object; tokenizerConfig: object; ids: { pad: number; bos: number; eos: number } } {
  if (vocabSize < SYNTHETIC_MIN_VOCAB) {
    throw new UserError(`vocab_size ${vocabSize} is too small for the built-in byte tokenizer (needs ≥ ${SYNTHETIC_MIN_VOCAB}); pass --tokenizer DIR`);
  }
  const vocab: Record<string, number> = {};
  const added: object[] = [];
  const special = (id: number, content: string) => {
    vocab[content] = id;
    added.push({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  };
  special(0, SYNTHETIC_SPECIAL_TOKENS.pad);
  special(1, SYNTHETIC_SPECIAL_TOKENS.bos);
  special(2, SYNTHETIC_SPECIAL_TOKENS.eos);
  byteLevelAlphabet().forEach((char, byte) => (vocab[char] = 3 + byte));
  for (let id = SYNTHETIC_MIN_VOCAB; id < vocabSize; id++) special(id, `<|reserved_${id - SYNTHETIC_MIN_VOCAB}|>`);
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: null,
    decoder: byteLevel,
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: [] },
  };
  const tokenizerConfig = {
    tokenizer_class: 'PreTrainedTokenizerFast',
    bos_token: null,
    eos_token: SYNTHETIC_SPECIAL_TOKENS.eos,
    pad_token: SYNTHETIC_SPECIAL_TOKENS.pad,
    model_max_length: 32768,
    clean_up_tokenization_spaces: false,
    chat_template: CHATML_TEMPLATE,
  };
  return { tokenizer, tokenizerConfig, ids: { pad: 0, bos: 1, eos: 2 } };
}

const TOKENIZER_FILE_NAMES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'vocab.json', 'merges.txt', 'chat_template.jinja', 'chat_template.json'];

/** Highest token id a tokenizer.json defines, plus one. */
export function tokenizerVocabularySize(tokenizerJsonFile: string): number {
  const json = readJsonFile<{ model?: { vocab?: Record<string, number> | [string, number][] }; added_tokens?: { id: number }[] }>(tokenizerJsonFile, 'tokenizer.json');
  let maxId = -1;
  const vocab = json.model?.vocab;
  if (Array.isArray(vocab)) maxId = vocab.length - 1;
  else if (vocab) for (const id of Object.values(vocab)) maxId = Math.max(maxId, id);
  for (const token of json.added_tokens ?? []) maxId = Math.max(maxId, token.id);
  return maxId + 1;
}

/** Copies a tokenizer's files into a model folder, refusing one whose ids do not fit the model's vocabulary. */
export function copyTokenizerFiles(sourceDir: string, targetDir: string, vocabSize: number): string[] {
  const tokenizerJson = path.join(sourceDir, 'tokenizer.json');
  if (!fs.existsSync(tokenizerJson)) throw new UserError(`no tokenizer.json in ${sourceDir}`);
  const needed = tokenizerVocabularySize(tokenizerJson);
  if (needed > vocabSize) {
    throw new UserError(`the tokenizer in ${sourceDir} has ${needed} tokens but the config's vocab_size is ${vocabSize}`);
  }
  const copied: string[] = [];
  for (const name of TOKENIZER_FILE_NAMES) {
    const source = path.join(sourceDir, name);
    if (fs.existsSync(source)) {
      fs.copyFileSync(source, path.join(targetDir, name));
      copied.push(name);
    }
  }
  return copied;
}
