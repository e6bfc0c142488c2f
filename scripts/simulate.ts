/**
 * Multi-node federated-learning simulator: N real fmfl nodes (separate fmfl-node processes over TCP loopback, the
 * default up to 16 nodes, or all in one process over TCP or the in-process memory transport with --mode inproc) federating the embedded backbone on a non-IID split, with a topology, a round protocol, compression,
 * privacy options and a fault schedule. Writes metrics JSON and SVG plots to --out and prints a summary table.
 *
 *   npm run simulate -- --nodes 8 --protocol leader --rounds 30 --local-steps 50 --alpha 0.5 --topk 0.1 --bits 8
 *   npm run simulate -- --nodes 8 --protocol gossip --topology ring
 *   npm run simulate -- --nodes 8 --fault kill-leader@5 --fault byzantine:7:scale --aggregator norm-bound
 *   npm run simulate -- --nodes 8 --local-only          (baseline: every node trains alone)
 *
 * Flags: the simulator-only ones (scripts/lib/sim-config.ts) and every fmfl-node federation flag, generated from the
 * one schema (src/round/fl-config.ts) with the same defaults; each node gets them through its profile's "fl" object.
 * A progress bar of the whole federation (rounds done on all nodes, ETA) runs on a terminal.
 *
 * Faults (repeat --fault): kill-leader@R (crash round R's leader mid-round), kill:I@R, restart:I@R,
 * drop:P (every node loses fraction P of inbound round messages), partition@R and heal@R (two halves; inproc
 * mode), byzantine:I:scale|nan (node I sends updates scaled x100 or NaN). In process mode kills are SIGKILL.
 */
import { CommanderError } from 'commander';
import { cpus } from 'node:os';
import { writeFileSync } from 'node:fs';
import { mkdir, writeFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createMesh, loadOrCreateIdentity, RefusalReason, type Mesh } from '../src/mesh/index.ts';
import { Federation, leaderOrder, type RoundMetrics } from '../src/round/index.ts';
import { loadData, shardIndices } from '../src/data/index.ts';
import { loadBackbone } from '../src/model/backbone.ts';
import { exitTensorNames } from '../src/model/architecture.ts';
import { Trainer } from '../src/train/trainer.ts';
import { createLogger, silentLogger } from '../src/util/log.ts';
import { writeRunReport } from './lib/report.ts';
import { kill9, readMetrics, startProc, type ProcNode } from './lib/procs.ts';
import { finishInproc, inprocMeshOptions, linkInWaves } from './lib/inproc.ts';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { AUTO_FULL_MAX_NODES, parseSimulatorArgs, resolveTopology } from './lib/sim-config.ts';
import { groupOfNode, groupSummary, parseFleet, type FleetGroup } from './lib/fleet.ts';
import { federationBar } from './lib/progress.ts';
import { preflightFederation } from '../src/round/preflight.ts';
import { FmflError } from '../src/util/errors.ts';
import { measureCapabilities, measureOptionsOfFl, type MeasuredCapabilities } from '../src/node/capabilities.ts';
import { resolveAutoBudget } from '../src/node/budget.ts';

// Flags: the simulator-only schema and every fmfl-node federation flag, generated (scripts/lib/sim-config.ts).
let args: ReturnType<typeof parseSimulatorArgs>;
try {
  args = parseSimulatorArgs(process.argv.slice(2));
} catch (err) {
  // Commander already printed the error (it names the flag and the allowed values); --help exits 0.
  process.exit(err instanceof CommanderError && err.exitCode === 0 ? 0 : 2);
}
const { sim, fl: flTyped } = args;
// Every setting the nodes run with (schema defaults filled), for names, the baseline and the summary.
/** A configuration error: the message, exit 2 (before any node starts). */
function configError(message: string): never {
  console.error(`simulate: ${message}`);
  process.exit(2);
}
let checked: ReturnType<typeof preflightFederation>;
try {
  checked = preflightFederation(flTyped, { filesystem: true });
} catch (err) {
  if (err instanceof FmflError) configError(err.message);
  throw err;
}
const o = { ...checked, ...sim };
if ((o.mode ?? (o.nodes <= 16 ? 'procs' : 'inproc')) === 'procs') {
  if (o.nodes > 16) configError('process mode runs at most 16 nodes; use --mode inproc --transport memory');
  if (o.fault.some((f) => /^(partition|heal)@/.test(f))) configError('partition/heal faults need --mode inproc');
}
const fleet: FleetGroup[] | null = o.fleet ? await parseFleet(String(o.fleet)) : null;
if (fleet && process.argv.includes('--nodes') && o.nodes !== fleet.reduce((a, g) => a + g.count, 0)) configError(`--nodes ${o.nodes} disagrees with --fleet ${o.fleet}`);
if (fleet && flTyped.aggregator === undefined) {
  const named = [...new Set(fleet.map((g) => g.aggregator).filter((a): a is string => a !== undefined))];
  if (named.length > 1) configError(`the fleet's profiles name different aggregators (${named.join(', ')}): pass --aggregator`);
  if (named.length === 1) (o as { aggregator: string }).aggregator = flTyped.aggregator = named[0];
}
const nodeGroup = fleet ? groupOfNode(fleet) : null;
const N = fleet ? nodeGroup!.length : Number(o.nodes);
const SHARDS = o.shardCount ?? N;
const { topology, k } = resolveTopology(o.topology, o.k, N);
if (SHARDS < N) configError(`--shard-count ${SHARDS} must be at least the ${N} nodes`);
/** Node i's budget keys (its fleet group's), or none. */
const budgetOf = (i: number): Record<string, unknown> => ({ ...(nodeGroup?.[i].budget ?? {}) });
const rounds = Number(o.rounds);
const name = o.name || `${o.localOnly ? 'local' : o.protocol}-n${N}-r${rounds}-topk${o.topk}-b${o.bits}${fleet ? `-fleet-${fleet.map((g) => `${g.count}${g.name}`).join('-')}` : ''}`;
const outDir = resolve(o.out, name);
await rm(outDir, { recursive: true, force: true });
await mkdir(outDir, { recursive: true });
const log = createLogger({ level: 'info', name: 'sim' });
const t0 = Date.now();
const mode = o.mode ?? (N <= 16 ? 'procs' : 'inproc');
if (o.topology === 'auto' && topology !== 'full') log.info(`--topology auto: ${N} nodes is more than ${AUTO_FULL_MAX_NODES}, so random-k with k = ${k} (a ring plus seeded chords; --topology full to override)`);
const tty = o.progress && process.stderr.isTTY === true;
const progress = federationBar(N, rounds, { tty, log: (line) => log.info(line) });

/**
 * Node i's `fl` settings: what was typed, plus its shard, the member count, a final evaluation (process mode; inproc
 * evaluates each distinct final model once in finishInproc) and, unless typed, cores / nodes onnxruntime threads.
 */
function flConfig(i: number): Record<string, unknown> {
  const byz = o.fault.map((f) => /^byzantine:(\d+):(scale|nan)$/.exec(f)).find((m) => m && Number(m[1]) === i);
  const drop = o.fault.map((f) => /^drop:([\d.]+)$/.exec(f)).find(Boolean);
  return {
    ...flTyped, ...budgetOf(i), shard: `${i}/${SHARDS}`, minMembers: N, finalEval: mode === 'procs', threads: flTyped.threads ?? Math.max(1, Math.floor(cpus().length / N)),
    ...(byz ? { attack: { kind: byz[2], factor: 100 } } : {}),
    ...(drop ? { dropRate: Number(drop[1]) } : {}),
  };
}

function edges(): [number, number][] {
  const e: [number, number][] = [];
  switch (topology) {
    case 'full': for (let i = 0; i < N; i++) for (let j = i + 1; j < N; j++) e.push([i, j]); break;
    case 'ring': for (let i = 0; i < N; i++) e.push([i, (i + 1) % N]); break;
    case 'star': for (let i = 1; i < N; i++) e.push([0, i]); break;
    case 'line': for (let i = 0; i + 1 < N; i++) e.push([i, i + 1]); break;
    case 'random-k': {
      // A ring for connectivity plus seeded random chords up to degree ~k.
      for (let i = 0; i < N; i++) e.push([i, (i + 1) % N]);
      let s = o.partitionSeed;
      const rnd = (): number => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
      for (let i = 0; i < N; i++) for (let c = 2; c < k; c++) { const j = Math.floor(rnd() * N); if (j !== i) e.push([i, j]); }
      break;
    }
    default: throw new Error(`unknown topology ${topology as string}`);
  }
  return e;
}

// ------------------------------------------------------------------------------------------------------------
// Local-only baseline

if (o.localOnly) {
  const bb = await loadBackbone(o.backbone);
  const data = await loadData({ ref: o.dataset, input: bb.input, classes: o.classes, testFraction: o.testFraction, seed: o.partitionSeed });
  const { train, test } = data;
  bb.cfg = { ...bb.cfg, classes: data.classes.length };
  const heads = exitTensorNames(bb.cfg);
  const weights = new Map([...bb.weights].filter(([k]) => !heads.has(k)));
  const results: { node: number; samples: number; accuracy: number[] }[] = [];
  for (let i = 0; i < N; i++) {
    const cfg = flConfig(i);
    const shard = shardIndices(train.labels, `${i}/${SHARDS}`, o.alpha === null ? { seed: o.partitionSeed, scheme: 'iid' } : { seed: o.partitionSeed, scheme: 'dirichlet', alpha: o.alpha, dirichlet: { numClasses: bb.cfg.classes } });
    const tr = await Trainer.create({ cfg: bb.cfg, norm: bb.input, lora: { rank: o.rank, alpha: o.loraAlpha, targets: o.loraTargets }, trainableSet: 'lora+heads', weights, batch: o.batch, seed: o.modelSeed, threads: cfg.threads as number, optimizer: { kind: 'adamw', lr: o.lr, weightDecay: o.weightDecay } });
    await tr.trainSteps(train, shard, rounds * Number(o.localSteps));
    const ev = await tr.evaluate(test);
    results.push({ node: i, samples: shard.length, accuracy: ev.accuracy });
    log.info({ node: i, samples: shard.length, lastExit: ev.accuracy[ev.accuracy.length - 1].toFixed(4) }, 'local-only node done');
    await tr.release();
  }
  const last = results.map((r) => r.accuracy[r.accuracy.length - 1]);
  const summary = { mode: 'local-only', nodes: N, steps: rounds * Number(o.localSteps), alpha: o.alpha ?? 'iid', meanLastExitAccuracy: last.reduce((a, b) => a + b, 0) / N, perNode: results, seconds: Math.round((Date.now() - t0) / 1000) };
  await writeFile(join(outDir, 'summary.json'), JSON.stringify(summary, null, 2));
  console.log(JSON.stringify(summary));
  process.exit(0);
}

// ------------------------------------------------------------------------------------------------------------
// Process mode: one fmfl-node process per node

const lastExit = (a: number[]): number => a[a.length - 1];
const meanOf = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

/**
 * With --personal: after the last round, per node and as means, on each node's own test split the global model's
 * accuracy and the personal model's (last exit), and the mean personal-minus-global gap in points.
 */
function personalSummary(metrics: RoundMetrics[][]): { kind: string; meanGlobal: number; meanPersonal: number; gapPoints: number; nodes: { node: number; n: number; global: number; personal: number }[] } | undefined {
  const nodes = metrics.flatMap((m, node) => {
    const p = m.at(-1)?.personal;
    return p ? [{ node, n: p.n, global: lastExit(p.global), personal: lastExit(p.personal) }] : [];
  });
  if (nodes.length === 0) return undefined;
  const meanGlobal = meanOf(nodes.map((x) => x.global));
  const meanPersonal = meanOf(nodes.map((x) => x.personal));
  return { kind: String(o.personal), meanGlobal, meanPersonal, gapPoints: Math.round((meanPersonal - meanGlobal) * 10000) / 100, nodes };
}

async function report(metrics: RoundMetrics[][], finals: { node: number; accuracy: number[]; ensembleAccuracy: number; hash: string }[], events: { t: number; event: string }[], faults: string[]): Promise<void> {
  const perRound = (key: 'bytesUp' | 'bytesDown' | 'updateBytes'): number => meanOf(metrics.flatMap((m) => m.map((x) => x[key])));
  const summary = {
    name, mode, nodes: N, protocol: o.protocol, topology, ...(topology === 'random-k' ? { k } : {}), rounds, localSteps: Number(o.localSteps),
    alpha: o.alpha ?? 'iid', topk: o.topk, bits: o.bits, errorFeedback: o.errorFeedback, aggregator: o.aggregator,
    serverLr: o.serverLr === undefined ? undefined : Number(o.serverLr), serverMomentum: o.serverMomentum === undefined ? undefined : Number(o.serverMomentum), serverLrDecay: !!o.serverLrDecay,
    gamma: o.protocol === 'gossip' ? o.gossipGamma : undefined, gossipMomentum: o.protocol === 'gossip' ? o.gossipMomentum : undefined, logitAdjust: o.logitAdjust, lr: o.lr, lrSchedule: o.lrSchedule, backbone: o.backbone, loraTargets: o.loraTargets.join(','),
    faults, events,
    finalAccuracyMean: meanOf(finals.map((f) => lastExit(f.accuracy))),
    finalAccuracyPerExitMean: Array.from({ length: Math.max(0, ...finals.map((f) => f.accuracy.length)) }, (_, e) => meanOf(finals.filter((f) => f.accuracy.length > e).map((f) => f.accuracy[e]))),
    fleet: fleet ? o.fleet : undefined,
    groups: fleet ? groupSummary(fleet, finals) : undefined,
    personal: personalSummary(metrics),
    finalEnsembleAccuracyMean: meanOf(finals.map((f) => f.ensembleAccuracy)),
    identicalFinalState: new Set(finals.map((f) => f.hash)).size === 1,
    updateBytesPerNodePerRound: Math.round(perRound('updateBytes')),
    bytesUpPerNodePerRound: Math.round(perRound('bytesUp')),
    bytesDownPerNodePerRound: Math.round(perRound('bytesDown')),
    roundsAppliedExactlyOnce: metrics.every((m) => m.every((x, k) => k === 0 || x.version > m[k - 1].version)),
    everyRoundReached: finals.every((f) => metrics[f.node].at(-1)?.version === rounds),
    meanRoundMs: Math.round(meanOf(metrics.flatMap((m) => m.map((x) => x.roundMs)))),
    // In process: this process's peak RSS holds every node (shared backbone, sessions and data; scripts/lib/inproc.ts).
    peakRssMB: mode === 'inproc' ? Math.round(process.resourceUsage().maxRSS / 1024) : undefined,
    rssPerNodeMB: mode === 'inproc' ? Math.round(process.resourceUsage().maxRSS / 1024 / N) : undefined,
    finalConsensusDistance: o.protocol === 'gossip' ? meanOf(metrics.map((m) => m.at(-1)?.consensusDistance ?? NaN)) : undefined,
    seconds: Math.round((Date.now() - t0) / 1000),
    finals,
  };
  await writeFile(join(outDir, 'metrics.json'), JSON.stringify({ summary, metrics }, null, 1));
  await writeFile(join(outDir, 'summary.json'), JSON.stringify(summary, null, 2));
  const rows = metrics.map((m, i) => {
    const last = m.at(-1);
    const fin = finals.find((f) => f.node === i);
    return `${String(i).padStart(4)}  ${String(m.length).padStart(6)}  ${last ? (lastExit(last.accuracy) * 100).toFixed(2).padStart(9) : '        -'}  ${fin ? (lastExit(fin.accuracy) * 100).toFixed(2).padStart(9) : '        -'}  ${String(Math.round(meanOf(m.map((x) => x.updateBytes)))).padStart(9)}  ${String(Math.round(meanOf(m.map((x) => x.bytesUp)))).padStart(9)}  ${String(Math.round(meanOf(m.map((x) => x.bytesDown)))).padStart(10)}  ${(last?.hash ?? '').slice(0, 12)}`;
  });
  console.log(`\nnode  rounds  slice-acc  full-acc%  update B  up B/rnd  down B/rnd  state`);
  console.log(rows.join('\n'));
  if (summary.groups) {
    console.log(`\ngroup  nodes  budget                          per-exit accuracy % (mean over the group's nodes)`);
    for (const [g, s] of Object.entries(summary.groups)) console.log(`${g.padEnd(6)} ${String(s.nodes).padStart(5)}  ${JSON.stringify(s.budget).padEnd(30)}  ${s.perExit.map((a) => (a * 100).toFixed(2)).join(' / ')}`);
  }
  if (summary.personal) console.log(`\npersonal (${summary.personal.kind}) on the nodes' own test splits, last exit: global ${(summary.personal.meanGlobal * 100).toFixed(2)}%, personal ${(summary.personal.meanPersonal * 100).toFixed(2)}% (${summary.personal.gapPoints >= 0 ? '+' : ''}${summary.personal.gapPoints} points)`);
  console.log(`\n${JSON.stringify({ ...summary, finals: undefined })}`);
  const files = await writeRunReport(outDir, { name, label: String(o.protocol), summary, metrics, nodes: { head: ['node', 'rounds', 'slice acc', 'full acc', 'update B', 'up B/round', 'down B/round', 'state'], rows: rows.map((r) => r.trim().split(/\s+/)) } });
  console.log(`\nplots: ${files.accuracyVsRound}, ${files.accuracyVsBytes}; report: ${files.html}`);
}

// Every simulated node, in both modes, is on the roster of all N (issue 14): leader order, quorum and certificates
// count roster members, so a node whose live view collapses under load still needs a majority of N. The identities
// live in each node's state folder, where fmfl-node (process mode) loads the same one.
const stateDir = (i: number): string => join(outDir, `node-${i}`);
const identities = await Promise.all(Array.from({ length: N }, async (_, i) => {
  await mkdir(stateDir(i), { recursive: true });
  return loadOrCreateIdentity(stateDir(i));
}));
const roster = identities.map((x) => x.peerId.toString());

if (mode === 'procs') {
  const faults: string[] = o.fault;
  const E = edges();
  const events: { t: number; event: string }[] = [];
  const nodes: ProcNode[] = [];
  const fired = new Set<string>();
  let exits: Promise<number | null>[] = [];
  const rosterFile = join(outDir, 'roster.json');
  await writeFile(rosterFile, JSON.stringify(roster, null, 1));
  const procOpts = {
    n: N,
    outDir,
    peersOf: (i: number) => E.filter(([a, b]) => Math.max(a, b) === i && a !== b).map(([a, b]) => Math.min(a, b)),
    flags: (i: number) => {
      // Each node's settings travel as its profile's "fl" object: the same schema keys as the flags.
      const profile = join(outDir, `node-${i}.json`);
      writeFileSync(profile, JSON.stringify({ fl: flConfig(i) }, null, 1));
      return ['--federation', 'sim', '--heartbeat-ms', '1000', '--expiry-ms', '6000', '--roster', rosterFile, '--config', profile];
    },
    onLine: (i: number, line: string) => {
      const r = /^round (\d+) /.exec(line);
      if (r) {
        if ((i === 0 && !tty) || o.verbose) console.log(`[node ${i}] ${line}`);
        const v = /^round \d+ v(\d+) /.exec(line);
        progress.round(i, Number(v?.[1] ?? r[1]));
        onRound(Number(r[1]));
      }
      if (line.startsWith('exited')) console.log(`[node ${i}] ${line}`);
    },
  };
  const onRound = (r: number): void => {
    const next = r + 1;
    for (const f of faults) {
      if (fired.has(f)) continue;
      let m: RegExpExecArray | null;
      if ((m = /^kill-leader@(\d+)$/.exec(f)) && Number(m[1]) === next) {
        fired.add(f);
        // Ranks are over the roster; a member that is down is skipped, never re-ranked.
        const alive = new Set(nodes.filter((n) => n.proc).map((n) => roster[n.index]));
        const victim = roster.indexOf(leaderOrder('sim', next, roster).find((id) => alive.has(id)) ?? roster[0]);
        setTimeout(() => {
          events.push({ t: Date.now() - t0, event: `kill-leader@${next}: SIGKILL node ${victim} (the leader of round ${next}) mid-round` });
          console.log(`[sim] SIGKILL node ${victim}, leader of round ${next}`);
          kill9(nodes[victim]);
        }, 1500);
      } else if ((m = /^kill:(\d+)@(\d+)$/.exec(f)) && Number(m[2]) === next) {
        fired.add(f);
        events.push({ t: Date.now() - t0, event: `${f}: SIGKILL node ${m[1]}` });
        kill9(nodes[Number(m[1])]);
      } else if ((m = /^restart:(\d+)@(\d+)$/.exec(f)) && Number(m[2]) === next) {
        fired.add(f);
        const i = Number(m[1]);
        events.push({ t: Date.now() - t0, event: `${f}: restart node ${i} from its checkpoint` });
        void startProc({ ...procOpts, peersOf: () => [nodes.findIndex((n, k) => n.proc && k !== i)] }, i, nodes).then((n) => exits.push(n.exited));
      }
    }
  };
  for (let i = 0; i < N; i++) await startProc(procOpts, i, nodes);
  log.info({ nodes: N, mode, topology, protocol: o.protocol, setupMs: Date.now() - t0 }, 'node processes started');
  exits = nodes.map((n) => n.exited);
  for (let k = 0; k < exits.length; k++) await exits[k];
  progress.done();
  const metrics: RoundMetrics[][] = [];
  const finals: { node: number; accuracy: number[]; ensembleAccuracy: number; hash: string }[] = [];
  for (let i = 0; i < N; i++) {
    const all = (await readMetrics(nodes[i])) as (RoundMetrics & { final?: boolean })[];
    metrics.push(all.filter((x) => !x.final));
    const fin = all.filter((x) => x.final).at(-1) as unknown as { accuracy: number[]; ensembleAccuracy: number; hash: string } | undefined;
    if (fin) finals.push({ node: i, accuracy: fin.accuracy, ensembleAccuracy: fin.ensembleAccuracy, hash: fin.hash });
  }
  await report(metrics, finals, events, faults);
  process.exit(0);
}

// ------------------------------------------------------------------------------------------------------------
// Federation

const meshes: (Mesh | null)[] = [];
const feds: (Federation | null)[] = [];
const metrics: RoundMetrics[][] = Array.from({ length: N }, () => []);
const events: { t: number; event: string }[] = [];
const meshOpts = inprocMeshOptions(N, { heartbeatMs: o.heartbeatMs, memoryLatencyMs: o.memoryLatencyMs, fullMesh: topology === 'full' });
const listen = (i: number): string[] => (o.transport === 'memory' ? [`/memory/${name}-${i}-${Date.now()}`] : ['/ip4/127.0.0.1/tcp/0']);

async function startNode(i: number, peers: string[]): Promise<void> {
  const mesh = await createMesh({
    federation: 'sim', identity: identities[i], roster, listen: listen(i), peers,
    ...meshOpts, logger: o.verbose ? createLogger({ level: 'info', name: `mesh${i}` }) : undefined,
  });
  await mesh.start();
  meshes[i] = mesh;
  const fl = await inprocBudget(i, flConfig(i));
  feds[i] = await Federation.create(mesh, fl, { logger: o.verbose || i === 0 ? createLogger({ level: 'info', name: `node${i}` }) : silentLogger(), stateDir: stateDir(i) });
}

/**
 * `--budget auto` in process: nodes of one process share its cores, so each distinct measurement (backbone, rank,
 * batch, threads) is taken once, at start, and every node with those settings picks its budget from it.
 */
const measurements = new Map<string, Promise<MeasuredCapabilities>>();
async function inprocBudget(i: number, fl: Record<string, unknown>): Promise<Record<string, unknown>> {
  if (fl.budget !== 'auto') return fl;
  const mo = measureOptionsOfFl(fl);
  const key = JSON.stringify(mo);
  if (!measurements.has(key)) measurements.set(key, measureCapabilities(mo));
  const r = await resolveAutoBudget(fl, await measurements.get(key)!);
  log.info(`node ${i}: ${r.pick!.reason}`);
  return r.fl;
}

function addrOf(i: number): string {
  return meshes[i]!.multiaddrs()[0];
}

for (let i = 0; i < N; i++) await startNode(i, []);
const linkMs = await linkInWaves(meshes as Mesh[], edges(), {
  onWave: (w) => (w.connected < w.dials || w.node % 8 === 0) && log.info({ ...w, ms: Math.round(w.ms), t: Math.round((Date.now() - t0) / 1000) }, 'linked'),
});
log.info({ nodes: N, topology, protocol: o.protocol, setupMs: Date.now() - t0, linkMs: Math.round(linkMs), rssMB: Math.round(process.memoryUsage.rss() / 1e6), ...meshOpts }, 'nodes started and linked');

// Fault schedule, triggered when the first node finishes round R-1 (i.e. round R starts).
const faults: string[] = o.fault;
const fired = new Set<string>();
const ids = (): string[] => meshes.filter(Boolean).map((m) => m!.peerId.toString());
async function crash(i: number, why: string): Promise<void> {
  const m = meshes[i];
  const f = feds[i];
  if (!m || !f) return;
  meshes[i] = null;
  feds[i] = null;
  events.push({ t: Date.now() - t0, event: `${why}: node ${i} crashed` });
  log.warn({ node: i }, `${why}: crashing node`);
  await Promise.resolve(m.libp2p.stop()).catch(() => {});
  await f.stop().catch(() => {});
  await f.release().catch(() => {});
}
const runs: Promise<void>[] = [];
function runNode(i: number): void {
  const f = feds[i]!;
  runs.push(
    f.run({ onRound: (m) => { metrics[i].push(m); progress.round(i, m.version); onRoundDone(m.round); } }).then(() => undefined, (err) => log.error({ node: i, err: String(err) }, 'node failed')),
  );
}
function onRoundDone(r: number): void {
  const next = r + 1;
  for (const f of faults) {
    const key = `${f}`;
    if (fired.has(key)) continue;
    let m: RegExpExecArray | null;
    if ((m = /^kill-leader@(\d+)$/.exec(f)) && Number(m[1]) === next) {
      fired.add(key);
      const victim = ids().indexOf(leaderOrder('sim', next, ids())[0]);
      const idx = meshes.findIndex((x) => x?.peerId.toString() === ids()[victim]);
      setTimeout(() => void crash(idx, `kill-leader@${next}`), 1500);
    } else if ((m = /^kill:(\d+)@(\d+)$/.exec(f)) && Number(m[2]) === next) {
      fired.add(key);
      void crash(Number(m[1]), f);
    } else if ((m = /^restart:(\d+)@(\d+)$/.exec(f)) && Number(m[2]) === next) {
      fired.add(key);
      const i = Number(m[1]);
      const peer = meshes.findIndex((x, k) => x && k !== i);
      void startNode(i, [addrOf(peer)]).then(() => {
        events.push({ t: Date.now() - t0, event: `${f}: node ${i} restarted` });
        runNode(i);
      });
    } else if ((m = /^partition@(\d+)$/.exec(f)) && Number(m[1]) === next) {
      fired.add(key);
      const half = Math.floor(N / 2);
      const a = meshes.slice(0, half).filter(Boolean).map((x) => x!.peerId.toString());
      const b = meshes.slice(half).filter(Boolean).map((x) => x!.peerId.toString());
      events.push({ t: Date.now() - t0, event: `partition at round ${next}` });
      meshes.forEach((x, k) => x && void x.block(k < half ? b : a));
    } else if ((m = /^heal@(\d+)$/.exec(f)) && Number(m[1]) === next) {
      fired.add(key);
      events.push({ t: Date.now() - t0, event: `heal at round ${next}` });
      const all = ids();
      meshes.forEach((x) => x && x.unblock(all));
      for (const [a2, b2] of edges()) if (meshes[a2] && meshes[b2]) meshes[b2]!.addPeer(addrOf(a2));
    }
  }
}
for (let i = 0; i < N; i++) runNode(i);
// A status line every --status-s seconds (default 30): large in-process runs are otherwise silent until the end.
const lag = monitorEventLoopDelay({ resolution: 20 });
lag.enable();
// Gossip messages received by all meshes per topic at the previous status line (first copies; `msgsPerS`).
let prevReceived = new Map<string, number>();
const statusTimer = setInterval(() => {
  const live = meshes.filter((m): m is Mesh => m !== null);
  const received = live.reduce((acc, m) => { for (const [k, c] of m.received) acc.set(k, (acc.get(k) ?? 0) + c); return acc; }, new Map<string, number>());
  const msgsPerS = [...received].map(([k, c]) => `${k}:${Math.round((c - (prevReceived.get(k) ?? 0)) / Number(o.statusS))}`).join(',') || '-';
  prevReceived = received;
  const span = (xs: number[]): string => (xs.length ? `${Math.min(...xs)}..${Math.max(...xs)}` : '-');
  log.info({
    t: Math.round((Date.now() - t0) / 1000), version: span(feds.filter((f): f is Federation => f !== null).map((f) => f.protocol.round)),
    members: span(live.map((m) => m.membership.memberIds().length)), connections: span(live.map((m) => m.connectedPeers().length)),
    wireMB: Math.round(live.reduce((a, m) => a + m.wire.bytesOut, 0) / 1e5) / 10, rssMB: Math.round(process.memoryUsage.rss() / 1e6),
    lagP50Ms: Math.round(lag.percentile(50) / 1e6), lagMaxMs: Math.round(lag.max / 1e6), msgsPerS,
    // Refused messages and streams so far, by reason (all nodes): why views or rounds stall on a large run.
    refused: [...live.reduce((acc, m) => { for (const [r, c] of m.refusals) acc.set(r, (acc.get(r) ?? 0) + c); return acc; }, new Map<number, number>())]
      .map(([r, c]) => `${RefusalReason[r]}:${c}`).join(',') || '-',
  }, 'status');
  lag.reset();
}, 1000 * Number(o.statusS));
statusTimer.unref();
// Runs started by restarts are appended while we wait.
for (let k = 0; k < runs.length; k++) await runs[k];
clearInterval(statusTimer);
progress.done();
log.info({ t: Date.now() - t0 }, 'all runs done');

// Final evaluation on the full test split: freeze each node's model, stop every protocol and mesh at once, then
// evaluate each distinct model once (scripts/lib/inproc.ts says why; this order ends the 32-node hang of issue 17).
const testSet = (await loadData({ ref: o.dataset, input: (await loadBackbone(o.backbone)).input, classes: o.classes, testFraction: o.testFraction, seed: o.partitionSeed })).test;
const done = await finishInproc({
  feds, meshes, test: testSet,
  onEval: (e) => log.info({ node: e.node, sharedBy: e.nodes, ms: Math.round(e.ms) }, 'final evaluation'),
});
log.info({ t: Date.now() - t0, stopMs: Math.round(done.stopMs), evalMs: Math.round(done.evalMs), evaluations: done.evaluations }, 'meshes stopped, final models evaluated');
// Each node's frozen final state (after finish, which replaces an uncertified final state with the certified one).
const finals = done.finals.map(({ node, accuracy, ensembleAccuracy, hash }) => ({ node, accuracy, ensembleAccuracy, hash }));
await report(metrics, finals, events, faults);
for (const f of feds) await f?.release().catch(() => {});
process.exit(0);
