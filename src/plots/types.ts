/**
 * Plain-data contracts of the plots module. A Figure is plotly JSON and nothing else, so the same object can go to an
 * HTML report, a PNG, or a notebook cell as `application/vnd.plotly.v1+json`.
 */

/** A plotly figure: `data` is the list of traces, `layout` the plotly layout object. */
export interface Figure {
  data: object[];
  layout: object;
}

/** A mean with its 95% interval, on the judge's 0–100 scale. */
export interface IntervalEstimate {
  mean: number;
  low: number;
  high: number;
}

/**
 * The judged outcome of one sweep cell: one vector applied at one layer with one coefficient at one set of positions
 * (and, when clamping, one clamp setting). `trait` / `coherence` are null when no answer got a usable score.
 */
export interface CellSummary {
  vector: string;
  layer: number;
  coefficient: number;
  positions: string;
  clamp?: string;
  /** Number of answers judged. */
  n: number;
  trait: IntervalEstimate | null;
  coherence: IntervalEstimate | null;
}

/** A figure with the heading it gets in a report (and the PNG file name derived from it). */
export interface ReportFigure {
  title: string;
  figure: Figure;
}

export interface ReportTable {
  title: string;
  columns: string[];
  rows: (string | number)[][];
}
