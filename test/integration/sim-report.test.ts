/**
 * `npm run simulate` writes its report: a two-node in-process simulation over the memory transport (2 rounds x 2
 * local steps) leaves summary.json, both vega-lite SVG plots and report.html with the plots inline and the summary.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from '../temp-dirs.ts';

const run = promisify(execFile);

test('a short inproc simulation writes out/sim/<name>/report.html with both plots and the summary', async (t) => {
  t.timeout(240_000);
  const out = await tempDir('fmfl-sim-report-');
  const root = join(import.meta.dirname, '..', '..');
  const { stdout } = await run(process.execPath, ['--import', 'tsx', 'scripts/simulate.ts', '--nodes', '2', '--mode', 'inproc', '--transport', 'memory',
    '--rounds', '2', '--local-steps', '2', '--test-slice', '100', '--name', 'report', '--out', out], { cwd: root, maxBuffer: 16 * 1024 * 1024 });
  const dir = join(out, 'report');
  t.regex(stdout, new RegExp(`report: ${join(dir, 'report.html').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  const summary = JSON.parse(await readFile(join(dir, 'summary.json'), 'utf8')) as { rounds: number; finalAccuracyMean: number };
  t.is(summary.rounds, 2);
  const html = await readFile(join(dir, 'report.html'), 'utf8');
  t.is(html.match(/<svg/g)?.length, 2, 'both plots inline');
  t.regex(html, />round<\/text>/);
  t.regex(html, />bytes sent by the node \(cumulative\)<\/text>/);
  t.regex(html, new RegExp(`<td>finalAccuracyMean</td><td>${Number.isInteger(summary.finalAccuracyMean) ? summary.finalAccuracyMean : summary.finalAccuracyMean.toFixed(4)}</td>`));
  t.regex(html, /<h2>Nodes<\/h2>/);
  for (const f of ['accuracy-vs-round.svg', 'accuracy-vs-bytes.svg']) t.regex(await readFile(join(dir, f), 'utf8'), /^<svg/);
});
