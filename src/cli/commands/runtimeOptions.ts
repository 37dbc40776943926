import { Command } from 'commander';
import { UserError } from '../../errors.js';
import { parseDevice, positionModes, promptMessages, SteerableModel, type ChatMessage, type InterventionSpec, type PositionMode } from '../../runtime/index.js';
import { norm, normalize, type ModelShape } from '../../vectors/index.js';
import { parseCap, parseSteer, readConversations, readInputIds, VectorFiles } from '../options.js';

/** Flags every command that runs a model shares. */
export function addModelOptions(command: Command): Command {
  return command
    .option('--device <device>', 'cpu or cuda', 'cpu')
    .option('--dtype <dtype>', 'which graph file of the model folder (fp32, fp16, q4, q4f16, …)')
    .option('--models-dir <dir>', 'where models live', 'models');
}

export interface ModelFlags {
  device: string;
  dtype?: string;
  modelsDir: string;
}

/** Opens a model; with `tokenizerOptional`, a folder without tokenizer files still opens (for token-id input). */
export async function openModel(location: string, flags: ModelFlags, tokenizerOptional = false): Promise<SteerableModel> {
  return SteerableModel.load(location, { device: parseDevice(flags.device), dtype: flags.dtype, modelsDir: flags.modelsDir, withoutTokenizer: tokenizerOptional ? 'if-missing' : false });
}

/** Flags for giving prompts: text, a messages file, or raw token ids. */
export function addPromptOptions(command: Command): Command {
  return command
    .option('--prompt <text>', 'one user prompt')
    .option('--messages <file>', 'JSON conversation, JSON array of conversations, or JSONL (one per line)')
    .option('--input-ids <file>', 'JSON array of token-id arrays (one row each; the tool pads)')
    .option('--system <text>', 'system prompt for --prompt')
    .option('--no-chat', 'send --prompt as raw text instead of through the chat template');
}

export interface PromptFlags {
  prompt?: string;
  messages?: string;
  inputIds?: string;
  system?: string;
  chat: boolean;
}

/**
 * Token ids for each row from whichever prompt flag was given, and where each row's prompt ends: a conversation that
 * ends with an assistant turn is encoded as it stands (no generation prompt), its last turn being the response.
 */
export function promptRows(model: SteerableModel, flags: PromptFlags): { inputIds: number[][]; promptLengths: (number | undefined)[]; conversations?: ChatMessage[][] } {
  const given = [flags.prompt !== undefined, flags.messages !== undefined, flags.inputIds !== undefined].filter(Boolean).length;
  if (given !== 1) throw new UserError('give exactly one of --prompt, --messages or --input-ids');
  if (flags.system !== undefined && flags.prompt === undefined) {
    throw new UserError(`--system goes with --prompt; put the system turn in the ${flags.messages !== undefined ? '--messages file' : 'token ids'} instead`);
  }
  if (flags.inputIds) {
    const inputIds = readInputIds(flags.inputIds, model.folder.vocabSize);
    return { inputIds, promptLengths: inputIds.map(() => undefined) };
  }
  if (flags.messages) {
    const conversations = readConversations(flags.messages);
    const encoded = conversations.map((c) => {
      if (c.at(-1)!.role !== 'assistant') return { ids: model.tokenizer.encodeChat(c), promptLength: undefined };
      return { ids: model.tokenizer.encodeChat(c, false), promptLength: model.tokenizer.encodeChat(c.slice(0, -1), true).length };
    });
    return { inputIds: encoded.map((e) => e.ids), promptLengths: encoded.map((e) => e.promptLength), conversations };
  }
  if (!flags.chat) {
    if (flags.system) throw new UserError('--system needs the chat template; drop --no-chat');
    return { inputIds: [model.tokenizer.encode(flags.prompt!)], promptLengths: [undefined] };
  }
  const conversation = promptMessages(flags.prompt!, flags.system);
  return { inputIds: [model.tokenizer.encodeChat(conversation)], promptLengths: [undefined], conversations: [conversation] };
}

/** Flags for steering and capping. */
export function addInterventionOptions(command: Command): Command {
  const collect = (value: string, previous: string[] = []) => [...previous, value];
  return command
    .option('--steer <FILE:LAYER:COEF>', 'add COEF × the vector (row LAYER of a per-layer file) after block LAYER; repeatable', collect)
    .option('--positions <mode>', `where steering applies: ${positionModes.join(' | ')}`, 'all')
    .option('--units <units>', 'steering coefficients multiply the raw vector (raw, as Persona Vectors does) or the vector scaled to length 1 (unit)', 'raw')
    .option('--cap <FILE:LAYERS:floor|ceiling:TAU>', 'clamp the projection on the (unit) vector at each layer of LAYERS (L or A-B); repeatable', collect)
    .option('--allow-other-model', 'use vector files whose metadata names another model of the same shape');
}

export interface InterventionFlags {
  steer?: string[];
  positions: string;
  units: string;
  cap?: string[];
  allowOtherModel?: boolean;
}

/** What a vector file is checked against before use with this model. */
export function vectorShapeFor(model: SteerableModel, flags: { allowOtherModel?: boolean }): ModelShape {
  return { hiddenSize: model.hiddenSize, numLayers: model.numLayers, modelId: model.folder.modelId, allowOtherModel: Boolean(flags.allowOtherModel) };
}

/** The vector files a command names, read against this model. */
export function vectorFilesFor(model: SteerableModel, flags: { allowOtherModel?: boolean }): VectorFiles {
  return new VectorFiles(vectorShapeFor(model, flags));
}

export function interventionsFromFlags(files: VectorFiles, flags: InterventionFlags): InterventionSpec {
  if (!(positionModes as readonly string[]).includes(flags.positions)) throw new UserError(`--positions must be one of ${positionModes.join(', ')}, got ${flags.positions}`);
  if (flags.units !== 'raw' && flags.units !== 'unit') throw new UserError(`--units must be raw or unit, got ${flags.units}`);
  return {
    steer: (flags.steer ?? []).map((value) => {
      const spec = parseSteer(value, files, flags.positions as PositionMode);
      if (flags.units === 'raw') return spec;
      if (norm(spec.vector) === 0) throw new UserError(`the steering vector for layer ${spec.layer} is zero: it has no direction to scale to unit length`);
      return { ...spec, vector: normalize(spec.vector) };
    }),
    clamp: (flags.cap ?? []).flatMap((value) => parseCap(value, files)),
  };
}
