import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.js';
import { tempDir } from './helpers/models.js';
import { optionalTool } from './helpers/tools.js';

/**
 * The notebooks in notebooks/ run headless on the Deno Jupyter kernel against a fresh demo model, its vectors and a
 * small sweep, and show plotly figures. Needs Jupyter (Debian: jupyter-nbconvert python3-nbclient jupyter-client
 * python3-ipykernel) and the npm-installed deno; skips without them.
 */

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const notebooksDir = path.join(root, 'notebooks');
const deno = path.join(root, 'node_modules', '.bin', 'deno');
const notebooks = fs.readdirSync(notebooksDir).filter((name) => name.endsWith('.ipynb')).sort();
const PLOTLY = 'application/vnd.plotly.v1+json';

interface NotebookOutput {
  output_type: string;
  data?: Record<string, unknown>;
  ename?: string;
  evalue?: string;
}
interface NotebookCell {
  cell_type: string;
  id?: string;
  source: string | string[];
  execution_count?: number | null;
  outputs?: NotebookOutput[];
}
interface Notebook {
  cells: NotebookCell[];
  metadata: { kernelspec?: { name?: string; display_name?: string; language?: string } };
}

function readNotebook(file: string): Notebook {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as Notebook;
}

function missingTools(): string | undefined {
  const missing: string[] = [];
  const jupyter = spawnSync('jupyter', ['nbconvert', '--version'], { encoding: 'utf8' });
  if (jupyter.error || jupyter.status !== 0) missing.push('jupyter nbconvert (apt-get install jupyter-nbconvert python3-nbclient jupyter-client python3-ipykernel)');
  if (!fs.existsSync(deno)) missing.push('node_modules/.bin/deno (npm install)');
  return missing.length ? missing.join(' and ') : undefined;
}
const missing = missingTools();
optionalTool(missing === undefined, missing ?? '');

function run(command: string, args: string[], options: { cwd: string; env: Record<string, string>; timeoutMs: number }): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: { ...process.env, ...options.env } });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

describe('committed notebooks', () => {
  it('have their outputs cleared and name the repo-local Deno kernelspec', () => {
    const spec = JSON.parse(fs.readFileSync(path.join(notebooksDir, 'kernels', 'deno', 'kernel.json'), 'utf8')) as { argv: string[]; display_name: string; language: string };
    expect(spec.argv).toEqual(['deno', 'jupyter', '--kernel', '--conn', '{connection_file}']);
    expect(spec.language).toBe('typescript');
    expect(notebooks.length).toBeGreaterThanOrEqual(2);
    for (const name of notebooks) {
      const notebook = readNotebook(path.join(notebooksDir, name));
      expect(notebook.metadata.kernelspec, name).toMatchObject({ name: 'deno', display_name: spec.display_name, language: 'typescript' });
      for (const cell of notebook.cells.filter((c) => c.cell_type === 'code')) {
        expect({ notebook: name, cell: cell.id, outputs: cell.outputs, execution_count: cell.execution_count }).toEqual({ notebook: name, cell: cell.id, outputs: [], execution_count: null });
        // The library API, never the CLI.
        expect([cell.source].flat().join('')).not.toMatch(/bin\/persona|child_process|Deno\.Command/);
      }
    }
  });
});

describe.skipIf(missing !== undefined)(`notebooks executed headless on the Deno kernel${missing ? ` (skipped: needs ${missing})` : ''}`, () => {
  let dir: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    dir = tempDir('notebooks');
    const models = path.join(dir, 'models');
    const demo = await runCli(
      ['demo', '--models-dir', models, '--experiments-dir', path.join(dir, 'experiments'), '--vectors-dir', path.join(dir, 'vectors'), '--questions', '2', '--max-tokens', '16', '--json'],
      { cwd: dir, env: { HF_HUB_OFFLINE: '1' } },
    );
    expect(demo.code, demo.stderr).toBe(0);
    const vectorFile = (JSON.parse(demo.stdout) as { extraction: { vectorFile: string } }).extraction.vectorFile;
    const vectorsDir = path.dirname(vectorFile);

    // experiments/demo-sweep.yaml, smaller, with its models/ and vectors/ paths pointing into the temp folder.
    const spec = YAML.parse(fs.readFileSync(path.join(root, 'experiments', 'demo-sweep.yaml'), 'utf8')) as {
      model: string;
      judge: string;
      questions: { count: number };
      generation: { max_tokens: number };
      grid: { vectors: Record<string, { file: string }> };
    };
    const inTemp = (file: string) => path.join(models, path.relative('models', file));
    spec.model = inTemp(spec.model);
    spec.judge = spec.judge.replace(/^lexicon:(.*)$/, (_, file: string) => `lexicon:${inTemp(file)}`);
    spec.questions.count = 2;
    spec.generation.max_tokens = 16;
    for (const vector of Object.values(spec.grid.vectors)) vector.file = path.join(vectorsDir, path.basename(vector.file));
    const specFile = path.join(dir, 'demo-sweep.yaml');
    fs.writeFileSync(specFile, YAML.stringify(spec));
    const sweep = await runCli(['sweep', specFile, '--json'], { cwd: dir });
    expect(sweep.code, sweep.stderr).toBe(0);

    env = {
      JUPYTER_PATH: [notebooksDir, process.env.JUPYTER_PATH].filter(Boolean).join(path.delimiter),
      JUPYTER_RUNTIME_DIR: path.join(dir, 'jupyter-runtime'),
      PATH: [path.dirname(deno), process.env.PATH].filter(Boolean).join(path.delimiter),
      DENO_NO_UPDATE_CHECK: '1',
      PERSONA_SWEEP_DIR: path.join(dir, 'demo-sweep'),
      PERSONA_VECTORS_DIR: vectorsDir,
      PERSONA_MODELS_DIR: models,
    };
  });

  afterAll(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it.each(notebooks)('%s runs without errors and shows plotly figures', async (name) => {
    const out = path.join(dir, name.replace(/\.ipynb$/, '.executed.ipynb'));
    const result = await run('jupyter', ['nbconvert', '--to', 'notebook', '--execute', path.join(notebooksDir, name), '--output', out], { cwd: root, env, timeoutMs: 60_000 });
    expect(result.code, result.output).toBe(0);
    const executed = readNotebook(out);
    const code = executed.cells.filter((c) => c.cell_type === 'code');
    const outputs = code.flatMap((c) => c.outputs ?? []);
    expect(outputs.filter((o) => o.output_type === 'error').map((o) => `${o.ename}: ${o.evalue}`)).toEqual([]);
    for (const cell of code) expect(cell.execution_count, `cell ${cell.id} was not executed`).toEqual(expect.any(Number));
    const figures = outputs.filter((o) => o.output_type === 'display_data' && o.data?.[PLOTLY] !== undefined).map((o) => o.data![PLOTLY] as { data?: unknown[] });
    expect(figures.length, `${name} shows no ${PLOTLY} output`).toBeGreaterThan(0);
    for (const figure of figures) expect(figure.data?.length).toBeGreaterThan(0);
    // Every cell that shows a figure must have one in its output: a dropped display is a missing plot.
    for (const cell of code) {
      const source = Array.isArray(cell.source) ? cell.source.join('') : cell.source;
      if (!/await show\(/.test(source)) continue;
      const shown = (cell.outputs ?? []).filter((o) => o.output_type === 'display_data' && o.data?.[PLOTLY] !== undefined);
      expect(shown.length, `${name}: cell ${cell.id} shows no figure`).toBeGreaterThan(0);
    }
  }, 90_000);
});
