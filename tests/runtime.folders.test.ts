import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { locateModelDir, resolveModelFolder } from '../src/runtime/modelFolder.js';
import { FIXTURE_DIR, hasFixture, tempDir, tinyModel } from './helpers/models.js';
import { userErrorOf } from './helpers/errors.js';

function copyFolder(from: string, to: string): string {
  fs.cpSync(from, to, { recursive: true });
  return to;
}

function editJson(file: string, edit: (value: Record<string, unknown>) => void): void {
  const value = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  edit(value);
  fs.writeFileSync(file, JSON.stringify(value, null, 2));
}

let root: string;
/** fp32 build with the fp16 graph of the same config copied in beside it. */
let twoGraphs: string;
let fp32File: string;
let fp16File: string;

beforeAll(() => {
  root = tempDir('folders');
  const fp32 = tinyModel('qwen2', 'optimum', 'fp32');
  const fp16 = tinyModel('qwen2', 'optimum', 'fp16');
  twoGraphs = copyFolder(fp32.dir, path.join(root, 'two-graphs'));
  fs.copyFileSync(fp16.onnxFile, path.join(twoGraphs, 'onnx', 'model_fp16.onnx'));
  fp32File = path.join(twoGraphs, 'onnx', 'model.onnx');
  fp16File = path.join(twoGraphs, 'onnx', 'model_fp16.onnx');
});

describe('resolveModelFolder on built models', () => {
  it('reads a built model: shape, special tokens, graph file, id', () => {
    const built = tinyModel('llama', 'optimum', 'fp32');
    const folder = resolveModelFolder(built.dir);
    expect(folder.dir).toBe(path.resolve(built.dir));
    expect(folder.format).toBe('huggingface');
    expect(folder.onnxFile).toBe(path.join(path.resolve(built.dir), 'onnx', 'model.onnx'));
    expect(folder.dtype).toBe('fp32');
    // tinyConfig: 3 layers, hidden 64, 4 heads over 2 KV heads of 16, vocabulary 300.
    expect(folder.numLayers).toBe(3);
    expect(folder.hiddenSize).toBe(64);
    expect(folder.numHeads).toBe(4);
    expect(folder.numKvHeads).toBe(2);
    expect(folder.headDim).toBe(16);
    expect(folder.vocabSize).toBe(300);
    expect(folder.modelType).toBe('llama');
    // Outside models/, the id is the folder's name.
    expect(folder.modelId).toBe(path.basename(built.dir));
    // Special ids come from generation_config.json.
    const generation = JSON.parse(fs.readFileSync(path.join(built.dir, 'generation_config.json'), 'utf8')) as { bos_token_id: number; eos_token_id: number | number[]; pad_token_id: number };
    expect(folder.bosTokenId).toBe(generation.bos_token_id);
    expect(folder.eosTokenIds).toEqual([generation.eos_token_id].flat());
    expect(folder.padTokenId).toBe(generation.pad_token_id);
    expect(folder.eosTokenIds.every((id) => Number.isInteger(id) && id >= 0 && id < 300)).toBe(true);
  });

  it('a built fp16 model resolves to its model_fp16.onnx', () => {
    const built = tinyModel('llama', 'builder', 'fp16');
    const folder = resolveModelFolder(built.dir);
    expect(folder.onnxFile).toBe(path.join(path.resolve(built.dir), 'onnx', 'model_fp16.onnx'));
    expect(folder.dtype).toBe('fp16');
  });

  it('falls back to the tokenizer files for special ids when the configs have none', () => {
    const dir = copyFolder(tinyModel('llama', 'optimum', 'fp32').dir, path.join(root, 'no-special-ids'));
    const strip = (value: Record<string, unknown>) => {
      delete value.bos_token_id;
      delete value.eos_token_id;
      delete value.pad_token_id;
    };
    editJson(path.join(dir, 'config.json'), strip);
    editJson(path.join(dir, 'generation_config.json'), strip);
    // The synthetic tokenizer: eos_token <|im_end|> (id 2), pad_token <|endoftext|> (id 0), bos_token null.
    const folder = resolveModelFolder(dir);
    expect(folder.eosTokenIds).toEqual([2]);
    expect(folder.padTokenId).toBe(0);
    expect(folder.bosTokenId).toBeNull();
  });
});

describe('a folder with two graphs', () => {
  it('picks the fp32 graph by default (config dtype fp32)', () => {
    const folder = resolveModelFolder(twoGraphs);
    expect(folder.onnxFile).toBe(fp32File);
    expect(folder.dtype).toBe('fp32');
  });

  it('dtype fp16 picks model_fp16.onnx, dtype fp32 picks model.onnx', () => {
    expect(resolveModelFolder(twoGraphs, { dtype: 'fp16' })).toMatchObject({ onnxFile: fp16File, dtype: 'fp16', hiddenSize: 64, numLayers: 3 });
    expect(resolveModelFolder(twoGraphs, { dtype: 'fp32' })).toMatchObject({ onnxFile: fp32File, dtype: 'fp32' });
  });

  it('a dtype whose graph is absent lists the available ones', () => {
    const message = userErrorOf(() => resolveModelFolder(twoGraphs, { dtype: 'q4' }));
    expect(message).toMatch(new RegExp(`^${path.resolve(twoGraphs).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} has no q4 graph \\(onnx/model_q4\\.onnx\\); available: (fp32, fp16|fp16, fp32)$`));
    expect(userErrorOf(() => resolveModelFolder(twoGraphs, { dtype: 'q4f16' }))).toMatch(/has no q4f16 graph \(onnx\/model_q4f16\.onnx\); available: /);
  });

  it('an unknown dtype lists the known ones', () => {
    expect(userErrorOf(() => resolveModelFolder(twoGraphs, { dtype: 'fp8' }))).toBe('unknown dtype fp8: use one of fp32, fp16, q8, int8, uint8, q4, q4f16, bnb4');
  });

  it('without a dtype in config.json, model.onnx is the default', () => {
    const dir = copyFolder(twoGraphs, path.join(root, 'two-graphs-no-config-dtype'));
    editJson(path.join(dir, 'config.json'), (c) => delete c['transformers.js_config']);
    expect(resolveModelFolder(dir)).toMatchObject({ onnxFile: path.join(path.resolve(dir), 'onnx', 'model.onnx'), dtype: 'fp32' });
  });

  it('config.json’s transformers.js dtype chooses the default graph, as transformers.js does', () => {
    const dir = copyFolder(twoGraphs, path.join(root, 'two-graphs-config-fp16'));
    editJson(path.join(dir, 'config.json'), (c) => (c['transformers.js_config'] = { dtype: 'fp16' }));
    expect(resolveModelFolder(dir)).toMatchObject({ onnxFile: path.join(path.resolve(dir), 'onnx', 'model_fp16.onnx'), dtype: 'fp16' });
    // An explicit dtype wins over the config's.
    expect(resolveModelFolder(dir, { dtype: 'fp32' }).dtype).toBe('fp32');
  });

  it('several graphs and no model.onnx nor dtype → asks for one', () => {
    const dir = copyFolder(twoGraphs, path.join(root, 'fp16-and-q4'));
    editJson(path.join(dir, 'config.json'), (c) => delete c['transformers.js_config']);
    fs.renameSync(path.join(dir, 'onnx', 'model.onnx'), path.join(dir, 'onnx', 'model_q4.onnx'));
    const message = userErrorOf(() => resolveModelFolder(dir));
    expect(message).toMatch(/has several graphs \((fp16, q4|q4, fp16)\); choose one with --dtype$/);
    expect(resolveModelFolder(dir, { dtype: 'q4' }).onnxFile).toBe(path.join(path.resolve(dir), 'onnx', 'model_q4.onnx'));
  });

  it('a single non-fp32 graph is picked with the dtype its name says', () => {
    const dir = copyFolder(twoGraphs, path.join(root, 'only-fp16'));
    editJson(path.join(dir, 'config.json'), (c) => delete c['transformers.js_config']);
    fs.rmSync(path.join(dir, 'onnx', 'model.onnx'));
    expect(resolveModelFolder(dir)).toMatchObject({ onnxFile: path.join(path.resolve(dir), 'onnx', 'model_fp16.onnx'), dtype: 'fp16' });
  });
});

describe('org/name under a models folder', () => {
  let modelsDir: string;
  beforeAll(() => {
    modelsDir = path.join(root, 'models');
    copyFolder(tinyModel('llama', 'optimum', 'fp32').dir, path.join(modelsDir, 'test-org', 'tiny.v1'));
  });

  it('resolves org/name under modelsDir, with org/name as the model id', () => {
    const folder = resolveModelFolder('test-org/tiny.v1', { modelsDir });
    expect(folder.dir).toBe(path.resolve(modelsDir, 'test-org', 'tiny.v1'));
    expect(folder.modelId).toBe('test-org/tiny.v1');
    expect(folder.numLayers).toBe(3);
    expect(locateModelDir('test-org/tiny.v1', modelsDir)).toBe(path.resolve(modelsDir, 'test-org', 'tiny.v1'));
    // Given by its path, a folder inside modelsDir gets the same id.
    expect(resolveModelFolder(path.join(modelsDir, 'test-org', 'tiny.v1'), { modelsDir }).modelId).toBe('test-org/tiny.v1');
  });

  it('an org/name that is not there suggests pulling it', () => {
    expect(userErrorOf(() => resolveModelFolder('test-org/absent', { modelsDir }))).toBe(
      `model folder not found: test-org/absent (nor ${path.join(modelsDir, 'test-org/absent')}; run persona models pull test-org/absent)`,
    );
  });
});

describe('onnxruntime-genai folders', () => {
  const genaiConfig = {
    model: {
      bos_token_id: 0,
      eos_token_id: [7, 8],
      pad_token_id: 2,
      type: 'llama',
      vocab_size: 500,
      decoder: { filename: 'model.onnx', head_size: 16, hidden_size: 32, num_attention_heads: 2, num_hidden_layers: 4, num_key_value_heads: 1 },
    },
  };

  it('reads genai_config.json; without tokenizer files the special ids come from it', () => {
    const dir = path.join(root, 'genai-plain');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'genai_config.json'), JSON.stringify(genaiConfig));
    fs.writeFileSync(path.join(dir, 'model.onnx'), ''); // only its existence is checked here
    const folder = resolveModelFolder(dir);
    expect(folder).toMatchObject({
      dir: path.resolve(dir), format: 'genai', onnxFile: path.join(path.resolve(dir), 'model.onnx'), dtype: 'as exported', modelId: 'genai-plain',
      numLayers: 4, hiddenSize: 32, numHeads: 2, numKvHeads: 1, headDim: 16, vocabSize: 500, modelType: 'llama',
      bosTokenId: 0, eosTokenIds: [7, 8], padTokenId: 2,
    });
  });

  it('a genai folder whose graph file is missing', () => {
    const dir = path.join(root, 'genai-no-graph');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'genai_config.json'), JSON.stringify(genaiConfig));
    expect(userErrorOf(() => resolveModelFolder(dir))).toBe(`ONNX model not found: ${path.join(path.resolve(dir), 'model.onnx')}`);
  });

  it('a genai config without the layer count', () => {
    const dir = path.join(root, 'genai-no-layers');
    fs.mkdirSync(dir, { recursive: true });
    const config = structuredClone(genaiConfig) as { model: { decoder: Record<string, unknown> } };
    delete config.model.decoder.num_hidden_layers;
    fs.writeFileSync(path.join(dir, 'genai_config.json'), JSON.stringify(config));
    fs.writeFileSync(path.join(dir, 'model.onnx'), '');
    expect(userErrorOf(() => resolveModelFolder(dir))).toBe(`${path.resolve(dir)}: decoder.num_hidden_layers is missing or invalid in the model config`);
  });

  it.skipIf(!hasFixture)('the builder-llama-fp16 fixture: eos from the tokenizer files and genai_config, 2 layers, hidden 16', () => {
    const folder = resolveModelFolder(FIXTURE_DIR);
    expect(folder).toMatchObject({
      dir: path.resolve(FIXTURE_DIR), format: 'genai', onnxFile: path.join(path.resolve(FIXTURE_DIR), 'model.onnx'), dtype: 'as exported',
      numLayers: 2, hiddenSize: 16, numHeads: 1, numKvHeads: 1, headDim: 16, vocabSize: 32000, modelType: 'llama',
    });
    // genai_config.json says bos 0, eos 1, pad 2 (as exported); the tokenizer's </s> is 2, <s> 1 and pad <unk> 0.
    // Generation stops on any of them (genai configs list every end-of-turn id; Phi-3 has several).
    expect(folder.eosTokenIds).toEqual([2, 1]);
    expect(folder.bosTokenId).toBe(1);
    expect(folder.padTokenId).toBe(0);
  });
});

describe('errors', () => {
  it('a missing folder', () => {
    const missing = path.join(root, 'nowhere');
    expect(userErrorOf(() => resolveModelFolder(missing))).toBe(`model folder not found: ${missing}`);
  });

  it('a file instead of a folder', () => {
    const file = path.join(root, 'a-file.onnx');
    fs.writeFileSync(file, 'x');
    expect(userErrorOf(() => resolveModelFolder(file))).toBe(`model must be a folder, got a file: ${file}`);
  });

  it('a folder with no config', () => {
    const dir = path.join(root, 'no-config');
    fs.mkdirSync(path.join(dir, 'onnx'), { recursive: true });
    fs.copyFileSync(tinyModel('llama', 'optimum', 'fp32').onnxFile, path.join(dir, 'onnx', 'model.onnx'));
    expect(userErrorOf(() => resolveModelFolder(dir))).toBe(`${path.resolve(dir)} is not a model folder: it has neither config.json nor genai_config.json`);
  });

  it('a folder with a config and no graph', () => {
    const dir = path.join(root, 'no-graph');
    fs.mkdirSync(dir, { recursive: true });
    fs.copyFileSync(path.join(tinyModel('llama', 'optimum', 'fp32').dir, 'config.json'), path.join(dir, 'config.json'));
    expect(userErrorOf(() => resolveModelFolder(dir))).toBe(`no ONNX model in ${path.join(path.resolve(dir), 'onnx')} (expected onnx/model*.onnx)`);
    // An onnx/ folder holding other files is no better.
    fs.mkdirSync(path.join(dir, 'onnx'));
    fs.writeFileSync(path.join(dir, 'onnx', 'notes.txt'), 'x');
    expect(userErrorOf(() => resolveModelFolder(dir))).toBe(`no ONNX model in ${path.join(path.resolve(dir), 'onnx')} (expected onnx/model*.onnx)`);
  });

  it('a config that is not JSON, or lacks the hidden size', () => {
    const dir = copyFolder(tinyModel('llama', 'optimum', 'fp32').dir, path.join(root, 'bad-config'));
    const configFile = path.join(dir, 'config.json');
    fs.writeFileSync(configFile, '{"hidden_size": 64,');
    expect(userErrorOf(() => resolveModelFolder(dir))).toMatch(new RegExp(`^model config ${configFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is not valid JSON: `));
    fs.writeFileSync(configFile, JSON.stringify({ num_hidden_layers: 3, num_attention_heads: 4, vocab_size: 300 }));
    expect(userErrorOf(() => resolveModelFolder(dir))).toBe(`${path.resolve(dir)}: hidden_size is missing or invalid in the model config`);
  });
});
