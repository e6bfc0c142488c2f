/**
 * `npm run bench:scale -- [--json] [--sizes 8,16,32,64] [--proc-sizes 8,16] [--protocols leader,gossip]
 *   [--rounds 3] [--local-steps 2] [--topology full|random-k] [--k 6] [--model default|tiny] [--heartbeat-ms <ms>]
 *   [--max-s 3600] [--append] [--replot [--from <bench-scale.json>]] [--assets scripts/assets] [--out out/bench-scale]`
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
 * Each point also records its config, topology (and mean degree), heartbeat and the load average over the point (the
 * machine may be shared). `--heartbeat-ms` overrides the in-process heartbeat period; `--max-s` bounds an in-process
 * point's rounds (it is then reported as it stands, `timedOut`).
 * Prints one JSON document (`--json`: nothing else on stdout) and writes it with the figure (bench-scale.svg: training
 * and the rest of the round, wire bytes and peak RSS per node, vs N) to --out, and with `--assets <dir>` to that
 * directory too (the README's copy is scripts/assets/); each point is
 * also appended to <out>/results.jsonl as it ends, and `--replot` rebuilds the document and plots from that file
 * without running anything (a long grid stopped early keeps what it measured; `--from <file>`: from the points of a
 * document bench:scale wrote, e.g. scripts/assets/bench-scale.json); `--append` keeps the points already
 * there (a grid measured in several invocations).
 * Not part of `npm test`; no assertion on speed.
 */
import { cpus, loadavg, totalmem } from 'node:os';
import { appendFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { createMesh, loadOrCreateIdentity, type Mesh } from '../src/mesh/index.ts';
import { Federation, type RoundMetrics } from '../src/round/index.ts';
import { saveBackbone } from '../src/model/backbone.ts';
import { backboneSpecs, exitSpecs, initWeights, VitConfigSchema } from '../src/model/vit.ts';
import { ortVersion } from '../src/runtime/index.ts';
import { silentLogger } from '../src/util/log.ts';
import { inprocMeshOptions, linkInWaves } from './lib/inproc.ts';
import { lineChartSpec, panelsSpec, renderSvg } from './lib/report.ts';
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
  /** In process: membership heartbeat period (default: scripts/lib/inproc.ts inprocHeartbeat(N)); expiry 6x. */
  heartbeatMs?: number;
  /** In process: the most seconds the rounds may take before the point is stopped and reported as it stands. */
  maxS: number;
  outDir: string;
}

interface RunResult {
  mode: RunSpec['mode'];
  n: number;
  protocol: RunSpec['protocol'];
  topology: string;
  /** Mean number of connections per node the topology asks for (N-1 for full). */
  meanDegree: number;
  /** What each node ran (points of one grid may come from several invocations, see --append). */
  config: { model: RunSpec['model']; rounds: number; localSteps: number; batch: number };
  heartbeatMs: number;
  /** Membership expiry (as processes: PROC_EXPIRY_MS; in process 6 x heartbeatMs). */
  memberExpiryMs?: number;
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
  /** In process: the rounds were stopped after --max-s. */
  timedOut?: boolean;
  /** 1-minute load average when the point ended (kept for older points). */
  loadAvg1: number;
  /** 1-minute load average over the point, sampled every 5 s: the machine is shared, so each point says how loaded it ran. */
  load?: { start: number; min: number; mean: number; max: number };
  seconds: number;
}

/** Samples the 1-minute load average every 5 s from now until `stop()`. */
function loadSampler(): { stop: () => NonNullable<RunResult['load']> } {
  const xs = [loadavg()[0]];
  const t = setInterval(() => xs.push(loadavg()[0]), 5000);
  t.unref();
  return {
    stop: () => {
      clearInterval(t);
      xs.push(loadavg()[0]);
      return { start: round1(xs[0]), min: round1(Math.min(...xs)), mean: round1(mean(xs)), max: round1(Math.max(...xs)) };
    },
  };
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

/** The topology and config fields every point records. */
function pointOf(spec: RunSpec): Pick<RunResult, 'mode' | 'n' | 'protocol' | 'topology' | 'meanDegree' | 'config'> {
  const e = edges(spec.n, spec.topology, spec.k);
  const batch = spec.model === 'tiny' ? 16 : 64;
  return {
    mode: spec.mode, n: spec.n, protocol: spec.protocol, topology: spec.topology === 'full' || spec.n <= spec.k + 1 ? 'full' : `random-${spec.k}`,
    meanDegree: round1((2 * new Set(e.map(([a, b]) => `${Math.min(a, b)}-${Math.max(a, b)}`)).size) / spec.n),
    config: { model: spec.model, rounds: spec.rounds, localSteps: spec.localSteps, batch },
  };
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
  const load = loadSampler();
  const N = spec.n;
  const hb = inprocMeshOptions(N, { heartbeatMs: spec.heartbeatMs, fullMesh: spec.topology === 'full' || N <= spec.k + 1 });
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
  while (performance.now() - tLink < Math.max(180_000, 4 * hb.heartbeatIntervalMs)) {
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
  // A status line on stderr every 30 s (versions and views over the nodes), and the --max-s bound on the rounds: a
  // point that does not finish still reports what it measured (everyNodeFinished false, timedOut true).
  const span = (xs: number[]): string => `${Math.min(...xs)}..${Math.max(...xs)}`;
  const status = setInterval(() => process.stderr.write(`  t=${Math.round((performance.now() - runStart) / 1000)} s versions ${span(metrics.map((m) => m.at(-1)?.version ?? 0))} views ${span(meshes.map((m) => m.membership.memberIds().length))} of ${N - 1} rss ${Math.round(process.memoryUsage.rss() / 2 ** 20)} MB load ${loadavg()[0].toFixed(1)}\n`), 30_000);
  let timedOut = false;
  let bound: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.all(feds.map((f, i) => f.run({
      onRound: (m) => {
        metrics[i].push(m);
        done[i].push(performance.now() - runStart);
        wire[i].push({ sent: meshes[i].wire.bytesOut, received: meshes[i].wire.bytesIn });
      },
    }).catch((err) => process.stderr.write(`node ${i} failed: ${String(err)}\n`)))),
    new Promise<void>((r) => (bound = setTimeout(() => { timedOut = true; r(); }, spec.maxS * 1000))),
  ]);
  clearTimeout(bound);
  clearInterval(status);

  let lateJoinCatchUpMs: number | null = null;
  let lateJoinNote: string | undefined;
  if (timedOut) lateJoinNote = `rounds stopped after --max-s ${spec.maxS}`;
  else if (spec.protocol === 'leader') {
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
    ...pointOf(spec), heartbeatMs: hb.heartbeatIntervalMs, memberExpiryMs: hb.memberExpiryMs,
    setupMs: Math.round(setupMs), linkMs: Math.round(linkMs), membershipConvergeMs: converge === null ? null : Math.round(converge),
    rounds: roundTable(done, metrics, R),
    wireBytesPerNodePerRound: perNode.length ? { sent: Math.round(mean(perNode.map((p) => p.sent))), received: Math.round(mean(perNode.map((p) => p.received))) } : null,
    peakRssMB: Math.round(peak), rssPerNodeMB: round1(peak / N),
    lateJoinCatchUpMs, lateJoinNote, timedOut, stopMs: Math.round(stopMs), loadAvg1: round1(loadavg()[0]), load: load.stop(), seconds: Math.round((performance.now() - t0) / 1000),
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

/**
 * Membership heartbeat and expiry of the node processes. The expiry is 30 s rather than 6 x 1 s: on this shared
 * 2-vCPU machine (load average 18-37 with 16 processes and other jobs) a process's event loop stalled for more than
 * 6 s during its training steps, and its peers dropped it from their views for the rest of the round (the 8-process
 * gossip point ran with 6 s: rounds 2 and 3 mixed 1-4 of 7 replicas).
 */
const PROC_HEARTBEAT_MS = 1000;
const PROC_EXPIRY_MS = 30_000;

/** `n` distinct free TCP ports on 127.0.0.1 (bound to port 0 and released; the nodes bind them right after). */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all([...Array(n)].map(() => new Promise<Server>((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => res(srv));
  })));
  const ports = servers.map((srv) => (srv.address() as AddressInfo).port);
  await Promise.all(servers.map((srv) => new Promise((r) => srv.close(r))));
  return ports;
}

async function runProcs(spec: RunSpec): Promise<RunResult> {
  const t0 = performance.now();
  const load = loadSampler();
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
    return ['--federation', 'bench', '--heartbeat-ms', String(PROC_HEARTBEAT_MS), '--expiry-ms', String(PROC_EXPIRY_MS), '--config', profile, '--protocol', spec.protocol, '--shard', `${i}/${N}`,
      '--listen', `/ip4/127.0.0.1/tcp/${ports[i]}`, '--roster', rosterFile,
      ...(dials(i).length ? ['--peers', dials(i).map((k) => `/ip4/127.0.0.1/tcp/${ports[k]}/p2p/${ids[k]}`).join(',')] : []),
      '--rounds', String(spec.rounds), '--local-steps', String(spec.localSteps), '--batch', String(c.batch), '--test-slice', '100', '--threads', '1',
      ...(spec.model === 'tiny' ? ['--backbone', 'tiny'] : [])];
  };
  await mkdir(outDir, { recursive: true });
  // Identities, ports and the roster up front, so that all N processes start at once, each dialling its topology
  // peers by full address: started one after another (each waiting for the previous one's listen line), 16 processes
  // took minutes on this loaded machine, longer than a node's 60 s wait for its members (MEMBER_WAIT_MS), so the first
  // nodes ran round 1 while the last had not started.
  const ids: string[] = [];
  for (let i = 0; i < N; i++) ids.push((await loadOrCreateIdentity(join(outDir, `node-${i}`))).peerId.toString());
  const ports = await freePorts(N);
  const rosterFile = join(outDir, 'roster.json');
  await writeFile(rosterFile, JSON.stringify(ids));
  const dials = (i: number): number[] => E.filter(([a, b]) => Math.max(a, b) === i && a !== b).map(([a, b]) => Math.min(a, b));
  for (let i = 0; i < N; i++) {
    const c = flConfig(spec, i, N, model);
    await writeFile(join(outDir, `node-${i}.json`), JSON.stringify({ fl: { prototypeSamples: c.prototypeSamples, ...(spec.model === 'tiny' ? { backboneDir: c.backboneDir } : {}) } }));
  }
  const opts = {
    n: N, outDir, flags,
    peersOf: () => [],
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
  await Promise.all([...Array(N).keys()].map((i) => startProc(opts, i, nodes)));
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
    ...pointOf(spec), heartbeatMs: PROC_HEARTBEAT_MS,
    setupMs: Math.round(setupMs), linkMs: null, membershipConvergeMs: converge === null ? null : Math.round(converge),
    rounds: roundTable(done, metrics, R),
    wireBytesPerNodePerRound: perNode.length ? { sent: Math.round(mean(perNode.map((p) => p.sent))), received: Math.round(mean(perNode.map((p) => p.received))) } : null,
    peakRssMB: Math.round(peakMB), rssPerNodeMB: round1(peakMB / N),
    lateJoinCatchUpMs: null, lateJoinNote: 'measured in process only', stopMs: null, memberExpiryMs: PROC_EXPIRY_MS, loadAvg1: round1(loadavg()[0]), load: load.stop(), seconds: Math.round((performance.now() - t0) / 1000),
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
  heartbeatMs: process.argv.includes('--heartbeat-ms') ? Number(arg('heartbeat-ms', '')) : undefined, maxS: Number(arg('max-s', '3600')),
};
const protocols = list(arg('protocols', 'leader,gossip')) as RunSpec['protocol'][];
const specs: RunSpec[] = [
  ...list(arg('sizes', '8,16,32,64')).map(Number).flatMap((n) => protocols.map((protocol) => ({ ...base, mode: 'inproc' as const, n, protocol }))),
  ...list(arg('proc-sizes', '8,16')).map(Number).flatMap((n) => protocols.map((protocol) => ({ ...base, mode: 'procs' as const, n, protocol }))),
];
const t0 = Date.now();
const results: RunResult[] = [];
const REPLOT = process.argv.includes('--replot');
const FROM = process.argv.includes('--from') ? resolve(arg('from', '')) : null;
const ASSETS = process.argv.includes('--assets') ? resolve(arg('assets', 'scripts/assets')) : null;
if (REPLOT && FROM) {
  // No runs: the plots from the points of a document bench:scale wrote (e.g. the committed scripts/assets/bench-scale.json).
  results.push(...(JSON.parse(await readFile(FROM, 'utf8')) as { results: RunResult[] }).results);
} else if (REPLOT) {
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
  // A replot's points come from earlier invocations: each point's own config/topology/heartbeatMs say how it ran.
  settings: REPLOT ? { threadsPerNode: 1, testSlice: 100, note: 'replotted: see each point' } : { ...base, outDir: undefined, protocols, batch: base.model === 'tiny' ? 16 : 64, threadsPerNode: 1, testSlice: 100 },
  results,
  seconds: Math.round((Date.now() - t0) / 1000),
};
await writeFile(join(outDir, 'bench-scale.json'), JSON.stringify(doc, null, 1));
/** One line per mode, protocol, model and topology (a tiny-model or sparse point is not on the default curve). */
const seriesKey = (r: RunResult): string =>
  `${r.mode === 'procs' ? 'processes' : 'in process'} ${r.protocol}${r.config?.model === 'tiny' ? ' tiny' : ''}${r.topology !== 'full' ? ` ${r.topology}` : ''}`;

/** The 2x2 figure of the grid: training and the rest of the round, wire bytes and peak RSS per node, vs N (log2). */
function scaleFigureSpec(points: readonly RunResult[]): ReturnType<typeof panelsSpec> {
  const keys = [...new Set(points.map(seriesKey))];
  const series = (pick: (r: RunResult) => number | undefined) => keys.map((key) => ({
    name: key,
    dashed: key.startsWith('processes'),
    points: points.filter((r) => seriesKey(r) === key).sort((a, b) => a.n - b.n).map((r) => [r.n, pick(r) ?? NaN] as [number, number]),
  }));
  const panel = (title: string, yLabel: string, pick: (r: RunResult) => number | undefined, yBytes = false) =>
    lineChartSpec({ title, xLabel: 'nodes N', yLabel, series: series(pick), yMin: 0, yBytes, xLog2: true, width: 360, height: 220 });
  return panelsSpec('bench:scale: cost per round vs N', [
    panel('training per round (longest node)', 'seconds', (r) => r.meanRoundTrainMs / 1000),
    panel('rest of the round (exchange, verification, eval)', 'seconds', (r) => r.meanRoundOtherMs / 1000),
    panel('wire bytes sent per node per round', 'bytes', (r) => r.wireBytesPerNodePerRound?.sent, true),
    panel('peak RSS per node', 'MB', (r) => r.rssPerNodeMB),
  ]);
}

// A point stopped by --max-s has no round time to draw (its JSON says how far it got).
const drawn = results.filter((r) => !r.timedOut);
if (drawn.length) {
  const svg = await renderSvg(scaleFigureSpec(drawn));
  await writeFile(join(outDir, 'bench-scale.svg'), svg);
  if (ASSETS) {
    // The committed copy (README "Scale"): the figure and the document it was drawn from.
    await mkdir(ASSETS, { recursive: true });
    await writeFile(join(ASSETS, 'bench-scale.svg'), svg);
    await writeFile(join(ASSETS, 'bench-scale.json'), JSON.stringify(doc, null, 1) + '\n');
  }
}
process.stdout.write(JSON.stringify(doc) + '\n');
log(`plots and JSON: ${outDir}`);
