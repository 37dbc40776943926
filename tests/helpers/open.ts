import { afterAll } from 'vitest';
import { SteerableModel, type LoadModelOptions } from '../../src/runtime/index.js';

const opened: SteerableModel[] = [];

// Importing this helper registers the release of every model the test file opened.
afterAll(async () => {
  for (const model of opened.splice(0)) await model.dispose();
});

/** Loads a model (without its tokenizer unless asked) and releases it when the test file ends. */
export async function openModel(dir: string, options: LoadModelOptions = { withoutTokenizer: true }): Promise<SteerableModel> {
  const model = await SteerableModel.load(dir, options);
  opened.push(model);
  return model;
}
