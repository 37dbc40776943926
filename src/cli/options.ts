import * as fs from 'node:fs';
import { UserError } from '../errors.js';
import { readJsonFile } from '../io/files.js';
import type { ChatMessage } from '../runtime/index.js';
import { readVectorFile, vectorAtLayer, type ModelShape, type VectorFile } from '../vectors/index.js';
import type { ClampSpec, MonitorSpec, SteerSpec } from '../runtime/index.js';

/** Option values commander collects into arrays for repeatable flags. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export function parseNumber(value: string, what: string): number {
  const number = Number(value);
  if (value.trim() === '' || !Number.isFinite(number)) throw new UserError(`${what} must be a number, got ${JSON.stringify(value)}`);
  return number;
}

export function parseInteger(value: string, what: string, minimum = 0): number {
  const number = parseNumber(value, what);
  if (!Number.isInteger(number) || number < minimum) throw new UserError(`${what} must be an integer ≥ ${minimum}, got ${value}`);
  return number;
}

/** `L`, `A-B`, `L,M,…` or `all`. */
export function parseLayers(value: string, numLayers: number): number[] {
  const text = value.trim();
  const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
  let layers: number[];
  if (text === 'all') layers = range(0, numLayers - 1);
  else if (/^\d+-\d+$/.test(text)) {
    const [a, b] = text.split('-').map(Number) as [number, number];
    if (a > b) throw new UserError(`layer range ${text} is backwards`);
    layers = range(a, b);
  } else if (/^\d+(,\d+)*$/.test(text)) layers = text.split(',').map(Number);
  else throw new UserError(`layers must be all, L, A-B or L,M,…; got ${JSON.stringify(value)}`);
  for (const layer of layers) {
    if (layer >= numLayers) throw new UserError(`layer ${layer} is out of range: the model has layers 0-${numLayers - 1}`);
  }
  return [...new Set(layers)];
}

/** Splits `FILE:A:B…` from the right, so file paths may contain colons. */
function splitFromRight(value: string, fields: number, usage: string): [string, ...string[]] {
  const parts = value.split(':');
  if (parts.length < fields + 1 || parts.slice(0, parts.length - fields).join(':') === '') throw new UserError(`expected ${usage}, got ${JSON.stringify(value)}`);
  return [parts.slice(0, parts.length - fields).join(':'), ...parts.slice(parts.length - fields)];
}

/** The vector files one command names, each read once and checked against the model it will be used with. */
export class VectorFiles {
  private readonly loaded = new Map<string, VectorFile>();

  constructor(readonly model: ModelShape) {}

  read(file: string): VectorFile {
    let vectors = this.loaded.get(file);
    if (!vectors) {
      vectors = readVectorFile(file, this.model);
      this.loaded.set(file, vectors);
    }
    return vectors;
  }
}

/** `--steer FILE:LAYER:COEF`. */
export function parseSteer(value: string, files: VectorFiles, positions: SteerSpec['positions']): SteerSpec {
  const [file, layerText, coefficientText] = splitFromRight(value, 2, 'FILE:LAYER:COEF');
  const layer = parseInteger(layerText!, 'steering layer');
  const coefficient = parseNumber(coefficientText!, 'steering coefficient');
  return { layer, coefficient, positions, vector: vectorAtLayer(files.read(file), layer, files.model.numLayers) };
}

/** `--cap FILE:LAYERS:floor|ceiling:TAU`: one clamp per layer, each with that layer's direction. */
export function parseCap(value: string, files: VectorFiles): ClampSpec[] {
  const [file, layersText, mode, tauText] = splitFromRight(value, 3, 'FILE:LAYERS:floor|ceiling:TAU');
  if (mode !== 'floor' && mode !== 'ceiling') throw new UserError(`cap mode must be floor or ceiling, got ${JSON.stringify(mode)}`);
  const tau = parseNumber(tauText!, 'cap threshold');
  const vectors = files.read(file);
  return parseLayers(layersText!, files.model.numLayers).map((layer) => ({
    layers: [layer],
    direction: vectorAtLayer(vectors, layer, files.model.numLayers),
    ...(mode === 'floor' ? { lower: tau } : { upper: tau }),
  }));
}

/** `--monitor FILE:LAYER`. */
export function parseMonitor(value: string, files: VectorFiles): MonitorSpec {
  const [file, layerText] = splitFromRight(value, 1, 'FILE:LAYER');
  const layer = parseInteger(layerText!, 'monitor layer');
  const name = `${file.split('/').pop()!.replace(/\.safetensors$/, '')}@${layer}`;
  return { name, layer, direction: vectorAtLayer(files.read(file), layer, files.model.numLayers) };
}

function isMessage(value: unknown): value is ChatMessage {
  const m = value as ChatMessage;
  return typeof m === 'object' && m !== null && ['system', 'user', 'assistant'].includes(m.role) && typeof m.content === 'string';
}

/**
 * `--messages FILE`: a JSON conversation (array of {role, content}), a JSON array of conversations, or JSONL with one
 * conversation per line (an array or {messages: [...]}).
 */
export function readConversations(file: string): ChatMessage[][] {
  if (!fs.existsSync(file)) throw new UserError(`messages file not found: ${file}`);
  const text = fs.readFileSync(file, 'utf8');
  let items: unknown[];
  if (file.endsWith('.jsonl')) {
    items = text.split('\n').filter((line) => line.trim()).map((line, i) => {
      try {
        return JSON.parse(line) as unknown;
      } catch (error) {
        throw new UserError(`${file} line ${i + 1} is not valid JSON: ${(error as Error).message}`);
      }
    });
  } else {
    const parsed = readJsonFile<unknown>(file, 'messages file');
    items = Array.isArray(parsed) && parsed.every(isMessage) ? [parsed] : Array.isArray(parsed) ? parsed : [parsed];
  }
  return items.map((item, i) => {
    const messages = Array.isArray(item) ? item : (item as { messages?: unknown })?.messages;
    if (!Array.isArray(messages) || messages.length === 0 || !messages.every(isMessage)) {
      throw new UserError(`${file}: conversation ${i + 1} must be a non-empty array of {role: system|user|assistant, content: string}`);
    }
    return messages;
  });
}

/** `--input-ids FILE`: a JSON array of token-id arrays. */
export function readInputIds(file: string, vocabSize: number): number[][] {
  const parsed = readJsonFile<unknown>(file, 'input ids file');
  if (!Array.isArray(parsed) || parsed.length === 0 || !parsed.every((row) => Array.isArray(row) && row.length > 0)) {
    throw new UserError(`${file} must hold a JSON array of non-empty token-id arrays`);
  }
  return (parsed as unknown[][]).map((row, r) =>
    row.map((id) => {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= vocabSize) {
        throw new UserError(`${file}: row ${r} has token id ${JSON.stringify(id)}, outside the vocabulary (0-${vocabSize - 1})`);
      }
      return id;
    }),
  );
}
