import { Command } from 'commander';
import { isUserError } from '../errors.js';
import { captureCommand } from './commands/capture.js';
import { demoCommand } from './commands/demo.js';
import { extractCommand } from './commands/extract.js';
import { projectCommand } from './commands/project.js';
import { plotCommand, sweepCommand } from './commands/sweep.js';
import { traitsCommand } from './commands/traits.js';
import { generateCommand } from './commands/generate.js';
import { modelsCommand } from './commands/models.js';

export function buildProgram(): Command {
  const program = new Command('persona')
    .description('persona-steer: capture, steer and clamp the residual stream of ONNX decoder LLMs')
    .version('0.1.0');
  program.addCommand(demoCommand());
  program.addCommand(modelsCommand());
  program.addCommand(generateCommand());
  program.addCommand(captureCommand());
  program.addCommand(extractCommand());
  program.addCommand(projectCommand());
  program.addCommand(sweepCommand());
  program.addCommand(plotCommand());
  program.addCommand(traitsCommand());
  oneLineParseErrors(program);
  return program;
}

/** Commander's own errors (unknown option, missing argument) in the same one-line form as every other error. */
function oneLineParseErrors(command: Command): void {
  command.configureOutput({
    outputError: (message, write) => write(`persona: ${message.trim().replace(/\s*\n\s*/g, ' ')} (see persona ${command.name() === 'persona' ? '' : `${commandPath(command)} `}--help)\n`),
  });
  for (const sub of command.commands) oneLineParseErrors(sub);
}

function commandPath(command: Command): string {
  const names: string[] = [];
  for (let at: Command | null = command; at && at.parent; at = at.parent) names.unshift(at.name());
  return names.join(' ');
}

/** Runs the CLI: user errors become one line on stderr and exit code 1; bugs keep their stack under PERSONA_DEBUG. */
export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (error) {
    if (isUserError(error)) {
      process.stderr.write(`persona: error: ${error.message}\n`);
    } else if (process.env.PERSONA_DEBUG) {
      process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
    } else {
      process.stderr.write(`persona: error: ${(error as Error).message?.split('\n')[0] ?? String(error)} (set PERSONA_DEBUG=1 for details)\n`);
    }
    process.exitCode = 1;
  }
}
