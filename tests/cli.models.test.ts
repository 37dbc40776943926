import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildModel, type BuiltModel } from '../src/builder/index.js';
import { externalLocation, readModel } from '../src/onnx/proto.js';
import { captureResiduals } from '../src/runtime/capture.js';
import { generate } from '../src/runtime/generate.js';
import { dot, normalize } from '../src/vectors/linalg.js';
import { Rng } from '../src/vectors/random.js';
import { entryToFloat32, readSafetensors, writeVectorFile } from '../src/vectors/index.js';
import { isOneLineError, runCli, type CliResult } from './helpers/cli.js';
import { FIXTURE_DIR, hasFixture, tempDir, tinyConfig, tinyModel } from './helpers/models.js';
import { openModel } from './helpers/open.js';

// The CLI runs from dist/: `npm test` builds it first (or run `npx tsc -p tsconfig.json`).

let root: string;
let idsFile: string;
let vectorFile: string;
const H = 64;
const prompts = [
  [5, 17, 200, 33, 90],
  [44, 8, 120],
];
beforeAll(() => {
  root = tempDir('cli-models');
  idsFile = path.join(root, 'ids.json');
  fs.writeFileSync(idsFile, JSON.stringify(prompts));
  vectorFile = path.join(root, 'u.safetensors');
  // Made for "model", the name of every tiny test model's folder.
  writeVectorFile(vectorFile, { vector: new Rng(5).normalArray(H), metadata: { model: 'local/model', method: 'test' } });
});

function json<T>(result: CliResult): T {
  expect(result.code, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as T;
}

interface Inspection {
  family: string;
  numLayers: number;
  hiddenSize: number;
  paddingSide: string;
  residuals: { layer: number; tensor: string | null; node: string; op: string; note?: string }[];
}

describe.concurrent('persona models inspect --json', () => {
  it('optimum style: one residual per layer, the Add_1 output of each block', async () => {
    const info = json<Inspection>(await runCli(['models', 'inspect', tinyModel('llama', 'optimum', 'fp32').dir, '--json']));
    expect(info.family).toBe('optimum');
    expect(info.numLayers).toBe(3);
    expect(info.hiddenSize).toBe(64);
    expect(info.paddingSide).toBe('left');
    expect(info.residuals).toHaveLength(3);
    info.residuals.forEach((r, n) => {
      expect(r.layer).toBe(n);
      expect(r.tensor).toMatch(new RegExp(`^/model/layers\\.${n}/Add_1_output_0$`));
      expect(r.op).toBe('Add');
      expect(r.note).toBeUndefined();
    });
  });

  it('builder style: the family is builder, the last residual is not materialised (null, with a note)', async () => {
    const info = json<Inspection>(await runCli(['models', 'inspect', tinyModel('llama', 'builder', 'fp32').dir, '--json']));
    expect(info.family).toBe('builder');
    expect(info.numLayers).toBe(3);
    expect(info.hiddenSize).toBe(64);
    expect(info.paddingSide).toBe('right');
    expect(info.residuals.map((r) => r.layer)).toEqual([0, 1, 2]);
    expect(info.residuals.map((r) => r.op)).toEqual(Array(3).fill('SkipSimplifiedLayerNormalization'));
    // Block L's residual is output 3 of the next block's input norm; the final norm has none.
    expect(info.residuals[0]!.tensor).toBe('/model/layers.1/input_layernorm/output_3');
    expect(info.residuals[1]!.tensor).toBe('/model/layers.2/input_layernorm/output_3');
    expect(info.residuals[2]!.tensor).toBeNull();
    expect(info.residuals[2]!.note).toMatch(/final norm does not output the residual sum/);
    expect(info.residuals.slice(0, 2).every((r) => r.note === undefined)).toBe(true);
  });

  it.skipIf(!hasFixture)('the builder-llama-fp16 fixture: builder family, 2 layers of 16, last residual null', async () => {
    const info = json<Inspection & { residualType: string; eosTokenIds: number[] }>(await runCli(['models', 'inspect', FIXTURE_DIR, '--json']));
    expect(info.family).toBe('builder');
    expect(info.numLayers).toBe(2);
    expect(info.hiddenSize).toBe(16);
    expect(info.residualType).toBe('float16');
    expect(info.eosTokenIds).toEqual([2, 1]);
    expect(info.residuals).toHaveLength(2);
    expect(info.residuals[0]!.tensor).toBe('/model/layers.1/input_layernorm/output_3');
    expect(info.residuals[1]!.tensor).toBeNull();
    expect(info.residuals[1]!.note).toMatch(/instrumentation adds its output 3/);
  });

  it('the human-readable form names the residual tensors', async () => {
    const result = await runCli(['models', 'inspect', tinyModel('llama', 'builder', 'fp32').dir]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('exporter family builder');
    expect(result.stdout).toContain('3 layers, hidden 64, 4 heads, 2 KV heads of size 16, vocab 300');
    expect(result.stdout).toMatch(/^2 +\(output 3 of \/model\/layers\.3\/final_norm_layernorm\/SkipLayerNorm, added when instrumented\)/m);
  });
});

describe('persona models instrument on an external-data builder model', () => {
  let built: BuiltModel;
  let onnxDir: string;
  let dataHash: string;
  let result: CliResult;
  const instrumentedName = 'model.instrumented.onnx';

  const sha = (file: string) => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

  beforeAll(async () => {
    built = buildModel({ config: tinyConfig('llama'), seed: 11, style: 'builder', dtype: 'fp32', outDir: path.join(root, 'external'), externalData: true });
    onnxDir = path.dirname(built.onnxFile);
    expect(fs.readdirSync(onnxDir).sort()).toEqual(['model.onnx', 'model.onnx_data']);
    dataHash = sha(path.join(onnxDir, 'model.onnx_data'));
    result = await runCli(['models', 'instrument', built.dir]);
  });

  it('writes the graph next to the original and prints what it added', () => {
    expect(result.code, result.stderr).toBe(0);
    const file = path.join(onnxDir, instrumentedName);
    const lines = result.stdout.trim().split('\n');
    expect(lines[0]).toBe(`wrote ${file}`);
    const inputsAt = lines.indexOf('added inputs:');
    const outputsAt = lines.indexOf('added outputs:');
    expect(inputsAt).toBe(1);
    const inputs = lines.slice(inputsAt + 1, outputsAt).map((l) => l.trim());
    const expectedInputs = [0, 1, 2].flatMap((n) => [
      `steer.${n}.vector float32[batch_size, 1, 64]`,
      `steer.${n}.gate float32[batch_size, sequence_length, 1]`,
      `clamp.${n}.directions float32[clamp_directions_${n}, 64]`,
      `clamp.${n}.lower float32[batch_size, 1, clamp_directions_${n}]`,
      `clamp.${n}.upper float32[batch_size, 1, clamp_directions_${n}]`,
      `clamp.${n}.gate float32[batch_size, sequence_length, 1]`,
    ]);
    expect(inputs).toEqual([...expectedInputs, 'logits.positions int64[batch_size]']);
    const outputs = lines.slice(outputsAt + 1, -1).map((l) => l.trim());
    expect(outputs).toEqual(['residual.0', 'residual.1', 'residual.2', 'logits.selected']);
    expect(lines.at(-1)).toMatch(/feed zeros to steer\.\* and ±Infinity to clamp\.\*\.lower\/upper/);
  });

  it('does not copy the external data: no new data file, a small graph that references model.onnx_data', () => {
    expect(fs.readdirSync(onnxDir).sort()).toEqual([instrumentedName, 'model.onnx', 'model.onnx_data']);
    expect(sha(path.join(onnxDir, 'model.onnx_data'))).toBe(dataHash);
    const dataSize = fs.statSync(path.join(onnxDir, 'model.onnx_data')).size;
    const graphSize = fs.statSync(path.join(onnxDir, instrumentedName)).size;
    const originalSize = fs.statSync(built.onnxFile).size;
    expect(dataSize).toBeGreaterThan(500_000);
    // The rewrite adds a few dozen nodes; the weights stay in the data file.
    expect(graphSize).toBeLessThan(originalSize + 32_000);
    expect(graphSize * 10).toBeLessThan(dataSize);
    const model = readModel(path.join(onnxDir, instrumentedName));
    const external = model.graph!.initializer.filter((t) => externalLocation(t) !== undefined);
    expect(external.length).toBeGreaterThan(10);
    expect(new Set(external.map((t) => externalLocation(t)))).toEqual(new Set(['model.onnx_data']));
  });

  it('loaded by onnxruntime directly with interventions off, its logits equal the original graph’s bit for bit', async () => {
    const instrumented = await ort.InferenceSession.create(path.join(onnxDir, instrumentedName));
    const original = await ort.InferenceSession.create(built.onnxFile);
    try {
      const tokens = [3, 77, 150, 9, 260, 41];
      const S = tokens.length;
      const base: Record<string, ort.Tensor> = {
        input_ids: new ort.Tensor('int64', BigInt64Array.from(tokens, BigInt), [1, S]),
        attention_mask: new ort.Tensor('int64', new BigInt64Array(S).fill(1n), [1, S]),
      };
      for (const name of original.inputNames) {
        if (name.startsWith('past_key_values.')) base[name] = new ort.Tensor('float32', new Float32Array(0), [1, 2, 0, 16]);
      }
      expect(Object.keys(base).sort()).toEqual([...original.inputNames].sort());
      const added: Record<string, ort.Tensor> = { 'logits.positions': new ort.Tensor('int64', new BigInt64Array([BigInt(S - 1)]), [1]) };
      const direction = new Float32Array(H);
      direction[0] = 1;
      for (let n = 0; n < 3; n++) {
        added[`steer.${n}.vector`] = new ort.Tensor('float32', new Float32Array(H), [1, 1, H]);
        added[`steer.${n}.gate`] = new ort.Tensor('float32', new Float32Array(S), [1, S, 1]);
        added[`clamp.${n}.directions`] = new ort.Tensor('float32', direction, [1, H]);
        added[`clamp.${n}.lower`] = new ort.Tensor('float32', new Float32Array([-Infinity]), [1, 1, 1]);
        added[`clamp.${n}.upper`] = new ort.Tensor('float32', new Float32Array([Infinity]), [1, 1, 1]);
        added[`clamp.${n}.gate`] = new ort.Tensor('float32', new Float32Array(S), [1, S, 1]);
      }
      expect([...instrumented.inputNames].sort()).toEqual([...Object.keys(base), ...Object.keys(added)].sort());
      const expected = (await original.run(base)).logits!;
      const got = await instrumented.run({ ...base, ...added });
      expect(got.logits!.dims).toEqual([1, S, 300]);
      const a = expected.data as Float32Array;
      const b = got.logits!.data as Float32Array;
      expect(b.length).toBe(a.length);
      expect(Buffer.from(b.buffer, b.byteOffset, b.byteLength).equals(Buffer.from(a.buffer, a.byteOffset, a.byteLength))).toBe(true);
      // logits.selected is the last position's row; residual.L is [1, S, H].
      expect(Array.from(got['logits.selected']!.data as Float32Array)).toEqual(Array.from(a.subarray((S - 1) * 300, S * 300)));
      for (let n = 0; n < 3; n++) expect(got[`residual.${n}`]!.dims).toEqual([1, S, H]);
    } finally {
      await instrumented.release();
      await original.release();
    }
  });

  it('--out in another folder is refused with one line, and writes nothing', async () => {
    const out = path.join(root, 'elsewhere', 'model.instrumented.onnx');
    const refused = await runCli(['models', 'instrument', built.dir, '--out', out]);
    expect(isOneLineError(refused), refused.stderr).toBe(true);
    expect(refused.stderr).toContain(`must be written next to the original's external data in ${onnxDir}`);
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.existsSync(path.dirname(out))).toBe(false);
  });
});

interface GenerateJson {
  sequences: number[][];
  texts: string[];
  finishReasons: string[];
  projections: { name: string; layer: number; perToken: number[][]; mean: number[]; promptLast: number[] }[];
}

for (const style of ['optimum', 'builder'] as const) {
  describe.concurrent(`persona generate --input-ids (${style} style)`, () => {
    const dir = () => tinyModel('llama', style, 'fp32').dir;

    it('prints {sequences, texts, finishReasons, projections} with 5 ids per row, the library’s greedy tokens', async () => {
      const out = json<GenerateJson>(await runCli(['generate', dir(), '--input-ids', idsFile, '--max-tokens', '5', '--json']));
      expect(Object.keys(out)).toEqual(['sequences', 'texts', 'finishReasons', 'projections']);
      expect(out.sequences).toHaveLength(2);
      out.sequences.forEach((row) => {
        expect(row).toHaveLength(5);
        expect(row.every((id) => Number.isInteger(id) && id >= 0 && id < 300)).toBe(true);
      });
      expect(out.finishReasons).toEqual(['length', 'length']);
      expect(out.texts).toHaveLength(2);
      expect(out.texts.every((t) => typeof t === 'string')).toBe(true);
      expect(out.projections).toEqual([]);
      const model = await openModel(dir());
      const library = await generate(model, prompts.map((inputIds) => ({ inputIds })), { maxNewTokens: 5 });
      expect(out.sequences).toEqual(library.sequences);
    });

    it('--monitor gives one projection per generated token, equal to the residual captured at that token\'s position; --drift-log appends a line per row', async () => {
      const driftLog = path.join(root, `drift-${style}.jsonl`);
      fs.writeFileSync(driftLog, '{"earlier":"line"}\n');
      const out = json<GenerateJson>(await runCli(['generate', dir(), '--input-ids', idsFile, '--max-tokens', '5', '--monitor', `${vectorFile}:1`, '--drift-log', driftLog, '--json']));
      expect(out.sequences.map((s) => s.length)).toEqual([5, 5]);
      expect(out.projections).toHaveLength(1);
      const monitor = out.projections[0]!;
      expect(monitor.name).toBe('u@1');
      expect(monitor.layer).toBe(1);
      expect(monitor.perToken.map((p) => p.length)).toEqual([5, 5]);
      monitor.perToken.forEach((values, row) => expect(monitor.mean[row]).toBeCloseTo(values.reduce((a, b) => a + b, 0) / 5, 12));

      // Teacher-forced capture of prompt + generated tokens: token k sits at index promptLength + k; the prompt's
      // last token (promptLast) at promptLength − 1.
      const full = prompts.map((p, row) => [...p, ...out.sequences[row]!]);
      const fullIds = path.join(root, `full-${style}.json`);
      fs.writeFileSync(fullIds, JSON.stringify(full));
      const captureFile = path.join(root, `monitor-${style}.safetensors`);
      const captured = await runCli(['capture', dir(), '--input-ids', fullIds, '--layers', '1', '--out', captureFile]);
      expect(captured.code, captured.stderr).toBe(0);
      const entry = readSafetensors(captureFile).tensors.get('residual.1')!;
      const width = Math.max(...full.map((r) => r.length));
      expect(entry.shape).toEqual([2, width, H]);
      const residual = entryToFloat32(entry);
      const unit = normalize(new Rng(5).normalArray(H));
      full.forEach((ids, row) => {
        const offset = width - ids.length; // the capture file is left-padded
        for (let k = 0; k < 5; k++) {
          const at = (row * width + offset + prompts[row]!.length + k) * H;
          const expected = dot(residual.subarray(at, at + H), unit);
          expect(Math.abs(monitor.perToken[row]![k]! - expected), `row ${row} token ${k}`).toBeLessThanOrEqual(1e-4);
        }
        const last = (row * width + offset + prompts[row]!.length - 1) * H;
        expect(Math.abs(monitor.promptLast[row]! - dot(residual.subarray(last, last + H), unit))).toBeLessThanOrEqual(1e-4);
      });
      // The projections carry signal: they are not all the same value.
      expect(new Set(monitor.perToken.flat().map((v) => v.toFixed(3))).size).toBeGreaterThan(5);

      const lines = fs.readFileSync(driftLog, 'utf8').split('\n');
      expect(lines.at(-1)).toBe('');
      expect(lines).toHaveLength(4);
      expect(lines[0]).toBe('{"earlier":"line"}');
      lines.slice(1, 3).forEach((line, row) => {
        const record = JSON.parse(line) as { time: string; row: number; tokens: number[]; projections: Record<string, { layer: number; perToken: number[]; mean: number }> };
        expect(Object.keys(record)).toEqual(['time', 'row', 'tokens', 'projections']);
        expect(Number.isNaN(Date.parse(record.time))).toBe(false);
        expect(record.row).toBe(row);
        expect(record.tokens).toEqual(out.sequences[row]);
        expect(record.projections).toEqual({ 'u@1': { layer: 1, perToken: monitor.perToken[row], mean: monitor.mean[row], promptLast: monitor.promptLast[row] } });
      });
    });
  });

  describe(`persona capture --input-ids --layers 0-1 (${style} style)`, () => {
    it('writes residual.0/1 [batch, seq, hidden], input_ids and a left-padded attention_mask, equal to captureResiduals()', async () => {
      const dir = tinyModel('llama', style, 'fp32').dir;
      const out = path.join(root, `capture-${style}.safetensors`);
      const summary = json<{ file: string; batch: number; sequenceLength: number; hiddenSize: number; layers: number[] }>(
        await runCli(['capture', dir, '--input-ids', idsFile, '--layers', '0-1', '--out', out, '--json']),
      );
      expect(summary).toEqual({ file: out, batch: 2, sequenceLength: 5, hiddenSize: H, layers: [0, 1] });
      const file = readSafetensors(out);
      expect([...file.tensors.keys()].sort()).toEqual(['attention_mask', 'input_ids', 'residual.0', 'residual.1']);
      expect(file.metadata).toMatchObject({ layers: '[0,1]', layer_convention: 'block_output', padding: 'left' });
      const ids = file.tensors.get('input_ids')!;
      const mask = file.tensors.get('attention_mask')!;
      expect([ids.dtype, mask.dtype]).toEqual(['I64', 'I64']);
      expect(ids.shape).toEqual([2, 5]);
      expect(mask.shape).toEqual([2, 5]);
      expect(Array.from(new BigInt64Array(ids.bytes.slice().buffer), Number)).toEqual([5, 17, 200, 33, 90, 0, 0, 44, 8, 120]);
      expect(Array.from(new BigInt64Array(mask.bytes.slice().buffer), Number)).toEqual([1, 1, 1, 1, 1, 0, 0, 1, 1, 1]);

      const model = await openModel(dir);
      const library = await captureResiduals(model, prompts.map((inputIds) => ({ inputIds })), { layers: [0, 1] });
      for (const layer of [0, 1]) {
        const entry = file.tensors.get(`residual.${layer}`)!;
        expect(entry.dtype).toBe('F32');
        expect(entry.shape).toEqual([2, 5, H]);
        const values = entryToFloat32(entry);
        // Row 0 fills the width; row 1 has two padding positions (zeros) then its three tokens.
        expect(Array.from(values.subarray(0, 5 * H))).toEqual(Array.from(library.residuals.get(layer)![0]!));
        expect(values.subarray(5 * H, 7 * H).every((v) => v === 0)).toBe(true);
        expect(Array.from(values.subarray(7 * H, 10 * H))).toEqual(Array.from(library.residuals.get(layer)![1]!));
        expect(values.some((v) => v !== 0)).toBe(true);
      }
    });

    it('--steer FILE:LAYER:COEF shifts the captured residual by exactly COEF·v at every token (--positions all) and never at padding; --cap holds a floor', async () => {
      const dir = tinyModel('llama', style, 'fp32').dir;
      const residualOf = async (name: string, extra: string[]) => {
        const out = path.join(root, `${name}-${style}.safetensors`);
        const result = await runCli(['capture', dir, '--input-ids', idsFile, '--layers', '1', '--out', out, ...extra]);
        expect(result.code, result.stderr).toBe(0);
        return entryToFloat32(readSafetensors(out).tensors.get('residual.1')!);
      };
      const plain = await residualOf('plain', []);
      const steered = await residualOf('steered', ['--steer', `${vectorFile}:1:3`, '--positions', 'all']);
      const v = new Rng(5).normalArray(H);
      const padding = new Set([5, 6]); // row 1, positions 0-1 (left padding)
      for (let position = 0; position < 10; position++) {
        for (let i = 0; i < H; i++) {
          const shift = steered[position * H + i]! - plain[position * H + i]!;
          if (padding.has(position)) expect(steered[position * H + i]).toBe(0);
          else expect(Math.abs(shift - 3 * v[i]!), `position ${position} dim ${i}`).toBeLessThanOrEqual(1e-5);
        }
      }

      const unit = normalize(v);
      const projections = (residual: Float32Array) => Array.from({ length: 10 }, (_, p) => dot(residual.subarray(p * H, (p + 1) * H), unit));
      const before = projections(plain);
      const floor = 0.5;
      const capped = await residualOf('capped', ['--cap', `${vectorFile}:1:floor:${floor}`]);
      const after = projections(capped);
      let moved = 0;
      for (let p = 0; p < 10; p++) {
        if (padding.has(p)) continue;
        expect(after[p]!).toBeGreaterThanOrEqual(floor - 1e-5);
        if (before[p]! >= floor) expect(Array.from(capped.subarray(p * H, (p + 1) * H))).toEqual(Array.from(plain.subarray(p * H, (p + 1) * H)));
        else moved++;
      }
      expect(moved).toBeGreaterThan(0);
    });
  });
}

describe.concurrent('--help has examples', () => {
  const commands = ['demo', 'models build', 'models pull', 'models inspect', 'models instrument', 'generate', 'capture', 'extract', 'project', 'sweep', 'plot', 'traits list', 'traits show', 'traits new'];
  for (const command of commands) {
    it(`persona ${command} --help`, async () => {
      const result = await runCli([...command.split(' '), '--help']);
      expect(result.code).toBe(0);
      const at = result.stdout.indexOf('\nExamples:\n');
      expect(at).toBeGreaterThan(0);
      const examples = result.stdout.slice(at).trim().split('\n').slice(1);
      expect(examples.length).toBeGreaterThanOrEqual(2);
      // An example may set environment variables before the command.
      examples.forEach((line) => expect(line).toMatch(new RegExp(`^  \\$ ([A-Z_]+=\\S+ )*persona ${command}( |$)`)));
    });
  }
});

describe('persona models pull against a local hub', () => {
  const REPO = 'test-org/tiny-pull';
  let server: http.Server;
  let endpoint: string;
  let modelsDir: string;
  const requests: string[] = [];
  const served = new Map<string, Buffer>();

  beforeAll(async () => {
    const source = buildModel({ config: tinyConfig('llama'), seed: 4, style: 'optimum', dtype: 'fp32', outDir: path.join(root, 'pull-source'), externalData: true });
    for (const file of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'onnx/model.onnx', 'onnx/model.onnx_data']) {
      served.set(file, fs.readFileSync(path.join(source.dir, file)));
    }
    // Files a fp32 pull must not fetch.
    served.set('README.md', Buffer.from('# tiny\n'));
    served.set('onnx/model_fp16.onnx', Buffer.from('not fetched'));
    modelsDir = path.join(root, 'models');
    server = http.createServer((request, response) => {
      const url = new URL(request.url ?? '/', 'http://127.0.0.1');
      requests.push(url.pathname);
      if (url.pathname === `/api/models/${REPO}/tree/main` && url.searchParams.get('recursive') === 'true') {
        const listing = [{ type: 'directory', path: 'onnx', size: 0 }, ...[...served].map(([file, bytes]) => ({ type: 'file', path: file, size: bytes.byteLength }))];
        response.writeHead(200, { 'content-type': 'application/json' });
        response.end(JSON.stringify(listing));
        return;
      }
      const prefix = `/${REPO}/resolve/main/`;
      const bytes = url.pathname.startsWith(prefix) ? served.get(decodeURIComponent(url.pathname.slice(prefix.length))) : undefined;
      if (!bytes) {
        response.writeHead(404).end('not found');
        return;
      }
      response.writeHead(200, { 'content-length': bytes.byteLength, 'content-type': 'application/octet-stream' });
      response.end(bytes);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const env = () => ({ HF_ENDPOINT: endpoint, HF_TOKEN: '', HF_ACCESS_TOKEN: '' });
  const expectedFiles = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'onnx/model.onnx', 'onnx/model.onnx_data'];

  interface Summary {
    repo: string;
    revision: string;
    dtype: string;
    destDir: string;
    files: { path: string; size: number }[];
    downloaded: string[];
    skipped: string[];
    bytesTransferred: number;
    bytesTotal: number;
  }

  it('downloads the fp32 files into <models-dir>/<org>/<name>/, then skips them on a second run', async () => {
    const first = json<Summary>(await runCli(['models', 'pull', REPO, '--models-dir', modelsDir, '--json'], { env: env() }));
    const total = expectedFiles.reduce((sum, f) => sum + served.get(f)!.byteLength, 0);
    const destDir = path.resolve(modelsDir, 'test-org', 'tiny-pull');
    expect(first).toEqual({
      repo: REPO,
      revision: 'main',
      dtype: 'fp32',
      destDir,
      files: expectedFiles.map((f) => ({ path: f, size: served.get(f)!.byteLength })),
      downloaded: expectedFiles,
      skipped: [],
      bytesTransferred: total,
      bytesTotal: total,
    });
    for (const file of expectedFiles) expect(fs.readFileSync(path.join(destDir, file)).equals(served.get(file)!), file).toBe(true);
    expect(fs.existsSync(path.join(destDir, 'README.md'))).toBe(false);
    expect(fs.existsSync(path.join(destDir, 'onnx', 'model_fp16.onnx'))).toBe(false);
    expect(fs.readdirSync(path.join(destDir, 'onnx')).sort()).toEqual(['model.onnx', 'model.onnx_data']);
    expect(requests.filter((r) => r.includes('/resolve/')).sort()).toEqual(expectedFiles.map((f) => `/${REPO}/resolve/main/${f}`).sort());

    // A second run (human-readable) only lists the repository and skips every file.
    requests.length = 0;
    const second = await runCli(['models', 'pull', REPO, '--models-dir', modelsDir], { env: env() });
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout.trim()).toBe(`${REPO}@main (fp32) in ${destDir}: 0 downloaded, 6 already present`);
    expect(requests).toEqual([`/api/models/${REPO}/tree/main`]);
    for (const file of expectedFiles) expect(fs.readFileSync(path.join(destDir, file)).equals(served.get(file)!), file).toBe(true);

    // The pulled folder resolves as org/name under --models-dir.
    const info = json<Inspection>(await runCli(['models', 'inspect', REPO, '--models-dir', modelsDir, '--json']));
    expect(info.family).toBe('optimum');
    expect(info.numLayers).toBe(3);
    expect(info.hiddenSize).toBe(64);
  });

  it('a dtype the server does not offer is one line listing what it has', async () => {
    const result = await runCli(['models', 'pull', REPO, '--models-dir', modelsDir, '--dtype', 'q4'], { env: env() });
    expect(isOneLineError(result), result.stderr).toBe(true);
    expect(result.stderr.trim()).toBe(`persona: error: ${REPO}@main has no q4 model (onnx/model_q4.onnx); available dtypes: fp32, fp16`);
  });
});
