/**
 * Figure builders: pure functions from plain typed input to plotly JSON. They never touch the DOM or the file system,
 * so the same figure serves HTML reports, PNG export and notebook display.
 */
import { UserError } from '../errors.js';
import type { CellSummary, Figure, IntervalEstimate } from './types.js';

/** D3 category10, plotly's own default trace colours. */
const CATEGORY_COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
/** Vectors (and clamp settings) share a layer's colour, so they are told apart by dash and marker instead. */
const VARIANT_DASHES = ['solid', 'dash', 'dot', 'dashdot', 'longdash', 'longdashdot'];
const VARIANT_SYMBOLS = ['circle', 'square', 'diamond', 'triangle-up', 'x', 'cross'];
/** Blue for opposed directions, white for orthogonal, red for aligned. */
const DIVERGING_SCALE = [
  [0, '#2166ac'],
  [0.25, '#92c5de'],
  [0.5, '#f7f7f7'],
  [0.75, '#f4a582'],
  [1, '#b2182b'],
];
const BOUND_COLOR = '#555555';
const JUDGE_SCALE = { min: 0, max: 100 };

type Metric = 'trait' | 'coherence';

/** The i-th of `count` series colours: the categorical palette while it lasts, evenly spread hues beyond it. */
function seriesColor(index: number, count: number): string {
  if (count <= CATEGORY_COLORS.length) return CATEGORY_COLORS[index % CATEGORY_COLORS.length]!;
  return `hsl(${Math.round((index * 360) / count)}, 65%, 45%)`;
}

/** A colour per distinct layer, assigned in ascending layer order, so the same set of layers always gets the same colours. */
export function layerColors(layers: Iterable<number>): Map<number, string> {
  const sorted = [...new Set(layers)].sort((a, b) => a - b);
  return new Map(sorted.map((layer, index) => [layer, seriesColor(index, sorted.length)]));
}

export interface TraitVsCoefficientOptions {
  title?: string;
  /** The trait's name, for axis labels ("evil score"); "trait" when omitted. */
  trait?: string;
}

/**
 * Mean trait score (left) and mean coherence (right) against the steering coefficient, one line per layer — and per
 * vector/clamp setting when the cells hold several, which then share the layer's colour and differ in dash and marker —
 * with 95% intervals as error bars. Cells with different `positions` values get one row of panels each, so lines that
 * steer different token positions are never drawn on the same axes.
 */
export function traitVsCoefficientFigure(cells: readonly CellSummary[], options: TraitVsCoefficientOptions = {}): Figure {
  if (cells.length === 0) throw new UserError('no sweep cells to plot');
  rejectDuplicateCells(cells);
  const traitLabel = `${options.trait ?? 'trait'} score`;
  const positionsValues = distinct(cells.map((cell) => cell.positions));
  const variants = distinct(cells.map(variantLabel));
  const colors = layerColors(cells.map((cell) => cell.layer));
  const layers = [...colors.keys()];
  const panels: { metric: Metric; label: string }[] = [
    { metric: 'trait', label: traitLabel },
    { metric: 'coherence', label: 'coherence' },
  ];
  // Room between rows for the panel headings of the row below.
  const rowGap = 0.12;
  const rowHeight = (1 - rowGap * (positionsValues.length - 1)) / positionsValues.length;
  const columnDomains = [
    [0, 0.44],
    [0.56, 1],
  ];

  const data: object[] = [];
  const layout: Record<string, unknown> = {
    ...baseLayout(options.title ?? `${capitalize(traitLabel)} and coherence vs steering coefficient`),
    height: 120 + 360 * positionsValues.length,
    legend: { title: { text: variants.length > 1 ? 'vector · layer' : 'layer' } },
  };
  const annotations: object[] = [];
  const inLegend = new Set<string>();

  positionsValues.forEach((positions, row) => {
    const top = 1 - row * (rowHeight + rowGap);
    const rowDomain = [top - rowHeight, top];
    panels.forEach(({ metric, label }, column) => {
      const subplot = row * panels.length + column;
      const suffix = subplot === 0 ? '' : String(subplot + 1);
      const columnDomain = columnDomains[column]!;
      // Rows share the coefficient axis; only the bottom row names it, so no title runs into the headings below.
      const xTitle = row === positionsValues.length - 1 ? 'steering coefficient' : '';
      layout[`xaxis${suffix}`] = { ...axis(xTitle), domain: columnDomain, anchor: `y${suffix}`, ...(subplot === 0 ? {} : { matches: 'x' }) };
      layout[`yaxis${suffix}`] = { ...axis(`mean ${label} (95% CI)`), domain: rowDomain, anchor: `x${suffix}` };
      const heading = positionsValues.length > 1 ? `${capitalize(label)} — positions: ${positions}` : capitalize(label);
      annotations.push(panelHeading(heading, (columnDomain[0]! + columnDomain[1]!) / 2, top));

      variants.forEach((variant, variantIndex) => {
        for (const layer of layers) {
          const points = cells
            .filter((cell) => cell.positions === positions && cell.layer === layer && variantLabel(cell) === variant)
            .sort((a, b) => a.coefficient - b.coefficient);
          if (points.length === 0) continue;
          const name = variants.length > 1 ? `${variant} · L${layer}` : `L${layer}`;
          const color = colors.get(layer)!;
          const estimates = points.map((cell) => cell[metric]);
          data.push({
            type: 'scatter',
            mode: 'lines+markers',
            name,
            legendgroup: name,
            showlegend: !inLegend.has(name),
            xaxis: `x${suffix}`,
            yaxis: `y${suffix}`,
            x: points.map((cell) => cell.coefficient),
            y: estimates.map((estimate) => estimate?.mean ?? null),
            error_y: {
              type: 'data',
              symmetric: false,
              array: estimates.map((estimate) => (estimate === null ? null : estimate.high - estimate.mean)),
              arrayminus: estimates.map((estimate) => (estimate === null ? null : estimate.mean - estimate.low)),
              color,
              thickness: 1.2,
              width: 4,
            },
            line: { color, width: 2, dash: VARIANT_DASHES[variantIndex % VARIANT_DASHES.length] },
            marker: { color, size: 7, symbol: VARIANT_SYMBOLS[variantIndex % VARIANT_SYMBOLS.length] },
            text: points.map((cell, index) => cellHoverText(name, cell, label, estimates[index] ?? null)),
            hovertemplate: '%{text}<extra></extra>',
          });
          inLegend.add(name);
        }
      });
    });
  });
  layout.annotations = annotations;
  return { data, layout };
}

export interface LayerCoefficientHeatmapOptions {
  metric: Metric;
  /** Which vector to show when the cells hold several. */
  vector?: string;
  /** Which positions value to show when the cells hold several. */
  positions?: string;
  /** Which clamp setting to show when the cells hold several; null selects the unclamped cells. */
  clamp?: string | null;
  title?: string;
  /** The trait's name, for the title and colour bar ("evil score"). */
  trait?: string;
}

/**
 * Mean trait score or coherence for every layer (rows, ascending upwards) × coefficient (columns, ascending) cell,
 * each cell annotated with its value. `z[i][j]` is the cell at `y[i]` (layer) and `x[j]` (coefficient); missing cells
 * are null and left blank. The colour range is the judge's 0–100 scale so heatmaps compare across runs.
 */
export function layerCoefficientHeatmapFigure(cells: readonly CellSummary[], options: LayerCoefficientHeatmapOptions): Figure {
  const selected = cells.filter(
    (cell) =>
      (options.vector === undefined || cell.vector === options.vector) &&
      (options.positions === undefined || cell.positions === options.positions) &&
      (options.clamp === undefined || (cell.clamp ?? null) === options.clamp),
  );
  if (selected.length === 0) throw new UserError(`no sweep cells match ${describeSelection(options) || 'the selection'}`);
  requireSingle(selected, 'vector', (cell) => cell.vector);
  requireSingle(selected, 'positions', (cell) => cell.positions);
  requireSingle(selected, 'clamp', (cell) => cell.clamp ?? 'none');
  rejectDuplicateCells(selected);

  const first = selected[0]!;
  const metricLabel = options.metric === 'trait' ? `${options.trait ?? 'trait'} score` : 'coherence';
  const layers = distinct(selected.map((cell) => cell.layer)).sort((a, b) => a - b);
  const coefficients = distinct(selected.map((cell) => cell.coefficient)).sort((a, b) => a - b);
  const byKey = new Map(selected.map((cell) => [`${cell.layer}|${cell.coefficient}`, cell]));
  const z = layers.map((layer) => coefficients.map((coefficient) => byKey.get(`${layer}|${coefficient}`)?.[options.metric]?.mean ?? null));
  const text = layers.map((layer) =>
    coefficients.map((coefficient) => {
      const cell = byKey.get(`${layer}|${coefficient}`);
      return cell === undefined ? `L${layer} · coefficient ${coefficient}<br>not run` : cellHoverText(`L${layer}`, cell, metricLabel, cell[options.metric]);
    }),
  );
  const subtitle = [first.vector, `positions ${first.positions}`, ...(first.clamp === undefined ? [] : [`clamp ${first.clamp}`])].join(' · ');
  return {
    data: [
      {
        type: 'heatmap',
        x: coefficients,
        y: layers,
        z,
        zmin: JUDGE_SCALE.min,
        zmax: JUDGE_SCALE.max,
        colorscale: 'Viridis',
        colorbar: { title: { text: `mean ${metricLabel}` } },
        texttemplate: '%{z:.1f}',
        text,
        hovertemplate: '%{text}<extra></extra>',
        hoverongaps: false,
        xgap: 1,
        ygap: 1,
      },
    ],
    layout: {
      ...baseLayout(options.title ?? `Mean ${metricLabel} by layer and coefficient — ${subtitle}`),
      height: Math.max(360, 160 + 36 * layers.length),
      xaxis: { ...axis('steering coefficient'), type: 'category', showgrid: false },
      yaxis: { ...axis('layer'), type: 'category', showgrid: false },
    },
  };
}

export interface ProjectionTrajectoryOptions {
  title?: string;
  /** x-axis title; the default counts generated tokens. */
  xLabel?: string;
  /** Horizontal reference lines, such as a clamp floor or ceiling. */
  bound?: { value: number; label: string }[];
}

/** Projection onto a vector at each generated token, one line per series, with dashed lines for the bounds. */
export function projectionTrajectoryFigure(series: readonly { label: string; values: readonly number[] }[], options: ProjectionTrajectoryOptions = {}): Figure {
  const lastToken = Math.max(1, ...series.map((entry) => entry.values.length - 1));
  const lines = series.map((entry, index) => ({
    type: 'scatter',
    mode: 'lines',
    name: entry.label,
    x: entry.values.map((_, token) => token),
    y: entry.values.map(finiteOrNull),
    line: { color: seriesColor(index, series.length), width: 2 },
    hovertemplate: 'token %{x}<br>projection %{y:.3f}',
  }));
  const bounds = (options.bound ?? []).map((bound) => ({
    type: 'scatter',
    mode: 'lines',
    name: bound.label,
    x: [0, lastToken],
    y: [bound.value, bound.value],
    line: { color: BOUND_COLOR, width: 1.5, dash: 'dash' },
    hovertemplate: 'value %{y:.3f}',
  }));
  return {
    data: [...lines, ...bounds],
    layout: {
      ...baseLayout(options.title ?? 'Projection onto the vector per generated token'),
      height: 460,
      xaxis: axis(options.xLabel ?? 'generated token index'),
      yaxis: axis('projection'),
    },
  };
}

/** The norm of each vector at every layer, one line per vector. */
export function vectorNormsFigure(vectors: readonly { label: string; norms: readonly number[] }[]): Figure {
  return {
    data: vectors.map((vector, index) => ({
      type: 'scatter',
      mode: 'lines+markers',
      name: vector.label,
      x: vector.norms.map((_, layer) => layer),
      y: vector.norms.map(finiteOrNull),
      line: { color: seriesColor(index, vectors.length), width: 2 },
      marker: { size: 5 },
      hovertemplate: 'layer %{x}<br>norm %{y:.3f}',
    })),
    layout: {
      ...baseLayout('Vector norm per layer'),
      height: 460,
      // Whole-number ticks: plotly would otherwise put ticks at 0.5, 1.5, … on a short layer axis.
      xaxis: { ...axis('layer'), ...(Math.max(0, ...vectors.map((v) => v.norms.length)) <= 40 ? { dtick: 1 } : {}) },
      yaxis: { ...axis('L2 norm'), rangemode: 'tozero' },
    },
  };
}

/** Pairwise cosine similarity as an annotated heatmap on a fixed [−1, 1] diverging scale, row i = column i = labels[i]. */
export function cosineSimilarityFigure(labels: readonly string[], matrix: readonly (readonly number[])[]): Figure {
  if (matrix.length !== labels.length || matrix.some((row) => row.length !== labels.length)) {
    throw new Error(`cosine similarity matrix must be ${labels.length}×${labels.length} to match its labels`);
  }
  // Plotly merges equal category labels, which would silently fold rows together.
  if (new Set(labels).size !== labels.length) throw new UserError(`vector labels must be distinct to compare them: ${labels.join(', ')}`);
  return {
    data: [
      {
        type: 'heatmap',
        x: [...labels],
        y: [...labels],
        z: matrix.map((row) => row.map(finiteOrNull)),
        zmin: -1,
        zmax: 1,
        zmid: 0,
        colorscale: DIVERGING_SCALE,
        colorbar: { title: { text: 'cosine' } },
        texttemplate: '%{z:.2f}',
        hovertemplate: '%{y} · %{x}<br>cosine %{z:.3f}<extra></extra>',
        xgap: 1,
        ygap: 1,
      },
    ],
    layout: {
      ...baseLayout('Cosine similarity between vectors'),
      height: Math.max(420, 200 + 48 * labels.length),
      xaxis: { ...axis(''), type: 'category', showgrid: false },
      // Reversed so the matrix reads like a table: first label top-left, diagonal running down to the right.
      yaxis: { ...axis(''), type: 'category', showgrid: false, autorange: 'reversed' },
    },
  };
}

function baseLayout(title: string): Record<string, unknown> {
  return {
    title: { text: title, x: 0.01, xanchor: 'left' },
    font: { family: 'Liberation Sans, Arial, Helvetica, sans-serif', size: 13, color: '#222' },
    paper_bgcolor: 'white',
    plot_bgcolor: 'white',
    hovermode: 'closest',
    margin: { l: 80, r: 30, t: 90, b: 60 },
  };
}

function axis(title: string): Record<string, unknown> {
  return { title: { text: title }, showline: true, linecolor: '#888', gridcolor: '#e8e8e8', zerolinecolor: '#c8c8c8', automargin: true };
}

function panelHeading(text: string, x: number, top: number): object {
  return { text: `<b>${text}</b>`, x, y: top, xref: 'paper', yref: 'paper', xanchor: 'center', yanchor: 'bottom', yshift: 8, showarrow: false, font: { size: 14 } };
}

function cellHoverText(name: string, cell: CellSummary, metricLabel: string, estimate: IntervalEstimate | null): string {
  const score = estimate === null ? `${metricLabel}: no usable score` : `${metricLabel} ${estimate.mean.toFixed(1)} (95% CI ${estimate.low.toFixed(1)}–${estimate.high.toFixed(1)})`;
  const clamp = cell.clamp === undefined ? '' : ` · clamp ${cell.clamp}`;
  return `${name} · coefficient ${cell.coefficient}<br>${score}<br>n = ${cell.n} · positions ${cell.positions}${clamp}`;
}

function variantLabel(cell: CellSummary): string {
  return cell.clamp === undefined ? cell.vector : `${cell.vector} · clamp ${cell.clamp}`;
}

function rejectDuplicateCells(cells: readonly CellSummary[]): void {
  const seen = new Set<string>();
  for (const cell of cells) {
    const key = JSON.stringify([cell.vector, cell.clamp ?? null, cell.positions, cell.layer, cell.coefficient]);
    if (seen.has(key)) throw new UserError(`two sweep cells for ${variantLabel(cell)} at layer ${cell.layer}, coefficient ${cell.coefficient}, positions ${cell.positions}`);
    seen.add(key);
  }
}

function requireSingle(cells: readonly CellSummary[], option: string, value: (cell: CellSummary) => string): void {
  const values = distinct(cells.map(value));
  if (values.length > 1) throw new UserError(`the sweep cells hold ${values.length} ${option} values (${values.join(', ')}); choose one with the ${option} option`);
}

function describeSelection(options: LayerCoefficientHeatmapOptions): string {
  const parts = [
    options.vector === undefined ? '' : `vector ${options.vector}`,
    options.positions === undefined ? '' : `positions ${options.positions}`,
    options.clamp === undefined ? '' : `clamp ${options.clamp ?? 'none'}`,
  ];
  return parts.filter((part) => part !== '').join(', ');
}

/** Plotly draws null as a gap; NaN and ±Infinity would not survive JSON anyway. */
function finiteOrNull(value: number): number | null {
  return Number.isFinite(value) ? value : null;
}

function distinct<T>(values: readonly T[]): T[] {
  return [...new Set(values)];
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** One bar per category and series (e.g. a rate per experimental condition), with optional ± error bars. */
export function categoryBarFigure(
  categories: readonly string[],
  series: readonly { label: string; values: readonly number[]; errors?: readonly number[] }[],
  options: { title: string; yLabel: string },
): Figure {
  return {
    data: series.map((entry, index) => ({
      type: 'bar',
      name: entry.label,
      x: [...categories],
      y: entry.values.map(finiteOrNull),
      ...(entry.errors ? { error_y: { type: 'data', array: entry.errors.map(finiteOrNull), visible: true } } : {}),
      marker: { color: seriesColor(index, series.length) },
      hovertemplate: '%{x}<br>%{y:.3f}<extra>' + entry.label + '</extra>',
    })),
    layout: {
      ...baseLayout(options.title),
      height: 440,
      barmode: 'group',
      xaxis: { ...axis(''), type: 'category' },
      yaxis: { ...axis(options.yLabel), rangemode: 'tozero' },
    },
  };
}
