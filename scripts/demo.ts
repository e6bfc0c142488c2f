/**
 * `npm run demo`: four fmfl-node processes on 127.0.0.1 federate the embedded MNIST-pretrained ViT on a non-IID
 * (Dirichlet 0.5) split of Fashion-MNIST with the rotating-leader protocol: LoRA r=8 on every projection + exit heads
 * trained locally through onnxruntime, the schema's default updates (dense 1-bit scaled signs with error feedback,
 * FedAvgM). Prints every node's per-round
 * accuracy and bytes, then a summary and the path of the plots (out/demo/).
 *
 * Node 0 serves the live dashboard: its URL is printed at start.
 *
 *   npm run demo -- [--rounds 10] [--local-steps 40] [--nodes 4] [--protocol leader|gossip] [--http-port 0]
 */
import { Command } from 'commander';
import { rm, writeFile, mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { writeRunReport } from './lib/report.ts';
import { readMetrics, startAll } from './lib/procs.ts';
import { FL_DEFAULTS } from '../src/round/fl-config.ts';

const o = new Command()
  .option('--nodes <n>', 'nodes', '4')
  .option('--rounds <n>', 'rounds', '10')
  .option('--local-steps <n>', 'local steps per round', '40')
  .option('--protocol <p>', 'leader | gossip', 'leader')
  .option('--out <dir>', 'output folder', 'out/demo')
  .option('--http-port <n>', "port of node 0's dashboard (0: any free port)", '0')
  .parse(process.argv)
  .opts<{ nodes: string; rounds: string; localSteps: string; protocol: string; out: string; httpPort: string }>();
const N = Number(o.nodes);
const outDir = resolve(o.out);
await rm(outDir, { recursive: true, force: true });
await mkdir(outDir, { recursive: true });
const t0 = Date.now();
const d = FL_DEFAULTS;
const updates = `${d.topk === 1 ? 'dense' : `top-${d.topk * 100}%`} ${d.bits}-bit${d.bits === 1 ? ' scaled-sign' : ''} updates${d.errorFeedback ? ' with error feedback' : ''}, ${d.aggregator}`;
console.log(`fmfl demo: ${N} nodes on 127.0.0.1, ${o.protocol} protocol, ${o.rounds} rounds x ${o.localSteps} local steps, Fashion-MNIST Dirichlet(0.5), LoRA r=8 (all projections) + exit heads, ${updates}\n`);

const nodes = await startAll({
  n: N,
  outDir,
  flags: (i) => [
    '--federation', 'demo', '--heartbeat-ms', '1000', '--expiry-ms', '6000',
    '--data', 'fashion-mnist', '--shard', `${i}/${N}`, '--alpha', '0.5', '--protocol', o.protocol,
    '--rounds', o.rounds, '--local-steps', o.localSteps, '--rank', '8', '--threads', '1',
    // Node 0 serves the live dashboard (and /status, /metrics) while the demo runs.
    ...(i === 0 ? ['--http-port', o.httpPort] : []),
  ],
  onLine: (i, line) => {
    if (line.startsWith('dashboard ')) console.log(`[node ${i}] ${line}  (live while the demo runs; fmfl-node status --http ${line.slice(10).replace(/\/$/, '')})`);
    if (line.startsWith('round ') || line.startsWith('exited')) console.log(`[node ${i}] ${line}`);
  },
});
const codes = await Promise.all(nodes.map((n) => n.exited));
const metrics = await Promise.all(nodes.map((n) => readMetrics(n)));
const last = (a: number[]): number => a[a.length - 1];
console.log('\nnode  rounds  last-exit acc  exit-ensemble  mean update B/round  mean bytes up/down per round  final state');
metrics.forEach((m, i) => {
  const f = m[m.length - 1];
  const mean = (k: 'updateBytes' | 'bytesUp' | 'bytesDown'): number => Math.round(m.reduce((a, x) => a + x[k], 0) / Math.max(1, m.length));
  console.log(`${String(i).padStart(4)}  ${String(m.length).padStart(6)}  ${f ? (last(f.accuracy) * 100).toFixed(2).padStart(12) + '%' : '            -'}  ${f ? (f.ensembleAccuracy * 100).toFixed(2).padStart(12) + '%' : '             -'}  ${String(mean('updateBytes')).padStart(19)}  ${`${mean('bytesUp')} / ${mean('bytesDown')}`.padStart(28)}  ${f?.hash.slice(0, 12) ?? ''}`);
});
const hashes = new Set(metrics.map((m) => m[m.length - 1]?.hash));
const report = await writeRunReport(outDir, {
  name: 'demo', label: `demo (${o.protocol})`, metrics,
  summary: { nodes: N, protocol: o.protocol, rounds: Number(o.rounds), localSteps: Number(o.localSteps), finalAccuracyPerNode: metrics.map((m) => (m.length ? last(m[m.length - 1].accuracy) : NaN)), identicalFinalState: hashes.size === 1, seconds: Math.round((Date.now() - t0) / 1000) },
  nodes: { head: ['node', 'rounds', 'last-exit acc', 'exit ensemble', 'final state'], rows: metrics.map((m, i) => [i, m.length, m.at(-1) ? last(m.at(-1)!.accuracy) : '-', m.at(-1)?.ensembleAccuracy ?? '-', m.at(-1)?.hash.slice(0, 12) ?? '']) },
});
await writeFile(join(outDir, 'metrics.json'), JSON.stringify(metrics, null, 1));
const ok = codes.every((c) => c === 0) && metrics.every((m) => m.length === Number(o.rounds));
console.log(`\n${o.protocol === 'leader' ? (hashes.size === 1 ? 'all nodes hold the same global model' : 'nodes ended on different states') : 'gossip: each node keeps its own model'}; ${Math.round((Date.now() - t0) / 1000)} s`);
console.log(`plots: ${report.accuracyVsRound} and ${report.accuracyVsBytes}; report: ${report.html}; metrics: ${join(outDir, 'metrics.json')}`);
process.exit(ok ? 0 : 1);
