import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { GraphBuilder } from '../src/onnx/graphBuilder.js';
import { ElemType, encodeModel } from '../src/onnx/proto.js';
import { writeVectorFile } from '../src/vectors/index.js';
import { isOneLineError, runCli } from './helpers/cli.js';
import { tempDir, tinyModel } from './helpers/models.js';

let dir: string;
let modelDir: string;

beforeAll(() => {
  dir = tempDir('cli-errors');
  modelDir = tinyModel('llama', 'optimum', 'fp32').dir;
  const hidden = 64;
  // Tiny test models live in folders named "model"; the vectors say they were made for it.
  writeVectorFile(path.join(dir, 'good.safetensors'), { vector: new Float32Array(hidden).fill(0.1), metadata: { model: 'local/model', method: 'test' } });
  writeVectorFile(path.join(dir, 'small.safetensors'), { vector: new Float32Array(32).fill(0.1), metadata: { model: 'local/model', method: 'test' } });
  writeVectorFile(path.join(dir, 'layers.safetensors'), { vectors: [new Float32Array(hidden), new Float32Array(hidden)], metadata: { model: 'local/model', method: 'test' } });
  writeVectorFile(path.join(dir, 'other-model.safetensors'), { vector: new Float32Array(hidden).fill(0.1), metadata: { model: 'org/another-model', method: 'test' } });
  // A NaN can only come from a file written by something else; write the bytes directly.
  const nanDir = path.join(dir, 'nan.safetensors');
  const header = JSON.stringify({ vector: { dtype: 'F32', shape: [hidden], data_offsets: [0, hidden * 4] } });
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(header.length));
  const data = new Float32Array(hidden).fill(1);
  data[5] = NaN;
  fs.writeFileSync(nanDir, Buffer.concat([length, Buffer.from(header), Buffer.from(data.buffer)]));
  fs.writeFileSync(path.join(dir, 'bad.json'), '{"not json": ');
  fs.writeFileSync(path.join(dir, 'ids.json'), JSON.stringify([[1, 2, 999999]]));

  // A valid ONNX graph that is not a decoder: y = x + x.
  const notDecoder = path.join(dir, 'not-a-decoder');
  fs.mkdirSync(path.join(notDecoder, 'onnx'), { recursive: true });
  fs.copyFileSync(path.join(modelDir, 'config.json'), path.join(notDecoder, 'config.json'));
  const g = new GraphBuilder((node, i) => `${node}_${i}`);
  g.input('x', ElemType.FLOAT, [2]);
  g.node('Add', ['x', 'x'], { name: 'add', outputs: ['y'] });
  g.output('y', ElemType.FLOAT, [2]);
  fs.writeFileSync(path.join(notDecoder, 'onnx', 'model.onnx'), encodeModel(g.toModel({ producer: 'test', irVersion: 8, opsets: { '': 17 } })));
  fs.mkdirSync(path.join(dir, 'no-graph'));
  fs.copyFileSync(path.join(modelDir, 'config.json'), path.join(dir, 'no-graph', 'config.json'));
});

const prompt = ['--input-ids'];
describe('bad input gives one line on stderr and a non-zero exit', () => {
  const cases: [string, () => string[], RegExp][] = [
    ['missing model folder', () => ['generate', path.join(dir, 'nope'), '--prompt', 'hi'], /model folder not found: .*nope$/],
    ['model folder without a graph', () => ['generate', path.join(dir, 'no-graph'), '--prompt', 'hi'], /no ONNX model in .*no-graph\/onnx/],
    ['graph that is not a decoder', () => ['models', 'inspect', path.join(dir, 'not-a-decoder')], /the graph is not a decoder: it has no input_ids input/],
    ['vector of the wrong hidden size', () => ['generate', modelDir, '--prompt', 'hi', '--steer', `${path.join(dir, 'small.safetensors')}:1:2`], /small\.safetensors holds vectors of size 32 but the model's hidden size is 64/],
    ['vector file with NaN', () => ['generate', modelDir, '--prompt', 'hi', '--steer', `${path.join(dir, 'nan.safetensors')}:1:2`], /nan\.safetensors contains NaN or Infinity/],
    ['steering layer out of range', () => ['generate', modelDir, '--prompt', 'hi', '--steer', `${path.join(dir, 'good.safetensors')}:9:2`], /layer 9 is out of range: the model has layers 0-2/],
    ['per-layer file for another model', () => ['generate', modelDir, '--prompt', 'hi', '--steer', `${path.join(dir, 'layers.safetensors')}:1:2`], /has vectors for 2 layers but the model has 3/],
    ['vector made for a model of another name', () => ['generate', modelDir, '--prompt', 'hi', '--steer', `${path.join(dir, 'other-model.safetensors')}:1:2`], /was made for model org\/another-model, not model; .*--allow-other-model/],
    ['cap layer range out of range', () => ['generate', modelDir, '--prompt', 'hi', '--cap', `${path.join(dir, 'good.safetensors')}:1-7:floor:0.5`], /layer 3 is out of range: the model has layers 0-2/],
    ['cap with an unknown mode', () => ['generate', modelDir, '--prompt', 'hi', '--cap', `${path.join(dir, 'good.safetensors')}:1:sideways:0.5`], /cap mode must be floor or ceiling, got "sideways"/],
    ['coefficient that is not a number', () => ['generate', modelDir, '--prompt', 'hi', '--steer', `${path.join(dir, 'good.safetensors')}:1:lots`], /steering coefficient must be a number, got "lots"/],
    ['malformed messages JSON', () => ['generate', modelDir, '--messages', path.join(dir, 'bad.json')], /messages file .*bad\.json is not valid JSON/],
    ['--system with a messages file', () => ['generate', modelDir, '--messages', path.join(dir, 'bad.json'), '--system', 'Be terse.'], /--system goes with --prompt; put the system turn in the --messages file instead/],
    ['token id outside the vocabulary', () => ['generate', modelDir, ...prompt, path.join(dir, 'ids.json')], /row 0 has token id 999999, outside the vocabulary \(0-299\)/],
    ['malformed model config', () => ['models', 'build', '--config', path.join(dir, 'bad.json'), '--out', path.join(dir, 'x')], /model config .*bad\.json is not valid JSON/],
    ['missing vector file', () => ['capture', modelDir, '--prompt', 'hi', '--steer', `${path.join(dir, 'absent.safetensors')}:1:1`, '--out', path.join(dir, 'c.safetensors')], /safetensors file not found: .*absent\.safetensors/],
    ['capture layer out of range', () => ['capture', modelDir, '--prompt', 'hi', '--layers', '0-9', '--out', path.join(dir, 'c.safetensors')], /layer 3 is out of range: the model has layers 0-2/],
    ['cuda requested without the provider', () => ['generate', modelDir, '--prompt', 'hi', '--device', 'cuda'], /the CUDA execution provider is not installed/],
    ['unknown option', () => ['generate', modelDir, '--prompt', 'hi', '--temprature', '1'], /^persona: error: unknown option '--temprature' \(Did you mean --temperature\?\) \(see persona generate --help\)$/],
    ['missing argument', () => ['models', 'inspect'], /^persona: error: missing required argument 'model' \(see persona models inspect --help\)$/],
  ];
  for (const [label, args, message] of cases) {
    it(label, async () => {
      const result = await runCli(args());
      expect(result.stderr).not.toMatch(/^\s+at /m);
      expect(isOneLineError(result), `stderr was: ${result.stderr}`).toBe(true);
      expect(result.stderr.trim()).toMatch(message);
    });
  }

  it('the CUDA error says how to install the provider', async () => {
    const result = await runCli(['generate', modelDir, '--prompt', 'hi', '--device', 'cuda']);
    expect(result.stderr).toMatch(/CUDA execution provider is not installed.*ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules\/onnxruntime-node\/script\/install.js/);
  });
});
