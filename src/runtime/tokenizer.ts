import * as fs from 'node:fs';
import * as path from 'node:path';
import { AutoTokenizer, env, type PreTrainedTokenizer } from '@huggingface/transformers';
import { UserError } from '../errors.js';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

// Tokenizers are only ever read from model folders on disk.
env.allowRemoteModels = false;

/**
 * Tokenizer and chat template of a model folder, through transformers.js. Templates without a system role get the
 * system prompt prepended to the first user turn; Qwen3-style templates are rendered with thinking disabled.
 */
export class ChatTokenizer {
  private systemRoleSupported: boolean | undefined;

  private constructor(readonly tokenizer: PreTrainedTokenizer) {}

  static async load(dir: string): Promise<ChatTokenizer> {
    if (!fs.existsSync(path.join(dir, 'tokenizer.json'))) throw new UserError(`no tokenizer.json in ${dir}`);
    try {
      return new ChatTokenizer(await AutoTokenizer.from_pretrained(path.resolve(dir), { local_files_only: true }));
    } catch (error) {
      throw new UserError(`could not load the tokenizer in ${dir}: ${(error as Error).message.split('\n')[0]}`);
    }
  }

  get hasChatTemplate(): boolean {
    return Boolean((this.tokenizer as unknown as { chat_template?: unknown }).chat_template);
  }

  encode(text: string, addSpecialTokens = true): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: addSpecialTokens });
  }

  decode(ids: readonly number[], skipSpecialTokens = true): string {
    return this.tokenizer.decode([...ids], { skip_special_tokens: skipSpecialTokens });
  }

  private render(messages: readonly ChatMessage[], addGenerationPrompt: boolean): string {
    return this.tokenizer.apply_chat_template(messages as ChatMessage[], {
      tokenize: false,
      add_generation_prompt: addGenerationPrompt,
      enable_thinking: false,
    } as never) as unknown as string;
  }

  /** Whether the template renders a system message (Gemma's, for one, raises an error). */
  supportsSystemRole(): boolean {
    if (this.systemRoleSupported === undefined) {
      try {
        const marker = 'persona-steer-system-probe';
        this.systemRoleSupported = this.render([{ role: 'system', content: marker }, { role: 'user', content: 'x' }], true).includes(marker);
      } catch {
        this.systemRoleSupported = false;
      }
    }
    return this.systemRoleSupported;
  }

  /** The chat-templated prompt string. */
  formatChat(messages: readonly ChatMessage[], addGenerationPrompt = true): string {
    if (!this.hasChatTemplate) throw new UserError('the tokenizer has no chat template; use --no-chat to send raw text');
    let turns = [...messages];
    const system = turns[0]?.role === 'system' ? turns[0] : undefined;
    if (system && !this.supportsSystemRole()) {
      turns = turns.slice(1);
      const firstUser = turns.findIndex((m) => m.role === 'user');
      if (firstUser >= 0) turns[firstUser] = { role: 'user', content: system.content ? `${system.content}\n\n${turns[firstUser]!.content}` : turns[firstUser]!.content };
    }
    try {
      return this.render(turns, addGenerationPrompt);
    } catch (error) {
      throw new UserError(`the chat template could not render these messages: ${(error as Error).message.split('\n')[0]}`);
    }
  }

  /** Token ids of a chat prompt; the template already contains any special tokens it wants. */
  encodeChat(messages: readonly ChatMessage[], addGenerationPrompt = true): number[] {
    return this.encode(this.formatChat(messages, addGenerationPrompt), false);
  }
}

/** Messages for a single prompt with an optional system prompt (empty system prompts are left out). */
export function promptMessages(prompt: string, system?: string): ChatMessage[] {
  return system ? [{ role: 'system', content: system }, { role: 'user', content: prompt }] : [{ role: 'user', content: prompt }];
}
