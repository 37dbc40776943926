export { checkRenderedReport, chromiumExecutable, DEFAULT_CHROMIUM, renderFigurePng, renderPng, type PngSize, type RenderedFigureCheck, type RenderedReportCheck, type RenderPngOptions } from './browser.js';
export {
  categoryBarFigure,
  cosineSimilarityFigure,
  layerCoefficientHeatmapFigure,
  layerColors,
  projectionTrajectoryFigure,
  traitVsCoefficientFigure,
  vectorNormsFigure,
  type LayerCoefficientHeatmapOptions,
  type ProjectionTrajectoryOptions,
  type TraitVsCoefficientOptions,
} from './figures.js';
export { renderHtml, writeHtmlReport, type HtmlReportOptions } from './html.js';
export type { CellSummary, Figure, IntervalEstimate, ReportFigure, ReportTable } from './types.js';
