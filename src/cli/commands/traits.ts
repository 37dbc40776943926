import { Command } from 'commander';
import { defaultTraitsDir, generateTraitFiles, listTraits, loadTrait } from '../../experiments/traits.js';
import { parseClientSpec } from '../../judges/index.js';
import { parseNumber } from '../options.js';
import { emit } from '../output.js';

export function traitsCommand(): Command {
  const traits = new Command('traits').description('list, show and write trait files (Persona Vectors schema)');
  traits
    .command('list')
    .description('traits available under traits/')
    .option('--traits-dir <dir>', 'trait folder', defaultTraitsDir)
    .option('--json', 'machine-readable output')
    .addHelpText('after', `
Examples:
  $ persona traits list
  $ persona traits list --traits-dir my-traits --json`)
    .action((flags: { traitsDir: string; json?: boolean }) => {
      const names = listTraits(flags.traitsDir);
      emit(Boolean(flags.json), names, () => names.join('\n'));
    });
  traits
    .command('show <trait>')
    .description('a trait\'s instruction pairs, question counts and judge prompt')
    .option('--json', 'machine-readable output')
    .addHelpText('after', `
Examples:
  $ persona traits show evil
  $ persona traits show traits/extract/humorous.json --json`)
    .action((name: string, flags: { json?: boolean }) => {
      const trait = loadTrait(name);
      emit(Boolean(flags.json), trait, () =>
        [
          `${trait.name}: ${trait.instructions.length} instruction pairs, ${trait.extractQuestions.length} extraction and ${trait.evalQuestions.length} evaluation questions`,
          ...trait.instructions.map((pair, i) => `  ${i + 1}. + ${pair.pos}\n     − ${pair.neg}`),
          `files: ${trait.files.extract}, ${trait.files.eval}`,
        ].join('\n'),
      );
    });
  traits
    .command('new <name>')
    .description('ask an LLM to write a new trait (5 pos/neg pairs, 20 + 20 questions, judge prompt) and validate it')
    .requiredOption('--description <text>', 'what the trait is')
    .requiredOption('--llm <spec>', 'openai:<model>[@<base-url>] or local:<model folder>')
    .option('--traits-dir <dir>', 'trait folder', defaultTraitsDir)
    .option('--overwrite', 'replace existing files')
    .option('--timeout <seconds>', 'how long to wait for the reply (a whole trait file is a long answer)', '300')
    .option('--json', 'machine-readable output')
    .addHelpText('after', `
Examples:
  $ persona traits new stoic --description "calm, unmoved by emotion, focused on what can be controlled" --llm openai:gpt-4.1
  $ persona traits new pedantic --description "corrects small errors, insists on precise wording" --llm openai:qwen2.5-72b@http://127.0.0.1:8000/v1`)
    .action(async (name: string, flags: { description: string; llm: string; traitsDir: string; overwrite?: boolean; timeout: string; json?: boolean }) => {
      const client = parseClientSpec(flags.llm, { openai: { timeoutMs: parseNumber(flags.timeout, '--timeout') * 1000 } });
      try {
        const trait = await generateTraitFiles({ name, description: flags.description, client, traitsDir: flags.traitsDir, overwrite: flags.overwrite });
        emit(Boolean(flags.json), trait, () => `wrote ${trait.files.extract} and ${trait.files.eval}`);
      } finally {
        await client.dispose?.();
      }
    });
  return traits;
}
