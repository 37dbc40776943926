import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildPlantedModel, type PlantedModel } from '../../src/demo/index.js';
import { loadTrait, type TraitDefinition } from '../../src/experiments/traits.js';
import { tempDir } from './models.js';

/** The planted demo model, built once per test file into a temporary folder. */
export async function plantedModel(): Promise<PlantedModel> {
  return buildPlantedModel(path.join(tempDir('planted'), 'planted-cheerful'));
}

/** The cheerful trait cut down to a few questions per file, so a full extraction takes seconds. */
export function smallCheerfulTrait(questions = 4): TraitDefinition {
  const full = loadTrait('cheerful');
  const dir = tempDir('trait');
  const write = (folder: string, list: string[]) => {
    fs.mkdirSync(path.join(dir, folder), { recursive: true });
    const file = path.join(dir, folder, 'cheerful.json');
    fs.writeFileSync(file, JSON.stringify({ instruction: full.instructions, questions: list.slice(0, questions), eval_prompt: full.evalPrompt }));
    return file;
  };
  return loadTrait({ extract: write('extract', full.extractQuestions), eval: write('eval', full.evalQuestions) });
}
