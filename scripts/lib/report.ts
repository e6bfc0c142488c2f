/**
 * Plots and the HTML report of simulations and the demo: vega-lite specs compiled to vega and rendered to SVG in
 * Node (`View.toSVG`, renderer 'none': no browser, no canvas). Accuracy per node vs round with the mean over nodes,
 * integer round ticks and a percent axis; accuracy vs cumulative bytes sent on a log axis labelled in B/KB/MB/GB;
 * `report.html` holds both plots inline and the summary tables.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

/** The fields of one node's round record the plots read (a subset of RoundMetrics). */
export interface PlotRound {
  round: number;
  /** Test accuracy per exit (0..1); the plots use the last exit. */
  accuracy: number[];
  /** Round payload bytes this node published. */
  bytesUp: number;
}

/** Name of the series holding the mean over nodes. */
export const MEAN_SERIES = 'mean over nodes';
const PALETTE = ['#4c78a8', '#f58518', '#54a24b', '#e45756', '#72b7b2', '#b279a2', '#ff9da6', '#9d755d', '#bab0ac', '#eeca3b'];
/** Axis labels for bytes (SI, as the status table prints them), on the 1-2-5 ticks of each decade of the log axis. */
const BYTES_LABEL = "indexof([1, 2, 5], round(datum.value / pow(10, floor(log(datum.value) / LN10 + 1e-9)))) < 0 ? '' : datum.value >= 1e9 ? format(datum.value / 1e9, '.3~') + ' GB' : datum.value >= 1e6 ? format(datum.value / 1e6, '.3~') + ' MB' : datum.value >= 1e3 ? format(datum.value / 1e3, '.3~') + ' KB' : format(datum.value, '~') + ' B'";

const lastOf = (a: number[]): number => a[a.length - 1];

interface Row {
  series: string;
  x: number;
  accuracy: number;
}

function seriesEncoding(names: string[]): Record<string, unknown> {
  const domain = [...names, MEAN_SERIES];
  return {
    color: { field: 'series', type: 'nominal', title: null, scale: { domain, range: [...names.map((_, i) => PALETTE[i % PALETTE.length]), '#000000'] }, sort: domain },
    strokeWidth: { condition: { test: `datum.series === '${MEAN_SERIES}'`, value: 3 }, value: 1.2 },
    opacity: { condition: { test: `datum.series === '${MEAN_SERIES}'`, value: 1 }, value: 0.65 },
    detail: { field: 'series' },
  };
}

/** Mean of the last-exit accuracy over the nodes that report a value at each x (x = round or step). */
function meanRows(rows: Row[]): Row[] {
  const by = new Map<number, number[]>();
  for (const r of rows) (by.get(r.x) ?? by.set(r.x, []).get(r.x)!).push(r.accuracy);
  return [...by].sort((a, b) => a[0] - b[0]).map(([x, v]) => ({ series: MEAN_SERIES, x, accuracy: v.reduce((a, b) => a + b, 0) / v.length }));
}

const ACCURACY_AXIS = { field: 'accuracy', type: 'quantitative', title: 'test accuracy (last exit)', axis: { format: '.0%' }, scale: { zero: false } } as const;

/** vega-lite spec: last-exit accuracy of every node per round, and the mean over nodes (black, thick). */
export function accuracyVsRoundSpec(metrics: PlotRound[][], title: string): TopLevelSpec {
  const names = metrics.map((_, i) => `node ${i}`);
  const rows: Row[] = metrics.flatMap((m, i) => m.map((x) => ({ series: names[i], x: x.round, accuracy: lastOf(x.accuracy) })));
  const rounds = rows.map((r) => r.x);
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title, width: 520, height: 300, background: 'white',
    data: { values: [...rows, ...meanRows(rows)] },
    mark: { type: 'line', interpolate: 'linear' },
    encoding: {
      x: { field: 'x', type: 'quantitative', title: 'round', scale: { domain: [Math.min(...rounds, 1), Math.max(...rounds, 1)], nice: false }, axis: { format: 'd', tickMinStep: 1 } },
      y: ACCURACY_AXIS,
      ...seriesEncoding(names),
    },
  } as TopLevelSpec;
}

/** vega-lite spec: last-exit accuracy vs the cumulative bytes each node sent (log axis in B/KB/MB/GB), with the mean at each round. */
export function accuracyVsBytesSpec(metrics: PlotRound[][], title: string): TopLevelSpec {
  const names = metrics.map((_, i) => `node ${i}`);
  const rows: (Row & { round: number })[] = metrics.flatMap((m, i) => {
    let cum = 0;
    return m.map((x) => ({ series: names[i], round: x.round, x: (cum += x.bytesUp), accuracy: lastOf(x.accuracy) }));
  });
  // The mean curve: per round, mean cumulative bytes against mean accuracy.
  const byRound = new Map<number, (typeof rows)[number][]>();
  for (const r of rows) (byRound.get(r.round) ?? byRound.set(r.round, []).get(r.round)!).push(r);
  const mean = [...byRound].sort((a, b) => a[0] - b[0]).map(([round, v]) => ({ series: MEAN_SERIES, round, x: v.reduce((a, b) => a + b.x, 0) / v.length, accuracy: v.reduce((a, b) => a + b.accuracy, 0) / v.length }));
  const positive = [...rows, ...mean].filter((r) => r.x > 0);
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title, width: 520, height: 300, background: 'white',
    data: { values: positive },
    mark: { type: 'line' },
    encoding: {
      x: { field: 'x', type: 'quantitative', title: 'bytes sent by the node (cumulative)', scale: { type: 'log' }, axis: { labelExpr: BYTES_LABEL, tickCount: 6 } },
      y: ACCURACY_AXIS,
      order: { field: 'round', type: 'quantitative' },
      ...seriesEncoding(names),
    },
  } as TopLevelSpec;
}

/** One series of {@link lineChartSpec}. */
export interface LineSeries {
  name: string;
  points: [number, number][];
  dashed?: boolean;
}

/**
 * vega-lite spec of a generic line chart (benchmarks): integer x ticks, a bytes y axis with `yBytes`, a log2 x axis
 * ticked at the data's x values with `xLog2`, and `width`/`height` (default 520 x 300).
 */
export function lineChartSpec(o: { title: string; xLabel: string; yLabel: string; series: LineSeries[]; yMin?: number; yBytes?: boolean; xLog2?: boolean; width?: number; height?: number }): TopLevelSpec {
  const rows = o.series.flatMap((s) => s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)).map(([x, y]) => ({ series: s.name, x, y, dashed: !!s.dashed })));
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: o.title, width: o.width ?? 520, height: o.height ?? 300, background: 'white',
    data: { values: rows },
    mark: { type: 'line', point: true },
    encoding: {
      x: o.xLog2
        ? { field: 'x', type: 'quantitative', title: o.xLabel, scale: { type: 'log', base: 2 }, axis: { format: 'd', values: [...new Set(rows.map((r) => r.x))].sort((p, q) => p - q) } }
        : { field: 'x', type: 'quantitative', title: o.xLabel, axis: { format: 'd', tickMinStep: 1 } },
      y: { field: 'y', type: 'quantitative', title: o.yLabel, scale: o.yMin !== undefined ? { domainMin: o.yMin } : { zero: false }, ...(o.yBytes ? { axis: { labelExpr: BYTES_LABEL.replace(/^indexof[^?]*\? '' : /, '') } } : {}) },
      color: { field: 'series', type: 'nominal', title: null, legend: { labelLimit: 320 } },
      strokeDash: { field: 'dashed', type: 'nominal', legend: null, scale: { domain: [false, true], range: [[1, 0], [6, 4]] } },
    },
  } as TopLevelSpec;
}

/** vega-lite spec laying out `panels` (each a spec such as {@link lineChartSpec}'s, with its own data) in a grid of `columns`, under one title. */
export function panelsSpec(title: string, panels: readonly TopLevelSpec[], columns = 2): TopLevelSpec {
  const concat = panels.map((p) => {
    const { $schema: _s, background: _b, ...rest } = p as unknown as Record<string, unknown>;
    return rest;
  });
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title, background: 'white', columns, concat,
    resolve: { scale: { color: 'shared' } },
  } as unknown as TopLevelSpec;
}

/** Render a vega-lite spec to an SVG document string (headless, no canvas). */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function cell(v: unknown): string {
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : v.toFixed(4);
  if (Array.isArray(v) && v.every((x) => typeof x === 'number')) return v.map((x) => (Number.isInteger(x) ? String(x) : (x as number).toFixed(4))).join(' / ');
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/** An HTML table from a header row and body rows (cells escaped). */
export function htmlTable(head: string[], rows: unknown[][]): string {
  return `<table><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows.map((r) => `<tr>${r.map((c) => `<td>${esc(cell(c))}</td>`).join('')}</tr>`).join('')}</tbody></table>`;
}

/** What {@link writeRunReport} writes. */
export interface RunReport {
  /** Run name (title of the page). */
  name: string;
  /** Flat summary (scalars and short arrays become rows; nested objects and long lists are left out). */
  summary: Record<string, unknown>;
  /** Per-node round records. */
  metrics: PlotRound[][];
  /** Plot title prefix, e.g. the protocol. */
  label: string;
  /** Optional per-node table: header and rows. */
  nodes?: { head: string[]; rows: unknown[][] };
}

/** Files written by {@link writeRunReport}. */
export interface ReportFiles {
  accuracyVsRound: string;
  accuracyVsBytes: string;
  html: string;
}

/** Write `accuracy-vs-round.svg`, `accuracy-vs-bytes.svg` and `report.html` (both plots inline, the summary tables) to `outDir`. */
export async function writeRunReport(outDir: string, r: RunReport): Promise<ReportFiles> {
  const round = await renderSvg(accuracyVsRoundSpec(r.metrics, `${r.label}: last-exit test accuracy per round`));
  const bytes = await renderSvg(accuracyVsBytesSpec(r.metrics, `${r.label}: accuracy vs bytes sent`));
  const files = { accuracyVsRound: join(outDir, 'accuracy-vs-round.svg'), accuracyVsBytes: join(outDir, 'accuracy-vs-bytes.svg'), html: join(outDir, 'report.html') };
  const rows = Object.entries(r.summary).filter(([, v]) => v !== undefined && v !== null && (typeof v !== 'object' || (Array.isArray(v) && v.length <= 16 && v.every((x) => typeof x !== 'object'))));
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fmfl run ${esc(r.name)}</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f4f4f4}figure{margin:1em 0}</style>
</head><body>
<h1>fmfl run ${esc(r.name)}</h1>
<figure>${round}</figure>
<figure>${bytes}</figure>
<h2>Summary</h2>
${htmlTable(['key', 'value'], rows.map(([k, v]) => [k, v]))}
${r.nodes ? `<h2>Nodes</h2>\n${htmlTable(r.nodes.head, r.nodes.rows)}` : ''}
</body></html>
`;
  await writeFile(files.accuracyVsRound, round);
  await writeFile(files.accuracyVsBytes, bytes);
  await writeFile(files.html, html);
  return files;
}
