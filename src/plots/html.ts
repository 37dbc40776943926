/**
 * Self-contained HTML reports: plotly.js is inlined, so a report opens offline and can be mailed as one file.
 */
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import { writeFileAtomic } from '../io/files.js';
import type { ReportFigure, ReportTable } from './types.js';

export interface HtmlReportOptions {
  /** Page title and top heading. */
  title: string;
  /** Text under the heading; blank lines separate paragraphs. */
  intro?: string;
  tables?: ReportTable[];
}

/** `data-plots-ready` on `<body>` becomes "true" once every figure has drawn, or "failed"; the self-check waits on it. */
export const PLOTS_READY_ATTRIBUTE = 'data-plots-ready';

let cachedPlotlySource: string | undefined;

/** The minified plotly.js bundle, read once from the installed package. */
function plotlySource(): string {
  cachedPlotlySource ??= fs.readFileSync(createRequire(import.meta.url).resolve('plotly.js-dist-min'), 'utf8');
  return cachedPlotlySource;
}

/** Plotly's bundle inside a `<script>` element; a literal `</script` in it would end the element early. */
export function inlinePlotlyScript(): string {
  return `<script>${plotlySource().replace(/<\/script/gi, '<\\/script')}</script>`;
}

/** The figure divs' ids, in order: `figure-1`, `figure-2`, … */
function figureDivId(index: number): string {
  return `figure-${index + 1}`;
}

/** A complete HTML page with one section per figure, then the tables. Every piece of text is escaped. */
export function renderHtml(figures: readonly ReportFigure[], options: HtmlReportOptions): string {
  const intro = (options.intro ?? '')
    .split(/\n\s*\n/)
    .map((paragraph) => paragraph.trim())
    .filter((paragraph) => paragraph !== '')
    .map((paragraph) => `<p class="intro">${escapeHtml(paragraph)}</p>`);
  const figureSections = figures.map(
    (entry, index) =>
      `<section class="figure"><h2>${escapeHtml(entry.title)}</h2><div class="plot" id="${figureDivId(index)}" data-title="${escapeHtml(entry.title)}"></div></section>`,
  );
  const tableSections = (options.tables ?? []).map(renderTable);
  const figureJson = scriptSafeJson(figures.map((entry) => entry.figure));
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(options.title)}</title>
<style>${STYLE}</style>
</head>
<body>
<h1>${escapeHtml(options.title)}</h1>
${[...intro, ...figureSections, ...tableSections].join('\n')}
${inlinePlotlyScript()}
<script type="application/json" id="figure-data">${figureJson}</script>
<script>${DRAW_FIGURES_SCRIPT}</script>
</body>
</html>
`;
}

/** Renders the report and writes it so that readers never see a half-written file. */
export function writeHtmlReport(file: string, figures: readonly ReportFigure[], options: HtmlReportOptions): void {
  writeFileAtomic(file, renderHtml(figures, options));
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (character) => HTML_ENTITIES[character]!);
}

const HTML_ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** JSON that cannot close its `<script>` element: `<` is written as `\u003c`; U+2028/U+2029 are escaped for old parsers. */
function scriptSafeJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

function renderTable(table: ReportTable): string {
  const head = table.columns.map((column) => `<th>${escapeHtml(column)}</th>`).join('');
  const rows = table.rows
    .map((row) => `<tr>${row.map((cell) => (typeof cell === 'number' ? `<td class="number">${escapeHtml(String(cell))}</td>` : `<td>${escapeHtml(cell)}</td>`)).join('')}</tr>`)
    .join('\n');
  return `<section class="table"><h2>${escapeHtml(table.title)}</h2><table><thead><tr>${head}</tr></thead><tbody>\n${rows}\n</tbody></table></section>`;
}

const STYLE = `
body { font-family: 'Liberation Sans', Arial, Helvetica, sans-serif; color: #222; margin: 2rem auto; max-width: 1200px; padding: 0 1rem; }
h1 { font-size: 1.6rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; }
p.intro { max-width: 60rem; line-height: 1.45; white-space: pre-line; }
section.figure .plot { width: 100%; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.3rem 0.6rem; text-align: left; }
th { background: #f4f4f4; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
`;

/** Draws every figure into its div and records the outcome on `<body>`; errors also go to the console. */
const DRAW_FIGURES_SCRIPT = `
(function () {
  var figures = JSON.parse(document.getElementById('figure-data').textContent);
  var drawn = figures.map(function (figure, index) {
    return Plotly.newPlot('figure-' + (index + 1), figure.data, figure.layout, { responsive: true, displaylogo: false });
  });
  Promise.all(drawn).then(
    function () { document.body.setAttribute('${PLOTS_READY_ATTRIBUTE}', 'true'); },
    function (error) { document.body.setAttribute('${PLOTS_READY_ATTRIBUTE}', 'failed'); console.error('plotly failed to draw a figure:', error); }
  );
})();
`;
