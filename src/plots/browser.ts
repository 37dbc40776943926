/**
 * Static export and the report self-check, both through a system Chromium driven by playwright-core: plotly's own
 * renderer needs a real browser for text measurement and canvas, which jsdom does not provide.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { UserError } from '../errors.js';
import { writeFileAtomic } from '../io/files.js';
import { inlinePlotlyScript, PLOTS_READY_ATTRIBUTE } from './html.js';
import type { Figure, ReportFigure } from './types.js';

/** Debian's `chromium` package; `PERSONA_CHROMIUM` points elsewhere. */
export const DEFAULT_CHROMIUM = '/usr/bin/chromium';

const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync'];
const DEFAULT_SIZE = { width: 1100, height: 600 };
const PNG_DATA_URL_PREFIX = 'data:image/png;base64,';

export interface PngSize {
  width: number;
  height: number;
}

export interface RenderPngOptions {
  /** Image width in pixels; otherwise the figure's layout width, otherwise 1100. */
  width?: number;
  /** Image height in pixels; otherwise the figure's layout height, otherwise 600. */
  height?: number;
}

/** What one figure div of a report drew: trace paths with a non-empty `d` and heatmap images. */
export interface RenderedFigureCheck {
  id: string;
  title: string;
  paths: number;
  images: number;
}

export interface RenderedReportCheck {
  figures: RenderedFigureCheck[];
  /** Console errors, uncaught page errors, network requests, and a timeout if the figures never finished. */
  errors: string[];
}

export function chromiumExecutable(): string {
  return process.env.PERSONA_CHROMIUM || DEFAULT_CHROMIUM;
}

/**
 * Writes each figure as `<outDir>/<slug of its title>.png` (suffixed `-2`, `-3`, … when titles collide) using one browser
 * for all of them, and returns the files in order.
 */
export async function renderPng(figures: readonly ReportFigure[], outDir: string, options: RenderPngOptions = {}): Promise<string[]> {
  const files = pngFileNames(figures.map((entry) => entry.title)).map((name) => path.join(outDir, name));
  await withRenderPage(async (page) => {
    for (const [index, entry] of figures.entries()) {
      writeFileAtomic(files[index]!, await figurePng(page, entry.figure, pngSize(entry.figure, options)));
    }
  });
  return files;
}

export async function renderFigurePng(figure: Figure, file: string, size: PngSize): Promise<void> {
  const png = await withRenderPage((page) => figurePng(page, figure, size));
  writeFileAtomic(file, png);
}

/**
 * Opens a written report in Chromium, waits until its figures have drawn, and says what each figure div drew and which
 * errors the page raised. Requests to the network are refused and reported: a report must work offline.
 */
export async function checkRenderedReport(htmlFile: string, options: { timeoutMs?: number } = {}): Promise<RenderedReportCheck> {
  if (!fs.existsSync(htmlFile)) throw new UserError(`report not found: ${htmlFile}`);
  const timeoutMs = options.timeoutMs ?? 30_000;
  return withChromium(async (browser) => {
    const page = await browser.newPage();
    const errors = collectPageErrors(page);
    await page.route(/^https?:/, (route) => {
      errors.push(`network request (reports must work offline): ${route.request().url()}`);
      return route.abort();
    });
    await page.goto(pathToFileURL(path.resolve(htmlFile)).href);
    try {
      await page.waitForSelector(`body[${PLOTS_READY_ATTRIBUTE}]`, { state: 'attached', timeout: timeoutMs });
    } catch {
      errors.push(`figures did not finish drawing within ${timeoutMs} ms`);
    }
    const figures = await page.evaluate<RenderedFigureCheck[]>(COUNT_DRAWN_ELEMENTS);
    return { figures, errors };
  });
}

/** Lower-case ASCII slugs of the titles, made unique, with `.png`. */
export function pngFileNames(titles: readonly string[]): string[] {
  const used = new Set<string>();
  return titles.map((title) => {
    const slug =
      title
        .normalize('NFKD')
        .toLowerCase()
        .replace(/[^a-z0-9]+/g, '-')
        .replace(/^-+|-+$/g, '')
        .slice(0, 80) || 'figure';
    let name = slug;
    for (let copy = 2; used.has(name); copy++) name = `${slug}-${copy}`;
    used.add(name);
    return `${name}.png`;
  });
}

async function withChromium<T>(use: (browser: Browser) => Promise<T>): Promise<T> {
  const executablePath = chromiumExecutable();
  if (!fs.existsSync(executablePath)) {
    throw new UserError(
      `Chromium not found at ${executablePath}: PNG export and the report check need it (install it with \`apt-get install chromium\`, or set PERSONA_CHROMIUM to a Chromium binary); HTML reports work without it`,
    );
  }
  // Loaded on demand so that building figures and HTML reports never pays for playwright.
  const { chromium } = await import('playwright-core');
  let browser: Browser;
  try {
    browser = await chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS });
  } catch (error) {
    const detail = (error instanceof Error ? error.message : String(error)).split('\n')[0];
    throw new UserError(`could not start Chromium at ${executablePath}: ${detail}; HTML reports work without it`);
  }
  try {
    return await use(browser);
  } finally {
    await browser.close();
  }
}

/** A page holding plotly and a `renderFigurePng` function, in a fresh browser closed afterwards. */
async function withRenderPage<T>(use: (page: Page) => Promise<T>): Promise<T> {
  return withChromium(async (browser) => {
    const page = await browser.newPage();
    await page.setContent(`<!doctype html><html><head><meta charset="utf-8"></head><body>${inlinePlotlyScript()}<script>${RENDER_FUNCTION}</script></body></html>`);
    return use(page);
  });
}

async function figurePng(page: Page, figure: Figure, size: PngSize): Promise<Buffer> {
  const dataUrl = await page.evaluate(
    ([figureToDraw, width, height]) => (globalThis as unknown as RenderPage).renderFigurePng(figureToDraw, width, height),
    [figure, size.width, size.height] as const,
  );
  if (!dataUrl.startsWith(PNG_DATA_URL_PREFIX)) throw new Error(`Plotly.toImage returned something other than a PNG data URL: ${dataUrl.slice(0, 40)}`);
  return Buffer.from(dataUrl.slice(PNG_DATA_URL_PREFIX.length), 'base64');
}

function pngSize(figure: Figure, options: RenderPngOptions): PngSize {
  const layout = figure.layout as { width?: unknown; height?: unknown };
  return {
    width: options.width ?? (typeof layout.width === 'number' ? layout.width : DEFAULT_SIZE.width),
    height: options.height ?? (typeof layout.height === 'number' ? layout.height : DEFAULT_SIZE.height),
  };
}

function collectPageErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console error: ${message.text()}`);
  });
  page.on('pageerror', (error) => errors.push(`page error: ${error.message}`));
  return errors;
}

/** What RENDER_FUNCTION adds to the page's global scope. */
interface RenderPage {
  renderFigurePng(figure: Figure, width: number, height: number): Promise<string>;
}

/** Page-side: draws the figure into a scratch div, exports it, and removes the div again. */
const RENDER_FUNCTION = `
window.renderFigurePng = async function (figure, width, height) {
  var div = document.createElement('div');
  document.body.appendChild(div);
  try {
    await Plotly.newPlot(div, figure.data, figure.layout);
    return await Plotly.toImage(div, { format: 'png', width: width, height: height });
  } finally {
    Plotly.purge(div);
    div.remove();
  }
};
`;

/**
 * Page-side: per report figure div, the paths inside trace groups (lines, markers, error bars — not grid lines, axes or
 * modebar icons) and the images in the plot area (heatmaps).
 */
const COUNT_DRAWN_ELEMENTS = `
Array.from(document.querySelectorAll('div.plot')).map(function (div) {
  return {
    id: div.id,
    title: div.getAttribute('data-title') || '',
    paths: Array.from(div.querySelectorAll('.cartesianlayer .trace path')).filter(function (p) { return (p.getAttribute('d') || '').trim() !== ''; }).length,
    images: div.querySelectorAll('.cartesianlayer image').length
  };
})
`;
