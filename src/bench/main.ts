import * as fs from 'node:fs';
import { writeFileAtomic } from '../io/files.js';
import { capturePeakMemory, captureThroughput } from './captureBench.js';
import { decodeOverhead } from './decodeOverhead.js';
import { sweepBatching } from './sweepBatching.js';
import { machineDescription } from './harness.js';

/**
 * `npm run bench`: performance as ratios measured in one run (absolute times on a shared machine are noisy; ratios
 * are not), written to BENCHMARKS.md. `npm run bench -- decode` runs one section.
 */
async function main(): Promise<void> {
  const only = process.argv.slice(2);
  const wanted = (name: string) => only.length === 0 || only.includes(name);
  const log = (line: string) => process.stderr.write(`bench: ${line}\n`);
  const sections: string[] = [];
  if (wanted('decode')) {
    log('decode throughput, instrumented vs original (12 layers, hidden 512, vocab 32000)');
    const rows = await decodeOverhead({ log });
    const target = (variant: string) => (variant === 'one steered layer' ? '≥ 0.98' : variant.includes('clamps') || variant.includes('capture') ? '≥ 0.95' : '—');
    const verdict = (r: (typeof rows)[number]) => {
      const goal = target(r.variant);
      return goal === '—' ? '' : r.ratio >= Number(goal.slice(2)) ? ' ✓' : ' ✗';
    };
    sections.push(
      [
        '## Decode throughput: instrumented graph vs original',
        '',
        'Llama-shaped decoder built by the project (12 layers, hidden 512, 8 heads of 64, vocabulary 32000, fp32, Optimum',
        'style), CPU provider, default threads. A block is a prefill of 16-token prompts and 16 timed decode steps with the KV',
        'cache, feeds built every step as generation does. Each round runs the original graph, the instrumented graph with',
        'an empty layout and the variant back to back in rotating order; ratios are taken within a round, and the table',
        'gives medians over 21 rounds with the interquartile range of the ratio to the original. "original again" pits the',
        'original against itself: its spread is the noise floor of this shared machine.',
        '',
        '| batch | variant | tokens/s | original tokens/s | ratio to original (median) | IQR | ratio to empty layout | target |',
        '|---|---|---|---|---|---|---|---|',
        ...rows.map(
          (r) =>
            `| ${r.batch} | ${r.variant} | ${r.tokensPerSecond.toFixed(1)} | ${r.originalTokensPerSecond.toFixed(1)} | **${r.ratio.toFixed(3)}** | ${r.ratioQuartiles[0].toFixed(3)}–${r.ratioQuartiles[1].toFixed(3)} | ${r.ratioToEmptyLayout.toFixed(3)} | ${target(r.variant)}${verdict(r)} |`,
        ),
        '',
        'Every instrumented graph also gathers the logits of one position per row (`logits.selected`), so prefill copies',
        '[batch, vocab] instead of [batch, sequence, vocab]. A side effect shows at batch 8: the lm_head output then has a',
        'consumer inside the graph, and onnxruntime serves it from its planned memory instead of a fresh output buffer each',
        'step, which makes even the empty layout faster than the exported graph (an exported graph with an Identity added',
        'on `logits` shows the same gain). The last column divides that out and is the interventions\' own cost.',
      ].join('\n'),
    );
  }
  if (wanted('capture')) {
    log('teacher-forced capture throughput and peak memory');
    const throughput = await captureThroughput({ log });
    const memory = capturePeakMemory([100, 1000], log);
    const growth = memory[1]!.peakBytes / memory[0]!.peakBytes;
    sections.push(
      [
        '## Teacher-forced capture (extraction)',
        '',
        'Same model. Capture = every layer captured from prompt + response (64 + 64 tokens, batches of 8) with the three',
        'poolings (response mean, prompt mean, last prompt token) accumulated per sample, as `persona extract` does; forward',
        '= the original graph over the same rows (logits and all). 32 rows per round, alternating, 9 rounds, medians.',
        'Capture graphs are pruned to what the residuals need (no output head, no cache outputs), which is why capture',
        'runs faster than a plain forward pass.',
        '',
        '| measure | value | target |',
        '|---|---|---|',
        `| capture tokens/s | ${throughput.captureTokensPerSecond.toFixed(0)} | |`,
        `| forward tokens/s | ${throughput.forwardTokensPerSecond.toFixed(0)} | |`,
        `| ratio capture / forward | **${throughput.ratio.toFixed(3)}** | ≥ 0.9 ${throughput.ratio >= 0.9 ? '✓' : '✗'} |`,
        ...memory.map((m) => `| peak RSS, ${m.samples} samples | ${(m.peakBytes / 2 ** 20).toFixed(0)} MiB | |`),
        `| peak RSS ratio 1000 / 100 samples | **${growth.toFixed(3)}** | ≤ 1.10 ${growth <= 1.1 ? '✓' : '✗'} |`,
        '',
        'Peak memory is measured in a fresh process per sample count: the running means are',
        '[layers × hidden] float64 sums per pooling and polarity, so memory does not grow with the number of samples.',
      ].join('\n'),
    );
  }
  if (wanted('sweep')) {
    log('sweep batching: 8 coefficient cells × 16 prompts');
    const rows = await sweepBatching({ log });
    sections.push(
      [
        '## Sweep batching: cells sharing batches vs one run per cell',
        '',
        '8 coefficient cells × 16 prompts × 16 new tokens (sampling, per-row seeds, the steered direction monitored), as',
        '`persona sweep` generates them: rows of every cell share batches of 64, each row carrying its own coefficient',
        'through the per-row steering inputs. Baselines: one generation run per cell (its 16 prompts batched, what a',
        'runner without per-row steering must do) and one prompt at a time. Best of 3 alternating rounds per arm.',
        '',
        '| model | baseline | shared batches (s) | baseline (s) | speedup | target |',
        '|---|---|---|---|---|---|',
        ...rows.map((r) => `| ${r.model} | ${r.baseline} | ${r.batchedSeconds.toFixed(2)} | ${r.baselineSeconds.toFixed(2)} | **${r.speedup.toFixed(2)}×** | ≥ 3× ${r.speedup >= 3 ? '✓' : '✗'} |`),
        '',
        'On this 2-core CPU a forward pass is compute-bound by batch 16 for the 12-layer model (tokens/s: 62 at batch 1,',
        '231 at 8, 297 at 16, 339 at 128), so batching cells together gains little over batching each cell\'s 16 prompts;',
        'the gain over unbatched runs, and on accelerators, where batch 16 is far from saturating, is what shared batches',
        'buy.',
      ].join('\n'),
    );
  }
  const header = ['# Benchmarks', '', `Measured with \`npm run bench\` on ${machineDescription()}, ${new Date().toISOString().slice(0, 10)}.`, ''].join('\n');
  const file = 'BENCHMARKS.md';
  const previous = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
  const kept = previous
    .split(/^(?=## )/m)
    .filter((block) => block.startsWith('## ') && !sections.some((s) => s.split('\n')[0] === block.split('\n')[0]));
  writeFileAtomic(file, `${header}\n${[...sections, ...kept.map((b) => b.trimEnd())].join('\n\n')}\n`);
  log(`wrote ${file}`);
}

main().catch((error: unknown) => {
  process.stderr.write(`bench: ${(error as Error).stack ?? String(error)}\n`);
  process.exitCode = 1;
});
