import * as fs from 'node:fs';
import * as path from 'node:path';
import { layoutKey, normalizeLayout, type InstrumentationLayout } from '../instrument/index.js';
import { resolveModelFolder, type ModelFolder } from './modelFolder.js';
import { DecoderSession, type SessionOptions } from './session.js';
import { ChatTokenizer } from './tokenizer.js';

export interface LoadModelOptions extends SessionOptions {
  dtype?: string;
  modelsDir?: string;
  /** Skip loading the tokenizer (for token-id-only work); `'if-missing'` loads it when the folder has one. */
  withoutTokenizer?: boolean | 'if-missing';
}

/**
 * A model folder ready to run: its tokenizer, and one onnxruntime session per instrumentation layout, opened on
 * first use and kept, so alternating runs with the same interventions do not rebuild anything.
 */
export class SteerableModel {
  private readonly sessions = new Map<string, Promise<DecoderSession>>();

  private constructor(
    readonly folder: ModelFolder,
    private readonly tokenizerInstance: ChatTokenizer | undefined,
    private readonly options: SessionOptions,
  ) {}

  static async load(location: string, options: LoadModelOptions = {}): Promise<SteerableModel> {
    const folder = resolveModelFolder(location, { dtype: options.dtype, modelsDir: options.modelsDir });
    const skip = options.withoutTokenizer === true || (options.withoutTokenizer === 'if-missing' && !fs.existsSync(path.join(folder.dir, 'tokenizer.json')));
    const tokenizer = skip ? undefined : await ChatTokenizer.load(folder.dir);
    return new SteerableModel(folder, tokenizer, options);
  }

  get tokenizer(): ChatTokenizer {
    if (!this.tokenizerInstance) throw new Error('this model was loaded without its tokenizer');
    return this.tokenizerInstance;
  }

  get hasTokenizer(): boolean {
    return this.tokenizerInstance !== undefined;
  }

  get hiddenSize(): number {
    return this.folder.hiddenSize;
  }

  get numLayers(): number {
    return this.folder.numLayers;
  }

  /** The uninstrumented graph, as exported. */
  originalSession(): Promise<DecoderSession> {
    return this.cached('original', () => DecoderSession.open(this.folder, undefined, this.options));
  }

  /** The graph instrumented for `layout` (every run also gets last-position logit selection). */
  session(layout: Partial<InstrumentationLayout>): Promise<DecoderSession> {
    const normalized = normalizeLayout(layout, this.folder.numLayers);
    return this.cached(`layout:${layoutKey(normalized)}`, () => DecoderSession.open(this.folder, normalized, this.options));
  }

  private cached(key: string, open: () => Promise<DecoderSession>): Promise<DecoderSession> {
    let session = this.sessions.get(key);
    if (!session) {
      session = open();
      this.sessions.set(key, session);
      session.catch(() => this.sessions.delete(key));
    }
    return session;
  }

  async dispose(): Promise<void> {
    const sessions = await Promise.allSettled(this.sessions.values());
    this.sessions.clear();
    for (const result of sessions) if (result.status === 'fulfilled') await result.value.release();
  }
}

