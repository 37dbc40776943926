import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../src/errors.js';
import { pngFileNames } from '../src/plots/browser.js';
import { hasChromium } from './helpers/tools.js';
import {
  checkRenderedReport,
  cosineSimilarityFigure,
  layerCoefficientHeatmapFigure,
  projectionTrajectoryFigure,
  renderFigurePng,
  renderHtml,
  renderPng,
  traitVsCoefficientFigure,
  vectorNormsFigure,
  writeHtmlReport,
  type CellSummary,
  type Figure,
  type ReportFigure,
} from '../src/plots/index.js';

/** The trace and layout fields these tests read; figures are plain plotly JSON. */
interface Trace {
  type: string;
  name?: string;
  mode?: string;
  x: unknown[];
  y: unknown[];
  z?: (number | null)[][];
  zmin?: number;
  zmax?: number;
  xaxis?: string;
  yaxis?: string;
  showlegend?: boolean;
  texttemplate?: string;
  text?: unknown;
  error_y?: { type: string; symmetric: boolean; array: (number | null)[]; arrayminus: (number | null)[] };
  line?: { color?: string; dash?: string };
}
type Layout = Record<string, unknown> & { annotations?: { text: string }[]; height?: number };

const traces = (figure: Figure): Trace[] => figure.data as Trace[];
const layoutOf = (figure: Figure): Layout => figure.layout as Layout;

/** Trait mean = 10·layer/4 + 10·coefficient + 20 (distinct per layer and coefficient), coherence falls with |coefficient|. */
function cell(vector: string, layer: number, coefficient: number, positions = 'response', extra: Partial<CellSummary> = {}): CellSummary {
  const trait = (layer / 4) * 10 + coefficient * 10 + 20;
  const coherence = 90 - 5 * Math.abs(coefficient);
  return {
    vector,
    layer,
    coefficient,
    positions,
    n: 20,
    trait: { mean: trait, low: trait - 4, high: trait + 6 },
    coherence: { mean: coherence, low: coherence - 2, high: coherence + 1 },
    ...extra,
  };
}

const COEFFICIENTS = [-2, 0, 2, 4];
/** Deliberately out of order: the builders must sort by layer and coefficient. */
const SWEEP: CellSummary[] = [8, 4].flatMap((layer) => [4, -2, 2, 0].map((coefficient) => cell('evil', layer, coefficient)));

describe('traitVsCoefficientFigure', () => {
  it('draws one line per layer in each of the two panels, sorted by coefficient, with asymmetric 95% error bars', () => {
    const figure = traitVsCoefficientFigure(SWEEP, { trait: 'evil' });
    const data = traces(figure);
    expect(data).toHaveLength(4);
    expect(data.map((trace) => [trace.name, trace.xaxis, trace.yaxis])).toEqual([
      ['L4', 'x', 'y'],
      ['L8', 'x', 'y'],
      ['L4', 'x2', 'y2'],
      ['L8', 'x2', 'y2'],
    ]);
    const [trait4, trait8, coherence4] = data;
    expect(trait4!.x).toEqual(COEFFICIENTS);
    expect(trait4!.y).toEqual([10, 30, 50, 70]);
    expect(trait8!.y).toEqual([20, 40, 60, 80]);
    expect(trait4!.error_y).toMatchObject({ type: 'data', symmetric: false, array: [6, 6, 6, 6], arrayminus: [4, 4, 4, 4] });
    expect(coherence4!.y).toEqual([80, 90, 80, 70]);
    expect(coherence4!.error_y!.array).toEqual([1, 1, 1, 1]);
    expect(coherence4!.error_y!.arrayminus).toEqual([2, 2, 2, 2]);
    // A layer keeps its colour in both panels; layers differ; each layer is in the legend once.
    expect(trait4!.line!.color).toBe(coherence4!.line!.color);
    expect(trait4!.line!.color).not.toBe(trait8!.line!.color);
    expect(data.map((trace) => trace.showlegend)).toEqual([true, true, false, false]);
    expect(String(trait4!.text && (trait4!.text as string[])[0])).toContain('evil score 10.0 (95% CI 6.0–16.0)');
    const layout = layoutOf(figure);
    expect(layout.xaxis2).toMatchObject({ matches: 'x' });
    expect(layout.yaxis).toMatchObject({ title: { text: 'mean evil score (95% CI)' } });
    expect(layout.yaxis2).toMatchObject({ title: { text: 'mean coherence (95% CI)' } });
  });

  it('names lines "vector · L<layer>" when there are several vectors, sharing the layer colour and differing in dash', () => {
    const cells = [...SWEEP, ...[4, 8].flatMap((layer) => COEFFICIENTS.map((coefficient) => cell('sycophantic', layer, coefficient)))];
    const data = traces(traitVsCoefficientFigure(cells)).filter((trace) => trace.xaxis === 'x');
    expect(data.map((trace) => trace.name)).toEqual(['evil · L4', 'evil · L8', 'sycophantic · L4', 'sycophantic · L8']);
    expect(data[0]!.line!.color).toBe(data[2]!.line!.color);
    expect(data[0]!.line!.dash).not.toBe(data[2]!.line!.dash);
  });

  it('gives each positions value its own row of panels', () => {
    const cells = [...SWEEP, ...[4, 8].flatMap((layer) => COEFFICIENTS.map((coefficient) => cell('evil', layer, coefficient, 'all')))];
    const figure = traitVsCoefficientFigure(cells);
    const data = traces(figure);
    expect(data).toHaveLength(8);
    expect(data.filter((trace) => trace.xaxis === 'x3' || trace.xaxis === 'x4')).toHaveLength(4);
    expect(data.filter((trace) => trace.showlegend)).toHaveLength(2);
    const layout = layoutOf(figure);
    expect(layout.annotations!.map((annotation) => annotation.text)).toEqual([
      '<b>Trait score — positions: response</b>',
      '<b>Coherence — positions: response</b>',
      '<b>Trait score — positions: all</b>',
      '<b>Coherence — positions: all</b>',
    ]);
    const top = (layout.yaxis as { domain: number[] }).domain;
    const bottom = (layout.yaxis3 as { domain: number[] }).domain;
    expect(top[0]!).toBeGreaterThan(bottom[1]!);
    // Only the bottom row names the shared coefficient axis, so titles never overlap the headings below.
    expect(layout.xaxis).toMatchObject({ title: { text: '' } });
    expect(layout.xaxis3).toMatchObject({ title: { text: 'steering coefficient' }, matches: 'x' });
  });

  it('leaves a gap where a cell has no usable score', () => {
    const cells = SWEEP.map((entry) => (entry.layer === 4 && entry.coefficient === 2 ? { ...entry, trait: null } : entry));
    const trait4 = traces(traitVsCoefficientFigure(cells))[0]!;
    expect(trait4.y).toEqual([10, 30, null, 70]);
    expect(trait4.error_y!.array[2]).toBeNull();
  });

  it('rejects empty input and duplicate cells', () => {
    expect(() => traitVsCoefficientFigure([])).toThrow(UserError);
    expect(() => traitVsCoefficientFigure([...SWEEP, cell('evil', 4, 0)])).toThrow(/two sweep cells for evil at layer 4, coefficient 0/);
  });
});

describe('layerCoefficientHeatmapFigure', () => {
  it('puts layers on y, coefficients on x, and z[layer][coefficient] with blanks for cells not run', () => {
    const cells = SWEEP.filter((entry) => !(entry.layer === 8 && entry.coefficient === -2));
    const figure = layerCoefficientHeatmapFigure(cells, { metric: 'trait' });
    const [heatmap] = traces(figure);
    expect(heatmap!.type).toBe('heatmap');
    expect(heatmap!.x).toEqual(COEFFICIENTS);
    expect(heatmap!.y).toEqual([4, 8]);
    expect(heatmap!.z).toEqual([
      [10, 30, 50, 70],
      [null, 40, 60, 80],
    ]);
    expect([heatmap!.zmin, heatmap!.zmax]).toEqual([0, 100]);
    expect(heatmap!.texttemplate).toBe('%{z:.1f}');
    expect((heatmap!.text as string[][])[1]![0]).toContain('not run');
  });

  it('shows coherence and requires choosing among several vectors or positions', () => {
    const cells = [...SWEEP, cell('kind', 4, 0), cell('evil', 4, 0, 'all')];
    expect(() => layerCoefficientHeatmapFigure(cells, { metric: 'coherence' })).toThrow(/2 vector values \(evil, kind\); choose one with the vector option/);
    expect(() => layerCoefficientHeatmapFigure(cells, { metric: 'coherence', vector: 'evil' })).toThrow(/positions/);
    const figure = layerCoefficientHeatmapFigure(cells, { metric: 'coherence', vector: 'evil', positions: 'response' });
    expect(traces(figure)[0]!.z![0]).toEqual([80, 90, 80, 70]);
    expect(() => layerCoefficientHeatmapFigure(cells, { metric: 'trait', vector: 'missing' })).toThrow(/no sweep cells match vector missing/);
  });

  it('selects unclamped cells with clamp: null', () => {
    const cells = [...SWEEP, cell('evil', 4, 0, 'response', { clamp: 'floor 2.5', trait: { mean: 99, low: 98, high: 100 } })];
    expect(() => layerCoefficientHeatmapFigure(cells, { metric: 'trait' })).toThrow(/clamp/);
    expect(traces(layerCoefficientHeatmapFigure(cells, { metric: 'trait', clamp: null }))[0]!.z![0]).toEqual([10, 30, 50, 70]);
    expect(traces(layerCoefficientHeatmapFigure(cells, { metric: 'trait', clamp: 'floor 2.5' }))[0]!.z).toEqual([[99]]);
  });
});

describe('line and matrix figures', () => {
  it('projectionTrajectoryFigure: one line per series against token index, dashed bound lines across all tokens', () => {
    const figure = projectionTrajectoryFigure(
      [
        { label: 'unsteered', values: [1, 2, 3, 4, 5] },
        { label: 'clamped', values: [1, 2.5, 2.5, Number.NaN] },
      ],
      { title: 'Projection', bound: [{ value: 2.5, label: 'clamp floor' }] },
    );
    const data = traces(figure);
    expect(data.map((trace) => trace.name)).toEqual(['unsteered', 'clamped', 'clamp floor']);
    expect(data[0]!.x).toEqual([0, 1, 2, 3, 4]);
    expect(data[1]!.y).toEqual([1, 2.5, 2.5, null]);
    expect(data[2]).toMatchObject({ mode: 'lines', x: [0, 4], y: [2.5, 2.5], line: { dash: 'dash' } });
    expect(data[0]!.line!.color).not.toBe(data[1]!.line!.color);
    expect(layoutOf(figure)).toMatchObject({ title: { text: 'Projection' }, xaxis: { title: { text: 'generated token index' } } });
  });

  it('vectorNormsFigure: norm per layer index, one line per vector', () => {
    const data = traces(
      vectorNormsFigure([
        { label: 'evil', norms: [0.5, 1, 2] },
        { label: 'kind', norms: [0.4, 0.8, 1.6] },
      ]),
    );
    expect(data.map((trace) => [trace.name, trace.x, trace.y])).toEqual([
      ['evil', [0, 1, 2], [0.5, 1, 2]],
      ['kind', [0, 1, 2], [0.4, 0.8, 1.6]],
    ]);
  });

  it('cosineSimilarityFigure: the matrix as given, on a fixed [−1, 1] scale, first label at the top', () => {
    const matrix = [
      [1, -0.4, 0.2],
      [-0.4, 1, 0.7],
      [0.2, 0.7, 1],
    ];
    const figure = cosineSimilarityFigure(['evil', 'kind', 'humorous'], matrix);
    const [heatmap] = traces(figure);
    expect(heatmap).toMatchObject({ type: 'heatmap', x: ['evil', 'kind', 'humorous'], y: ['evil', 'kind', 'humorous'], z: matrix, zmin: -1, zmax: 1, texttemplate: '%{z:.2f}' });
    expect(layoutOf(figure).yaxis).toMatchObject({ autorange: 'reversed' });
    expect(() => cosineSimilarityFigure(['a', 'b'], [[1, 0]])).toThrow(/2×2/);
    expect(() => cosineSimilarityFigure(['a', 'a'], [[1, 0], [0, 1]])).toThrow(UserError);
  });
});

describe('renderHtml', () => {
  const figure = vectorNormsFigure([{ label: 'evil </script><script>alert(2)</script>', norms: [1, 2] }]);
  const html = renderHtml([{ title: 'Norms <b>&</b>', figure }], {
    title: 'Report <script>alert(1)</script>',
    intro: 'First paragraph.\n\nSecond <i>one</i>.',
    tables: [{ title: 'Cells', columns: ['vector', 'trait'], rows: [['evil <x>', 41.5]] }],
  });

  it('inlines plotly and loads nothing from the network', () => {
    const plotly = fs.readFileSync(path.join('node_modules', 'plotly.js-dist-min', 'plotly.min.js'), 'utf8');
    expect(html.length).toBeGreaterThan(plotly.length);
    expect(html).toContain(plotly.slice(0, 2000));
    expect(html).not.toMatch(/<script[^>]*\ssrc=/i);
    expect(html).not.toContain('<script src="http');
    expect(html).not.toMatch(/<link[^>]*href="http/i);
  });

  it('escapes titles, intro, tables, and figure JSON so no text can open or close an element', () => {
    expect(html).toContain('<title>Report &lt;script&gt;alert(1)&lt;/script&gt;</title>');
    expect(html).not.toContain('<script>alert(1)');
    expect(html).toContain('<h2>Norms &lt;b&gt;&amp;&lt;/b&gt;</h2>');
    expect(html).toContain('<p class="intro">Second &lt;i&gt;one&lt;/i&gt;.</p>');
    expect(html).toContain('<td>evil &lt;x&gt;</td><td class="number">41.5</td>');
    // Three script elements: plotly, the figure JSON, the drawing code; the trace name closes none of them.
    expect(html.match(/<\/script>/g)).toHaveLength(3);
    expect(html).toContain('evil \\u003c/script>\\u003cscript>alert(2)\\u003c/script>');
  });

  it('writeHtmlReport writes the same page to disk', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'persona-plots-'));
    const file = path.join(dir, 'nested', 'report.html');
    writeHtmlReport(file, [{ title: 'Norms <b>&</b>', figure }], { title: 'Report <script>alert(1)</script>', intro: 'First paragraph.\n\nSecond <i>one</i>.', tables: [{ title: 'Cells', columns: ['vector', 'trait'], rows: [['evil <x>', 41.5]] }] });
    expect(fs.readFileSync(file, 'utf8')).toBe(html);
    expect(fs.readdirSync(path.dirname(file))).toEqual(['report.html']);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe('PNG file names', () => {
  it('slugs titles and keeps them unique', () => {
    expect(pngFileNames(['Trait vs coefficient', 'Trait vs coefficient', 'Cosine similarity (L12)', '¿?'])).toEqual([
      'trait-vs-coefficient.png',
      'trait-vs-coefficient-2.png',
      'cosine-similarity-l12.png',
      'figure.png',
    ]);
  });
});

describe('without a browser', () => {
  it('PNG export says how to install Chromium and that HTML still works', async () => {
    const previous = process.env.PERSONA_CHROMIUM;
    process.env.PERSONA_CHROMIUM = '/nonexistent/chromium';
    try {
      const failure = renderFigurePng(vectorNormsFigure([{ label: 'evil', norms: [1] }]), path.join(os.tmpdir(), 'never.png'), { width: 100, height: 100 });
      await expect(failure).rejects.toThrow(UserError);
      await expect(failure).rejects.toThrow(/Chromium not found at \/nonexistent\/chromium.*apt-get install chromium.*HTML reports work without it/);
    } finally {
      if (previous === undefined) delete process.env.PERSONA_CHROMIUM;
      else process.env.PERSONA_CHROMIUM = previous;
    }
  });
});

describe.skipIf(!hasChromium)('in Chromium', () => {
  let dir: string;
  const figures: ReportFigure[] = [
    { title: 'Trait and coherence vs coefficient', figure: traitVsCoefficientFigure(SWEEP, { trait: 'evil' }) },
    { title: 'Trait by layer and coefficient', figure: layerCoefficientHeatmapFigure(SWEEP, { metric: 'trait', trait: 'evil' }) },
    {
      title: 'Projection per token',
      figure: projectionTrajectoryFigure(
        [
          { label: 'unsteered', values: Array.from({ length: 40 }, (_, token) => Math.sin(token / 5) * 3) },
          { label: 'clamped', values: Array.from({ length: 40 }, (_, token) => Math.max(-1, Math.sin(token / 5) * 3)) },
        ],
        { bound: [{ value: -1, label: 'clamp floor' }] },
      ),
    },
    { title: 'Vector norms', figure: vectorNormsFigure([{ label: 'evil', norms: [0.5, 1, 1.8, 2.6, 3.1, 3.3] }, { label: 'kind', norms: [0.4, 0.9, 1.2, 2, 2.2, 2.9] }]) },
    { title: 'Cosine similarity', figure: cosineSimilarityFigure(['evil', 'kind', 'humorous'], [[1, -0.6, 0.1], [-0.6, 1, 0.3], [0.1, 0.3, 1]]) },
  ];

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'persona-plots-'));
  });
  afterAll(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('every figure of a report draws, with no console or page errors and no network requests', async () => {
    const file = path.join(dir, 'report.html');
    writeHtmlReport(file, figures, { title: 'Sweep report', intro: 'All five figure types.' });
    const check = await checkRenderedReport(file);
    expect(check.errors).toEqual([]);
    expect(check.figures.map((figure) => figure.title)).toEqual(figures.map((entry) => entry.title));
    const [trait, layerHeatmap, projection, norms, cosine] = check.figures;
    // Lines plus error bars: at least one path per trace.
    expect(trait!.paths).toBeGreaterThanOrEqual(4);
    expect(layerHeatmap!.images).toBeGreaterThanOrEqual(1);
    expect(projection!.paths).toBeGreaterThanOrEqual(3);
    expect(norms!.paths).toBeGreaterThanOrEqual(2);
    expect(cosine!.images).toBeGreaterThanOrEqual(1);
  });

  it('counts nothing for a figure without data', async () => {
    const file = path.join(dir, 'empty.html');
    writeHtmlReport(file, [{ title: 'Empty', figure: { data: [], layout: {} } }], { title: 'Empty' });
    const check = await checkRenderedReport(file);
    expect(check).toEqual({ figures: [{ id: 'figure-1', title: 'Empty', paths: 0, images: 0 }], errors: [] });
  });

  it('reports page errors, console errors, network requests and figures that never finish', async () => {
    const file = path.join(dir, 'broken.html');
    fs.writeFileSync(file, '<!doctype html><body><img src="http://example.invalid/a.png"><script>console.error("bad thing"); throw new Error("boom");</script></body>');
    const { figures, errors } = await checkRenderedReport(file, { timeoutMs: 1_000 });
    expect(figures).toEqual([]);
    expect(errors).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^network request \(reports must work offline\): http:\/\/example\.invalid\/a\.png/),
        'console error: bad thing',
        'page error: boom',
        'figures did not finish drawing within 1000 ms',
      ]),
    );
  });

  it('renderFigurePng writes a PNG, and renderPng writes one per figure from a single browser', async () => {
    const single = path.join(dir, 'trait.png');
    await renderFigurePng(figures[0]!.figure, single, { width: 1000, height: 480 });
    const png = fs.readFileSync(single);
    expect([...png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    expect(png.readUInt32BE(16)).toBe(1000);
    expect(png.readUInt32BE(20)).toBe(480);
    expect(png.length).toBeGreaterThan(5_000);

    const files = await renderPng(figures, path.join(dir, 'png'));
    expect(files.map((file) => path.basename(file))).toEqual([
      'trait-and-coherence-vs-coefficient.png',
      'trait-by-layer-and-coefficient.png',
      'projection-per-token.png',
      'vector-norms.png',
      'cosine-similarity.png',
    ]);
    for (const file of files) expect(fs.statSync(file).size).toBeGreaterThan(5_000);
    // The figure's own layout height is used when no height is asked for.
    expect(fs.readFileSync(files[0]!).readUInt32BE(20)).toBe(480);
  });
});
