import * as fs from 'node:fs';
import * as path from 'node:path';
import { create } from '@bufbuild/protobuf';
import { NodeProtoSchema } from 'onnx-buf';
import { describe, expect, it } from 'vitest';
import { findResidualStream, loadInstrumentedGraph } from '../src/instrument/index.js';
import { encodeModel, readModel, tensorProto, valueInfo, type ModelProto } from '../src/onnx/proto.js';
import { captureResiduals, generate, SteerableModel } from '../src/runtime/index.js';
import { dot, normalize } from '../src/vectors/linalg.js';
import { Rng } from '../src/vectors/random.js';
import { tempDir, tinyModel } from './helpers/models.js';
import { openModel } from './helpers/open.js';

/** Copies a built model folder and rewrites its graph. */
async function variant(source: string, label: string, edit: (model: ModelProto) => void): Promise<SteerableModel> {
  const dir = path.join(tempDir(label), 'model');
  fs.cpSync(source, dir, { recursive: true });
  const file = fs.readdirSync(path.join(dir, 'onnx')).find((f) => f.endsWith('.onnx'))!;
  const model = readModel(path.join(dir, 'onnx', file));
  edit(model);
  fs.writeFileSync(path.join(dir, 'onnx', file), encodeModel(model));
  const loaded = await openModel(dir);
  return loaded;
}

const node = (opType: string, name: string, input: string[], output: string[]) => create(NodeProtoSchema, { opType, name, input, output });

function rewire(model: ModelProto, from: string, to: string, except: string): void {
  for (const n of model.graph!.node) if (n.name !== except) n.input.forEach((input, i) => input === from && (n.input[i] = to));
}

async function bitIdentical(model: SteerableModel): Promise<void> {
  const rows = [{ inputIds: [11, 42, 7, 250, 99] }, { inputIds: [3, 180, 64] }];
  const a = await generate(model, rows, { maxNewTokens: 4, returnLogits: true, eosTokenIds: [], original: true });
  const b = await generate(model, rows, { maxNewTokens: 4, returnLogits: true, eosTokenIds: [], instrumentation: { capture: [0, 1, 2], steer: [0, 1, 2], clamp: [0, 1, 2] } });
  a.logits!.forEach((row, r) => row.forEach((step, s) => expect(Buffer.from(step.buffer).equals(Buffer.from(b.logits![r]![s]!.buffer))).toBe(true)));
}

describe('the residual walk and rewrite on less tidy graphs', () => {
  it('looks through Identity and Cast nodes on the residual path between layers', async () => {
    const model = await variant(tinyModel('llama', 'optimum', 'fp32').dir, 'walk-identity', (m) => {
      const residual = '/model/layers.0/Add_1_output_0';
      rewire(m, residual, 'passed_through', '');
      const index = m.graph!.node.findIndex((n) => n.output[0] === residual);
      m.graph!.node.splice(index + 1, 0, node('Identity', 'extra_identity', [residual], ['passed_through']));
    });
    expect(findResidualStream(readModel(model.folder.onnxFile), 3).numLayers).toBe(3);
    await bitIdentical(model);
    const vector = new Rng(1).normalArray(model.hiddenSize);
    const base = await captureResiduals(model, [{ inputIds: [5, 6, 7] }], { layers: [1] });
    const steered = await captureResiduals(model, [{ inputIds: [5, 6, 7], interventions: { steer: [{ layer: 1, vector, coefficient: 2 }] } }], { layers: [1] });
    const shift = steered.residuals.get(1)![0]!.map((x, i) => x - base.residuals.get(1)![0]![i]!);
    for (let i = 0; i < model.hiddenSize; i++) expect(shift[i]!).toBeCloseTo(2 * vector[i]!, 5);
  });

  it('a residual tensor that is also a graph output shows the intervened value there too', async () => {
    const residual = '/model/layers.0/Add_1_output_0';
    const model = await variant(tinyModel('llama', 'optimum', 'fp32').dir, 'walk-output', (m) => m.graph!.output.push(valueInfo(residual)));
    const session = await model.session({ capture: [0], steer: [0] });
    const vector = new Float32Array(model.hiddenSize).fill(1);
    const result = await captureResiduals(model, [{ inputIds: [5, 6, 7], interventions: { steer: [{ layer: 0, vector, coefficient: 1 }] } }], { layers: [0] });
    // Read the exported output straight from the session with the same feeds the capture used.
    const ort = (await import('onnxruntime-node')).default;
    const outputs = await session.session.run(
      {
        input_ids: new ort.Tensor('int64', BigInt64Array.from([5n, 6n, 7n]), [1, 3]),
        attention_mask: new ort.Tensor('int64', BigInt64Array.from([1n, 1n, 1n]), [1, 3]),
        position_ids: new ort.Tensor('int64', BigInt64Array.from([0n, 1n, 2n]), [1, 3]),
        ...Object.fromEntries(session.signature.pastKeys.concat(session.signature.pastValues).map((name) => [name, new ort.Tensor('float32', new Float32Array(0), [1, 2, 0, 16])])),
        'steer.0.vector': new ort.Tensor('float32', vector, [1, 1, model.hiddenSize]),
        'steer.0.gate': new ort.Tensor('float32', new Float32Array([1, 1, 1]), [1, 3, 1]),
        'logits.positions': new ort.Tensor('int64', BigInt64Array.from([2n]), [1]),
      },
      [residual, 'residual.0'],
    );
    expect(Array.from(outputs[residual]!.data as Float32Array)).toEqual(Array.from(outputs['residual.0']!.data as Float32Array));
    expect(Array.from(outputs['residual.0']!.data as Float32Array)).toEqual(Array.from(result.residuals.get(0)![0]!));
  });

  it('clamps through SkipLayerNormalization (beta at input 3, bias at input 4) hold exactly', async () => {
    const hidden = 64;
    const rng = new Rng(9);
    const model = await variant(tinyModel('llama', 'builder', 'fp32').dir, 'walk-skiplayernorm', (m) => {
      const skip = m.graph!.node.find((n) => n.name === '/model/layers.1/input_layernorm/SkipLayerNorm')!;
      skip.opType = 'SkipLayerNormalization';
      m.graph!.initializer.push(tensorProto('beta_l1', 1, [hidden], new Uint8Array(rng.normalArray(hidden, 0.5).buffer)));
      m.graph!.initializer.push(tensorProto('bias_l1', 1, [hidden], new Uint8Array(rng.normalArray(hidden, 0.5).buffer)));
      skip.input.push('beta_l1', 'bias_l1');
    });
    await bitIdentical(model);
    const direction = normalize(rng.normalArray(hidden));
    const result = await captureResiduals(model, [{ inputIds: [5, 6, 7, 8], interventions: { clamp: [{ layers: [0], direction, lower: 0.5, upper: 0.5 }] } }], { layers: [0] });
    const residual = result.residuals.get(0)![0]!;
    for (let p = 0; p < 4; p++) expect(dot(residual.subarray(p * hidden, (p + 1) * hidden), direction)).toBeCloseTo(0.5, 4);
  });
});

describe('the instrumented-graph cache', () => {
  it('reuses a graph for the same source and layout, and builds anew when either changes or a build was left unfinished', () => {
    const cacheDir = tempDir('instrument-cache');
    const first = tinyModel('llama', 'optimum', 'fp32');
    const other = tinyModel('llama', 'optimum', 'fp32', 8);
    const layout = { capture: [1], steer: [0], clamp: [] };
    const options = { hiddenSize: 64, numLayers: 3, cacheDir };
    const built = loadInstrumentedGraph(first.onnxFile, layout, options);
    expect(built.built).toBe(true);
    const builtAt = fs.statSync(built.file).mtimeMs;

    const again = loadInstrumentedGraph(first.onnxFile, { capture: [1], steer: [0], clamp: [] }, options);
    expect(again).toMatchObject({ built: false, file: built.file });
    expect(fs.statSync(again.file).mtimeMs).toBe(builtAt);

    const otherLayout = loadInstrumentedGraph(first.onnxFile, { capture: [1, 2], steer: [0], clamp: [] }, options);
    expect(otherLayout.built).toBe(true);
    expect(otherLayout.file).not.toBe(built.file);

    const otherGraph = loadInstrumentedGraph(other.onnxFile, layout, options);
    expect(otherGraph.built).toBe(true);
    expect(otherGraph.file).not.toBe(built.file);

    // A crash between writing the graph and its sidecar leaves a graph that is not trusted.
    fs.rmSync(`${built.file}.json`);
    expect(loadInstrumentedGraph(first.onnxFile, layout, options)).toMatchObject({ built: true, file: built.file });
    expect(fs.readdirSync(path.join(cacheDir, 'instrumented')).filter((f) => f.endsWith('.onnx'))).toHaveLength(3);
  });
});
