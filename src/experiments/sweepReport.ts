import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors.js';
import { readJsonl } from '../io/jsonl.js';
import {
  layerCoefficientHeatmapFigure,
  projectionTrajectoryFigure,
  renderPng,
  traitVsCoefficientFigure,
  vectorNormsFigure,
  writeHtmlReport,
  type ReportFigure,
} from '../plots/index.js';
import type { SweepResultRow, SweepSummary } from './sweep.js';

/** A finished sweep's summary and rows, read from its output folder. */
export function readSweepResults(dir: string): { summary: SweepSummary; rows: SweepResultRow[] } {
  const summaryFile = path.join(dir, 'summary.json');
  if (!fs.existsSync(summaryFile)) throw new UserError(`${dir} has no summary.json: run persona sweep first`);
  return { summary: JSON.parse(fs.readFileSync(summaryFile, 'utf8')) as SweepSummary, rows: readJsonl<SweepResultRow>(path.join(dir, 'results.jsonl')) };
}

/** Mean projection at each generated-token index over the rows of each cell. */
export function meanTrajectory(rows: readonly SweepResultRow[]): number[] {
  const longest = Math.max(0, ...rows.map((r) => r.projections.length));
  return Array.from({ length: longest }, (_, k) => {
    const values = rows.map((r) => r.projections[k]).filter((v): v is number => v !== undefined);
    return values.reduce((a, b) => a + b, 0) / values.length;
  });
}

/** The sweep's figures: scores vs coefficient, layer × coefficient heatmaps, projection trajectories, vector norms. */
export function sweepFigures(summary: SweepSummary, rows: readonly SweepResultRow[]): ReportFigure[] {
  const figures: ReportFigure[] = [{ title: 'Trait score and coherence vs coefficient', figure: traitVsCoefficientFigure(summary.cells, { trait: summary.trait }) }];
  const groups = new Map<string, { vector: string; positions: string; clamp: string | undefined }>();
  for (const cell of summary.cells) groups.set(`${cell.vector}|${cell.positions}|${cell.clamp ?? ''}`, { vector: cell.vector, positions: cell.positions, clamp: cell.clamp });
  for (const group of groups.values()) {
    const label = `${group.vector}, positions ${group.positions}${group.clamp ? `, ${group.clamp}` : ''}`;
    figures.push({
      title: `Trait score by layer and coefficient (${label})`,
      figure: layerCoefficientHeatmapFigure(summary.cells, { metric: 'trait', vector: group.vector, positions: group.positions, clamp: group.clamp ?? null, trait: summary.trait }),
    });
    const best = summary.best.find((b) => b.vector === group.vector && b.positions === group.positions && b.clamp === (group.clamp ?? 'none'));
    const layer = best?.layer ?? summary.cells.find((c) => c.vector === group.vector)!.layer;
    const series = summary.cells
      .filter((c) => c.vector === group.vector && c.positions === group.positions && c.clamp === group.clamp && c.layer === layer)
      .map((c) => ({ label: `c=${c.coefficient}`, values: meanTrajectory(rows.filter((r) => r.cell === c.id)) }));
    figures.push({
      title: `Projection on the steered direction per generated token (${label}, layer ${layer})`,
      figure: projectionTrajectoryFigure(series, { title: `Mean projection on ${group.vector} at layer ${layer}` }),
    });
  }
  figures.push({ title: 'Vector norm per layer', figure: vectorNormsFigure(summary.vectors.map((v) => ({ label: v.name, norms: v.norms }))) });
  return figures;
}

export interface SweepReportFiles {
  html: string;
  pngs: string[];
}

/** Writes report.html (plotly inlined, works offline) and, unless `png` is false, one PNG per figure under plots/. */
export async function writeSweepReport(dir: string, options: { png?: boolean } = {}): Promise<SweepReportFiles> {
  const { summary, rows } = readSweepResults(dir);
  const figures = sweepFigures(summary, rows);
  const html = path.join(dir, 'report.html');
  writeHtmlReport(html, figures, {
    title: `Sweep ${summary.name}`,
    intro: `Model ${summary.model}, trait ${summary.trait}, judge ${summary.judge}; ${rows.length} generations in ${summary.cells.length} cells.`,
    tables: [
      {
        title: 'Best layer per vector',
        columns: ['vector', 'positions', 'clamp', 'coefficient', 'layer', 'trait', 'coherence'],
        rows: summary.best.map((b) => [b.vector, b.positions, b.clamp, b.coefficient, b.layer ?? '–', b.traitScore?.toFixed(1) ?? '–', b.coherence?.toFixed(1) ?? '–']),
      },
    ],
  });
  const pngs = options.png === false ? [] : await renderPng(figures, path.join(dir, 'plots'));
  return { html, pngs };
}
