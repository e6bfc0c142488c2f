/**
 * `npm run bench:scale -- [--json] [--sizes 8,16,32,64] [--proc-sizes 8,16] [--protocols leader,gossip]
 *   [--rounds 3] [--local-steps 2] [--topology full|random-k] [--k 6] [--model default|tiny] [--out out/bench-scale]`
 *
 * How a federation's cost grows with N. For each size and protocol, a fresh run of that many real nodes (libp2p
 * meshes + onnxruntime trainers) federating a few rounds of few local steps:
 * - in process (`--sizes`): one child process holding N nodes over the memory transport (sessions, backbone and
 *   dataset shared; heartbeat period from scripts/lib/inproc.ts);
 * - as processes (`--proc-sizes`): N `fmfl-node` processes on 127.0.0.1 over TCP.
 * Measured per run:
 * - membership convergence: from the first dial (in process: edges linked one dialling node at a time) until every
 *   view lists the N-1 others;
 * - per round: wall time (from the last node finishing round r-1 to the last node finishing round r; round 1 from the
 *   start of the runs), training time (the longest local-training phase of any node in that round: in process the
 *   nodes' steps interleave on one event loop, so it spans the whole training phase), and the rest (exchange,
 *   aggregation, verification, evaluation, checkpoint);
 * - wire bytes per node per round: raw libp2p connection bytes (src/mesh/wire-counter.ts: pnet/Noise/Yamux framing,
 *   heartbeats and all), sent and received, between the end of round 1 and the end of the last round;
 * - peak RSS: of the child process (in process), or the sum of the node processes' peaks (VmHWM, sampled);
 * - late joiner (leader, in process): after the last round a fresh node joins with no state and one configured
 *   peer; time from its start until it holds the federation's final version (membership, topic mesh, state pull).
 * Prints one JSON document (`--json`: nothing else on stdout) and writes it with SVG plots to --out; each point is
 * also appended to <out>/results.jsonl as it ends, and `--replot` rebuilds the document and plots from that file
 * without running anything (a long grid stopped early keeps what it measured); `--append` keeps the points already
 * there (a grid measured in several invocations).
 * Not part of `npm test`; no assertion on speed.
 */
import { cpus, loadavg, totalmem } from 'node:os';
import { appendFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createMesh, type Mesh } from '../src/mesh/index.ts';
import { Federation, type RoundMetrics } from '../src/round/index.ts';
import { saveBackbone } from '../src/model/backbone.ts';
import { backboneSpecs, exitSpecs, initWeights, VitConfigSchema } from '../src/model/vit.ts';
import { ortVersion } from '../src/runtime/index.ts';
import { silentLogger } from '../src/util/log.ts';
import { inprocMeshOptions, linkInWaves } from './lib/inproc.ts';
import { lineChartSpec, renderSvg } from './lib/report.ts';
import { runChildScript, startProc, type ProcNode } from './lib/procs.ts';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}
const list = (s: string): string[] => s.split(',').map((x) => x.trim()).filter(Boolean);

interface RunSpec {
  mode: 'inproc' | 'procs';
  n: number;
  protocol: 'leader' | 'gossip';
  rounds: number;
  localSteps: number;
  topology: 'full' | 'random-k';
  k: number;
  model: 'default' | 'tiny';
  outDir: string;
}

interface RunResult {
  mode: RunSpec['mode'];
  n: number;
  protocol: RunSpec['protocol'];
  topology: string;
  heartbeatMs: number;
  setupMs: number;
  /** In process: time to connect every edge, one dialling node at a time (scripts/lib/inproc.ts linkInWaves). */
  linkMs: number | null;
  membershipConvergeMs: number | null;
  rounds: { round: number; wallMs: number; trainMs: number; trainMeanMs: number; otherMs: number }[];
  meanRoundWallMs: number;
  meanRoundTrainMs: number;
  meanRoundOtherMs: number;
  wireBytesPerNodePerRound: { sent: number; received: number } | null;
  /** Round payload bytes (updates, aggregates, state pulls) per node per round, from the round metrics. */
  payloadBytesPerNodePerRound: { up: number; down: number };
  peakRssMB: number;
  rssPerNodeMB: number;
  lateJoinCatchUpMs: number | null;
  lateJoinNote?: string;
  stopMs: number | null;
  everyNodeFinished: boolean;
  identicalFinalState: boolean;
  loadAvg1: number;
  seconds: number;
}

const mean = (xs: number[]): number => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
const round1 = (x: number): number => Math.round(x * 10) / 10;

function edges(n: number, topology: RunSpec['topology'], k: number): [number, number][] {
  const e: [number, number][] = [];
  if (topology === 'full' || n <= k + 1) {
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) e.push([i, j]);
    return e;
  }
  // A ring plus seeded chords up to degree ~k (as scripts/simulate.ts --topology random-k).
  for (let i = 0; i < n; i++) e.push([i, (i + 1) % n]);
  let s = 42;
  const rnd = (): number => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
  for (let i = 0; i < n; i++) for (let c = 2; c < k; c++) { const j = Math.floor(rnd() * n); if (j !== i) e.push([i, j]); }
  return e;
}

async function tinyBackbone(dir: string): Promise<{ backbone: string; backboneDir: string }> {
  const cfg = VitConfigSchema.parse({ patch: 7, dim: 16, depth: 2, heads: 2, mlp: 32 });
  await mkdir(dir, { recursive: true });
  await saveBackbone('tiny', cfg, initWeights([...backboneSpecs(cfg), ...exitSpecs(cfg)], 5), { training: { note: 'random init, bench:scale --model tiny' }, testAccuracy: [0, 0] }, dir);
  return { backbone: 'tiny', backboneDir: dir };
}

function flConfig(spec: RunSpec, i: number, n: number, model: Record<string, unknown>): Record<string, unknown> {
  return {
    protocol: spec.protocol, rounds: spec.rounds, localSteps: spec.localSteps, batch: model.backbone === 'tiny' ? 16 : 64, shard: `${i}/${n}`,
    alpha: 0.5, partitionSeed: 42, testSlice: 100, prototypeSamples: 250, threads: 1, minMembers: n, ...model,
  };
}

/** Per-round wall/train/other from each node's round-completion times (ms since runStart) and metrics. */
function roundTable(done: number[][], metrics: RoundMetrics[][], rounds: number): RunResult['rounds'] {
  const out: RunResult['rounds'] = [];
  let prev = 0;
  for (let r = 1; r <= rounds; r++) {
    const ts = done.map((d) => d[r - 1]).filter((x) => x !== undefined);
    const ms = metrics.map((m) => m.find((x) => x.round === r)?.trainMs).filter((x): x is number => x !== undefined);
    if (!ts.length) break;
    const end = Math.max(...ts);
    const train = Math.max(...ms);
    out.push({ round: r, wallMs: Math.round(end - prev), trainMs: Math.round(train), trainMeanMs: Math.round(mean(ms)), otherMs: Math.round(end - prev - train) });
    prev = end;
  }
  return out;
}

function summarize(base: Omit<RunResult, 'meanRoundWallMs' | 'meanRoundTrainMs' | 'meanRoundOtherMs' | 'payloadBytesPerNodePerRound' | 'everyNodeFinished' | 'identicalFinalState'>, metrics: RoundMetrics[][], rounds: number): RunResult {
  return {
    ...base,
    meanRoundWallMs: Math.round(mean(base.rounds.map((r) => r.wallMs))),
    meanRoundTrainMs: Math.round(mean(base.rounds.map((r) => r.trainMs))),
    meanRoundOtherMs: Math.round(mean(base.rounds.map((r) => r.otherMs))),
    payloadBytesPerNodePerRound: { up: Math.round(mean(metrics.flatMap((m) => m.map((x) => x.bytesUp)))), down: Math.round(mean(metrics.flatMap((m) => m.map((x) => x.bytesDown)))) },
    everyNodeFinished: metrics.every((m) => m.at(-1)?.version === rounds),
    identicalFinalState: new Set(metrics.map((m) => m.at(-1)?.hash)).size === 1,
  };
}

// ------------------------------------------------------------------------------------------------------------
// In process: runs inside a child (`--child <spec>`), so each run's peak RSS is its own.

async function runInproc(spec: RunSpec): Promise<RunResult> {
  const t0 = performance.now();
  const N = spec.n;
  const hb = inprocMeshOptions(N);
  const model = spec.model === 'tiny' ? await tinyBackbone(join(spec.outDir, 'models')) : {};
  const tag = `bs-${process.pid}`;
  const meshes: Mesh[] = [];
  for (let i = 0; i < N; i++) {
    const m = await createMesh({ federation: 'bench', listen: [`/memory/${tag}-${i}`], ...hb });
    await m.start();
    meshes.push(m);
  }
  const feds = await Promise.all(meshes.map((m, i) => Federation.create(m, flConfig(spec, i, N, model), { logger: silentLogger() })));
  const setupMs = performance.now() - t0;
  const tLink = performance.now();
  const linkMs = await linkInWaves(meshes, edges(N, spec.topology, spec.k));
  let converge: number | null = null;
  while (performance.now() - tLink < 180_000) {
    if (meshes.every((m) => m.membership.memberIds().length === N - 1)) {
      converge = performance.now() - tLink;
      break;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const metrics: RoundMetrics[][] = meshes.map(() => []);
  const done: number[][] = meshes.map(() => []);
  const wire: { sent: number; received: number }[][] = meshes.map(() => []);
  const runStart = performance.now();
  await Promise.all(feds.map((f, i) => f.run({
    onRound: (m) => {
      metrics[i].push(m);
      done[i].push(performance.now() - runStart);
      wire[i].push({ sent: meshes[i].wire.bytesOut, received: meshes[i].wire.bytesIn });
    },
  }).catch((err) => process.stderr.write(`node ${i} failed: ${String(err)}\n`))));

  let lateJoinCatchUpMs: number | null = null;
  let lateJoinNote: string | undefined;
  if (spec.protocol === 'leader') {
    const tl = performance.now();
    const m = await createMesh({ federation: 'bench', listen: [`/memory/${tag}-late`], peers: [meshes[N - 1].multiaddrs()[0]], ...hb });
    await m.start();
    const late = await Federation.create(m, { ...flConfig(spec, N - 1, N, model), minMembers: 2 }, { logger: silentLogger() });
    await late.run();
    if (late.protocol.round === spec.rounds) lateJoinCatchUpMs = Math.round(performance.now() - tl);
    else lateJoinNote = `late joiner ended at version ${late.protocol.round}, not ${spec.rounds}`;
    await late.stop();
    await m.stop();
    await late.release();
  } else {
    lateJoinNote = 'gossip has no state pull: a joiner replicates public models only from messages sent after it joined';
  }
  const ts = performance.now();
  await Promise.all(feds.map((f) => f.stop().catch(() => {})));
  await Promise.all(meshes.map((m) => m.stop().catch(() => {})));
  const stopMs = performance.now() - ts;
  for (const f of feds) await f.release();

  const R = spec.rounds;
  const perNode = wire.filter((w) => w.length === R && R >= 2).map((w) => ({ sent: (w[R - 1].sent - w[0].sent) / (R - 1), received: (w[R - 1].received - w[0].received) / (R - 1) }));
  const peak = process.resourceUsage().maxRSS / 1024;
  return summarize({
    mode: 'inproc', n: N, protocol: spec.protocol, topology: spec.topology === 'full' || N <= spec.k + 1 ? 'full' : `random-${spec.k}`, heartbeatMs: hb.heartbeatIntervalMs,
    setupMs: Math.round(setupMs), linkMs: Math.round(linkMs), membershipConvergeMs: converge === null ? null : Math.round(converge),
    rounds: roundTable(done, metrics, R),
    wireBytesPerNodePerRound: perNode.length ? { sent: Math.round(mean(perNode.map((p) => p.sent))), received: Math.round(mean(perNode.map((p) => p.received))) } : null,
    peakRssMB: Math.round(peak), rssPerNodeMB: round1(peak / N),
    lateJoinCatchUpMs, lateJoinNote, stopMs: Math.round(stopMs), loadAvg1: round1(loadavg()[0]), seconds: Math.round((performance.now() - t0) / 1000),
  }, metrics, R);
}

function runChild(spec: RunSpec): Promise<RunResult> {
  return runChildScript<RunResult>(resolve(import.meta.dirname, 'bench-scale.ts'), spec, `run ${spec.mode} n=${spec.n} ${spec.protocol}`);
}

// ------------------------------------------------------------------------------------------------------------
// As processes: N fmfl-node processes over TCP loopback.

async function vmHwmKB(pid: number): Promise<number> {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

async function runProcs(spec: RunSpec): Promise<RunResult> {
  const t0 = performance.now();
  const N = spec.n;
  const outDir = join(spec.outDir, `procs-${spec.protocol}-n${N}`);
  await rm(outDir, { recursive: true, force: true });
  const model = spec.model === 'tiny' ? await tinyBackbone(join(spec.outDir, 'models')) : {};
  const E = edges(N, spec.topology, spec.k);
  const joins = new Map<number, Set<string>>();
  const done: number[][] = Array.from({ length: N }, () => []);
  let allStarted = 0;
  let converge: number | null = null;
  let runStart = 0;
  const check = (): void => {
    if (converge === null && allStarted && [...Array(N).keys()].every((i) => (joins.get(i)?.size ?? 0) >= N - 1)) converge = performance.now() - allStarted;
  };
  const nodes: ProcNode[] = [];
  const peaks = new Map<number, number>();
  const sampler = setInterval(() => {
    for (const nd of nodes) {
      const pid = nd?.proc?.pid;
      if (pid) void vmHwmKB(pid).then((kb) => kb > 0 && peaks.set(pid, Math.max(peaks.get(pid) ?? 0, kb)));
    }
  }, 500);
  const flags = (i: number): string[] => {
    const c = flConfig(spec, i, N, model);
    const profile = join(outDir, `node-${i}.json`);
    return ['--federation', 'bench', '--heartbeat-ms', '1000', '--expiry-ms', '6000', '--config', profile, '--protocol', spec.protocol, '--shard', `${i}/${N}`,
      '--rounds', String(spec.rounds), '--local-steps', String(spec.localSteps), '--batch', String(c.batch), '--test-slice', '100', '--threads', '1',
      ...(spec.model === 'tiny' ? ['--backbone', 'tiny'] : [])];
  };
  await mkdir(outDir, { recursive: true });
  for (let i = 0; i < N; i++) {
    const c = flConfig(spec, i, N, model);
    await writeFile(join(outDir, `node-${i}.json`), JSON.stringify({ fl: { prototypeSamples: c.prototypeSamples, ...(spec.model === 'tiny' ? { backboneDir: c.backboneDir } : {}) } }));
  }
  const opts = {
    n: N, outDir, flags,
    peersOf: (i: number) => E.filter(([a, b]) => Math.max(a, b) === i && a !== b).map(([a, b]) => Math.min(a, b)),
    onLine: (i: number, line: string) => {
      const j = /^join (\S+)/.exec(line);
      if (j) { (joins.get(i) ?? joins.set(i, new Set()).get(i)!).add(j[1]); check(); }
      const r = /^round (\d+) /.exec(line);
      if (r) {
        if (!runStart) runStart = converge !== null ? allStarted + converge : allStarted;
        done[i].push(performance.now() - runStart);
      }
    },
  };
  for (let i = 0; i < N; i++) await startProc(opts, i, nodes);
  const setupMs = performance.now() - t0;
  allStarted = performance.now();
  check();
  const codes = await Promise.all(nodes.map((n) => n.exited));
  clearInterval(sampler);
  const metrics: (RoundMetrics & { wireIn?: number; wireOut?: number })[][] = [];
  for (const nd of nodes) {
    try {
      metrics.push((await readFile(join(nd.dir, 'metrics.jsonl'), 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((x) => !x.final));
    } catch {
      metrics.push([]);
    }
  }
  const R = spec.rounds;
  const perNode = metrics.filter((m) => m.length === R && R >= 2 && m[0].wireOut !== undefined)
    .map((m) => ({ sent: (m[R - 1].wireOut! - m[0].wireOut!) / (R - 1), received: (m[R - 1].wireIn! - m[0].wireIn!) / (R - 1) }));
  const peakMB = [...peaks.values()].reduce((a, b) => a + b, 0) / 1024;
  if (codes.some((c) => c !== 0)) process.stderr.write(`bench:scale procs n=${N}: exit codes ${codes.join(',')}\n`);
  return summarize({
    mode: 'procs', n: N, protocol: spec.protocol, topology: spec.topology === 'full' || N <= spec.k + 1 ? 'full' : `random-${spec.k}`, heartbeatMs: 1000,
    setupMs: Math.round(setupMs), linkMs: null, membershipConvergeMs: converge === null ? null : Math.round(converge),
    rounds: roundTable(done, metrics, R),
    wireBytesPerNodePerRound: perNode.length ? { sent: Math.round(mean(perNode.map((p) => p.sent))), received: Math.round(mean(perNode.map((p) => p.received))) } : null,
    peakRssMB: Math.round(peakMB), rssPerNodeMB: round1(peakMB / N),
    lateJoinCatchUpMs: null, lateJoinNote: 'measured in process only', stopMs: null, loadAvg1: round1(loadavg()[0]), seconds: Math.round((performance.now() - t0) / 1000),
  }, metrics, R);
}

// ------------------------------------------------------------------------------------------------------------

const childAt = process.argv.indexOf('--child');
if (childAt >= 0) {
  const spec = JSON.parse(process.argv[childAt + 1]) as RunSpec;
  const res = await runInproc(spec);
  // Also kept on disk as each point ends, so a long grid stopped early keeps what it measured (see --replot).
  await appendFile(join(spec.outDir, 'results.jsonl'), JSON.stringify(res) + '\n');
  process.stdout.write(`RESULT ${JSON.stringify(res)}\n`);
  process.exit(0);
}

const JSON_ONLY = process.argv.includes('--json');
const log = (s: string): void => void (!JSON_ONLY && process.stderr.write(s + '\n'));
const outDir = resolve(arg('out', 'out/bench-scale'));
await mkdir(outDir, { recursive: true });
const base = {
  rounds: Number(arg('rounds', '3')), localSteps: Number(arg('local-steps', '2')), topology: arg('topology', 'full') as RunSpec['topology'],
  k: Number(arg('k', '6')), model: arg('model', 'default') as RunSpec['model'], outDir,
};
const protocols = list(arg('protocols', 'leader,gossip')) as RunSpec['protocol'][];
const specs: RunSpec[] = [
  ...list(arg('sizes', '8,16,32,64')).map(Number).flatMap((n) => protocols.map((protocol) => ({ ...base, mode: 'inproc' as const, n, protocol }))),
  ...list(arg('proc-sizes', '8,16')).map(Number).flatMap((n) => protocols.map((protocol) => ({ ...base, mode: 'procs' as const, n, protocol }))),
];
const t0 = Date.now();
const results: RunResult[] = [];
const REPLOT = process.argv.includes('--replot');
if (REPLOT) {
  // No runs: the JSON document and plots from the points out/.../results.jsonl holds (each written as it ended).
  const lines = (await readFile(join(outDir, 'results.jsonl'), 'utf8')).split('\n').filter(Boolean);
  results.push(...lines.map((l) => JSON.parse(l) as RunResult));
} else if (!process.argv.includes('--append')) await rm(join(outDir, 'results.jsonl'), { force: true });
for (const s of REPLOT ? [] : specs) {
  log(`bench:scale ${s.mode} n=${s.n} ${s.protocol} (load ${loadavg()[0].toFixed(1)}) ...`);
  try {
    const r = s.mode === 'inproc' ? await runChild(s) : await runProcs(s);
    if (s.mode === 'procs') await appendFile(join(outDir, 'results.jsonl'), JSON.stringify(r) + '\n');
    results.push(r);
    log(`  round ${(r.meanRoundWallMs / 1000).toFixed(1)} s (train ${(r.meanRoundTrainMs / 1000).toFixed(1)} s), wire ${r.wireBytesPerNodePerRound?.sent ?? '-'} B sent/node/round, peak RSS ${r.peakRssMB} MB, converge ${r.membershipConvergeMs} ms, late join ${r.lateJoinCatchUpMs ?? '-'} ms`);
  } catch (err) {
    log(`  failed: ${(err as Error).message}`);
  }
}
const doc = {
  bench: 'scale',
  machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, memGB: Math.round(totalmem() / 2 ** 30), ort: ortVersion(), node: process.versions.node },
  settings: { ...base, outDir: undefined, protocols, batch: base.model === 'tiny' ? 16 : 64, threadsPerNode: 1, testSlice: 100 },
  results,
  seconds: Math.round((Date.now() - t0) / 1000),
};
await writeFile(join(outDir, 'bench-scale.json'), JSON.stringify(doc, null, 1));
const series = (pick: (r: RunResult) => number | undefined, label: string) => results.length === 0 ? [] : [...new Set(results.map((r) => `${r.mode} ${r.protocol}`))].map((key) => ({
  name: `${key} ${label}`.trim(),
  dashed: key.startsWith('procs'),
  points: results.filter((r) => `${r.mode} ${r.protocol}` === key).map((r) => [r.n, pick(r) ?? NaN] as [number, number]),
}));
if (results.length) {
  const lineChart = (o: Parameters<typeof lineChartSpec>[0]): Promise<string> => renderSvg(lineChartSpec(o));
  await writeFile(join(outDir, 'round-time-vs-n.svg'), await lineChart({ title: 'seconds per round vs N (total; training)', xLabel: 'nodes N', yLabel: 'seconds per round', series: [...series((r) => r.meanRoundWallMs / 1000, ''), ...series((r) => r.meanRoundTrainMs / 1000, 'train')], yMin: 0 }));
  await writeFile(join(outDir, 'wire-bytes-vs-n.svg'), await lineChart({ title: 'wire bytes sent per node per round vs N', xLabel: 'nodes N', yLabel: 'bytes', series: series((r) => r.wireBytesPerNodePerRound?.sent, ''), yMin: 0, yBytes: true }));
  await writeFile(join(outDir, 'rss-vs-n.svg'), await lineChart({ title: 'peak RSS per node vs N', xLabel: 'nodes N', yLabel: 'MB per node', series: series((r) => r.rssPerNodeMB, ''), yMin: 0 }));
}
process.stdout.write(JSON.stringify(doc) + '\n');
log(`plots and JSON: ${outDir}`);
