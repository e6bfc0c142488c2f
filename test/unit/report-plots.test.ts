/**
 * The simulator's and the demo's plots (scripts/lib/report.ts): vega-lite rendered to SVG in Node from a small
 * metrics fixture. The SVGs carry the axis titles, one line per node plus the mean, integer round ticks, percent
 * accuracy labels and B/KB/MB byte labels; report.html holds both plots inline and the summary.
 */
import test from 'ava';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { accuracyVsBytesSpec, accuracyVsRoundSpec, lineChartSpec, MEAN_SERIES, panelsSpec, renderSvg, writeRunReport, type PlotRound } from '../../scripts/lib/report.ts';
import { tempDir } from '../temp-dirs.ts';

const NODES = 3;
const ROUNDS = 7;
const metrics: PlotRound[][] = Array.from({ length: NODES }, (_, i) =>
  Array.from({ length: ROUNDS }, (_, k) => ({ round: k + 1, accuracy: [0.2, 0.4 + 0.05 * k + 0.02 * i], bytesUp: 30_000 * (i + 1) + 1_000 * k })));

const texts = (svg: string): string[] => [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]);
/** Paths drawn by line marks (one per series), not axes, grid or legend. */
const linePaths = (svg: string): number => [...svg.matchAll(/<g class="mark-line role-mark[^"]*"[^>]*>(.*?)<\/g>/g)].reduce((n, m) => n + (m[1].match(/<path/g)?.length ?? 0), 0);

test('accuracy vs round: axis titles, one line per node plus the mean, integer rounds, percent labels', async (t) => {
  const svg = await renderSvg(accuracyVsRoundSpec(metrics, 'leader: accuracy'));
  t.true(svg.startsWith('<svg'));
  const words = texts(svg);
  for (const w of ['round', 'test accuracy (last exit)', 'leader: accuracy', MEAN_SERIES, 'node 0', 'node 2']) t.true(words.includes(w), w);
  t.is(linePaths(svg), NODES + 1);
  const rounds = words.filter((w) => /^[\d.]+$/.test(w));
  t.true(rounds.length >= 3);
  t.true(rounds.every((w) => Number.isInteger(Number(w)) && Number(w) >= 1 && Number(w) <= ROUNDS), rounds.join(','));
  const pct = words.filter((w) => w.endsWith('%'));
  t.true(pct.length >= 3, words.join('|'));
  t.true(pct.every((w) => /^\d+%$/.test(w)));
});

test('accuracy vs bytes: a log axis labelled in KB / MB, one line per node plus the mean', async (t) => {
  const svg = await renderSvg(accuracyVsBytesSpec(metrics, 'leader: bytes'));
  const words = texts(svg);
  t.true(words.includes('bytes sent by the node (cumulative)'));
  t.true(words.includes('test accuracy (last exit)'));
  t.is(linePaths(svg), NODES + 1);
  const bytes = words.filter((w) => /\d (B|KB|MB|GB)$/.test(w));
  t.true(bytes.some((w) => w.endsWith(' KB')), words.join('|'));
  t.true(bytes.some((w) => w.endsWith(' MB')), words.join('|'));
  t.false(words.some((w) => /^\d{5,}$/.test(w)), 'no raw byte counts on the axis');
});

test('writeRunReport writes both SVGs and report.html with the plots inline and the summary table', async (t) => {
  const dir = await tempDir('fmfl-report-');
  const files = await writeRunReport(dir, { name: 'fixture', label: 'leader', metrics, summary: { nodes: NODES, rounds: ROUNDS, finalAccuracyMean: 0.7123, perExit: [0.5, 0.7], finals: [{ node: 0 }] }, nodes: { head: ['node', 'acc'], rows: [[0, 0.7], [1, 0.72]] } });
  t.is(files.html, join(dir, 'report.html'));
  const html = await readFile(files.html, 'utf8');
  t.is(html.match(/<svg/g)?.length, 2, 'both plots inline');
  t.regex(html, /<td>finalAccuracyMean<\/td><td>0\.7123<\/td>/);
  t.regex(html, /<td>perExit<\/td><td>0\.5000 \/ 0\.7000<\/td>/);
  t.notRegex(html, /<td>finals<\/td>/, 'nested objects stay in summary.json');
  t.regex(html, /<h2>Nodes<\/h2>/);
  t.regex(await readFile(files.accuracyVsRound, 'utf8'), /^<svg/);
  t.regex(await readFile(files.accuracyVsBytes, 'utf8'), /^<svg/);
});

test('the benchmark line chart: one line per series, integer x ticks, a bytes y axis', async (t) => {
  const svg = await renderSvg(lineChartSpec({ title: 'wire bytes vs N', xLabel: 'nodes N', yLabel: 'bytes', yMin: 0, yBytes: true, series: [
    { name: 'inproc leader', points: [[2, 40_000], [4, 90_000], [8, 2_100_000]] },
    { name: 'procs leader', dashed: true, points: [[2, 50_000], [4, 120_000], [8, NaN]] },
  ] }));
  const words = texts(svg);
  for (const w of ['nodes N', 'bytes', 'wire bytes vs N', 'inproc leader', 'procs leader']) t.true(words.includes(w), w);
  t.is(linePaths(svg), 2);
  t.true(words.some((w) => / MB$/.test(w)), words.join('|'));
  t.false(words.some((w) => /^\d+\.\d+$/.test(w)), 'integer node counts on the x axis');
});

test('panels: one SVG with every panel title, a log2 x axis ticked at the data, a line per series per panel', async (t) => {
  const series = [{ name: 'in process gossip', points: [[8, 2], [16, 5], [32, 9]] as [number, number][] }, { name: 'processes leader', dashed: true, points: [[8, 1], [16, 4]] as [number, number][] }];
  const panel = (title: string): ReturnType<typeof lineChartSpec> => lineChartSpec({ title, xLabel: 'nodes N', yLabel: 'seconds', series, yMin: 0, xLog2: true, width: 300, height: 200 });
  const svg = await renderSvg(panelsSpec('cost vs N', [panel('training'), panel('rest'), panel('wire'), panel('rss')]));
  t.true(svg.startsWith('<svg'));
  const words = texts(svg);
  for (const w of ['cost vs N', 'training', 'rest', 'wire', 'rss', 'in process gossip', 'processes leader']) t.true(words.includes(w), w);
  t.is(linePaths(svg), 4 * series.length);
  const ticks = words.filter((w) => /^\d+$/.test(w)).map(Number);
  for (const n of [8, 16, 32]) t.true(ticks.includes(n), `tick ${n}`);
  t.false(ticks.includes(24), 'no linear tick between 16 and 32');
});
