import { Command } from 'commander';
import { UserError } from '../../errors.js';
import { parseDevice, positionModes, promptMessages, SteerableModel, type ChatMessage, type InterventionSpec, type PositionMode } from '../../runtime/index.js';
import { parseCap, parseSteer, readConversations, readInputIds } from '../options.js';

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

export async function openModel(location: string, flags: ModelFlags, withoutTokenizer = false): Promise<SteerableModel> {
  return SteerableModel.load(location, { device: parseDevice(flags.device), dtype: flags.dtype, modelsDir: flags.modelsDir, withoutTokenizer });
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

/** Token ids for each row from whichever prompt flag was given. */
export function promptRows(model: SteerableModel, flags: PromptFlags): { inputIds: number[][]; conversations?: ChatMessage[][] } {
  const given = [flags.prompt !== undefined, flags.messages !== undefined, flags.inputIds !== undefined].filter(Boolean).length;
  if (given !== 1) throw new UserError('give exactly one of --prompt, --messages or --input-ids');
  if (flags.inputIds) return { inputIds: readInputIds(flags.inputIds, model.folder.vocabSize) };
  if (flags.messages) {
    const conversations = readConversations(flags.messages);
    return { inputIds: conversations.map((c) => model.tokenizer.encodeChat(c)), conversations };
  }
  if (!flags.chat) {
    if (flags.system) throw new UserError('--system needs the chat template; drop --no-chat');
    return { inputIds: [model.tokenizer.encode(flags.prompt!)] };
  }
  const conversation = promptMessages(flags.prompt!, flags.system);
  return { inputIds: [model.tokenizer.encodeChat(conversation)], conversations: [conversation] };
}

/** Flags for steering and capping. */
export function addInterventionOptions(command: Command): Command {
  const collect = (value: string, previous: string[] = []) => [...previous, value];
  return command
    .option('--steer <FILE:LAYER:COEF>', 'add COEF × the vector (row LAYER of a per-layer file) after block LAYER; repeatable', collect)
    .option('--positions <mode>', `where steering applies: ${positionModes.join(' | ')}`, 'all')
    .option('--cap <FILE:LAYERS:floor|ceiling:TAU>', 'clamp the projection on the (unit) vector at each layer of LAYERS (L or A-B); repeatable', collect);
}

export interface InterventionFlags {
  steer?: string[];
  positions: string;
  cap?: string[];
}

export function interventionsFromFlags(model: SteerableModel, flags: InterventionFlags): InterventionSpec {
  if (!(positionModes as readonly string[]).includes(flags.positions)) throw new UserError(`--positions must be one of ${positionModes.join(', ')}, got ${flags.positions}`);
  const shape = { hiddenSize: model.hiddenSize, numLayers: model.numLayers };
  return {
    steer: (flags.steer ?? []).map((value) => parseSteer(value, shape, flags.positions as PositionMode)),
    clamp: (flags.cap ?? []).flatMap((value) => parseCap(value, shape)),
  };
}
