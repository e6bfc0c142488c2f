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
 * Faults (repeat --fault): kill-leader@R (crash round R's leader mid-round), kill:I@R, restart:I@R,
 * drop:P (every node loses fraction P of inbound round messages), partition@R and heal@R (two halves; inproc
 * mode), byzantine:I:scale|nan (node I sends updates scaled x100 or NaN). In process mode kills are SIGKILL.
 */
import { Command } from 'commander';
import { mkdir, writeFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createMesh, loadOrCreateIdentity, type Mesh } from '../src/mesh/index.ts';
import { DEFAULT_GOSSIP_MOMENTUM, Federation, leaderOrder, type RoundMetrics } from '../src/round/index.ts';
import { loadData, shardIndices } from '../src/data/index.ts';
import { loadBackbone } from '../src/model/backbone.ts';
import { LORA_TARGETS, type LoraTarget } from '../src/model/vit.ts';
import { exitTensorNames } from '../src/model/architecture.ts';
import { Trainer } from '../src/train/trainer.ts';
import { createLogger, silentLogger } from '../src/util/log.ts';
import { lineChart } from './lib/svg-plot.ts';
import { kill9, readMetrics, startProc, type ProcNode } from './lib/procs.ts';
import { finishInproc, inprocMeshOptions, linkInWaves } from './lib/inproc.ts';

const program = new Command()
  .option('--nodes <n>', 'number of nodes', '8')
  .option('--mode <m>', 'procs (one fmfl-node process per node, up to 16) | inproc (one process)')
  .option('--transport <t>', 'inproc mode: tcp | memory', 'tcp')
  .option('--topology <t>', 'full | ring | star | line | random-k', 'full')
  .option('--k <n>', 'degree for random-k', '3')
  .option('--protocol <p>', 'leader | gossip', 'leader')
  .option('--rounds <n>', 'rounds', '30')
  .option('--local-steps <n>', 'local steps per round', '50')
  .option('--batch <n>', 'batch size', '64')
  .option('--lr <x>', 'AdamW learning rate', '1e-3')
  .option('--lr-schedule <s>', 'local learning-rate schedule over all rounds: constant | cosine', 'constant')
  .option('--alpha <x>', "Dirichlet alpha of the label split ('iid' for IID)", '0.5')
  .option('--topk <x>', 'fraction of entries sent (1 = dense)', '1')
  .option('--bits <n>', 'bits per value: 32 | 16 | 8 | 4 | 1 (scaled sign)', '1')
  .option('--topk-scope <s>', 'global | tensor', 'tensor')
  .option('--no-brotli', 'do not brotli-compress update payloads')
  .option('--no-error-feedback', 'disable error feedback')
  .option('--downlink-bits <n>', 'bits of the leader broadcast: 32 | 16 | 8', '16')
  .option('--aggregator <name>', 'aggregation rule', 'fedavgm')
  .option('--server-lr <x>', 'server learning rate (fedavgm: default 1; fedadam & co: 0.01)')
  .option('--server-lr-decay', 'decay --server-lr over the rounds to 1 (cosine)')
  .option('--server-momentum <x>', 'fedavgm server momentum (default 0.6)')
  .option('--quorum <x>', 'leader quorum fraction', '1')
  .option('--round-timeout-ms <n>', 'leader round deadline', '60000')
  .option('--leader-timeout-ms <n>', 'backup leader wait per rank', '15000')
  .option('--gamma <x>', 'gossip CHOCO consensus step size', '0')
  .option('--gossip-momentum <x>', 'gossip heavy-ball momentum on the averaged model (default 0.6)')
  .option('--rank <n>', 'LoRA rank', '8')
  .option('--lora-alpha <x>', 'LoRA alpha (default: the product default, 64)')
  .option('--data <ref>', 'every node\'s data: fashion-mnist | mnist | a folder of <class>/<image> files | a CSV of path,label rows (split into --nodes shards)', 'fashion-mnist')
  .option('--classes <list>', 'the federation\'s label set, comma-separated (default: the data\'s own)')
  .option('--backbone <name>', 'backbone in models/ (default: the product default)')
  .option('--lora-targets <list>', 'LoRA projections (default: the product default, all six)')
  .option('--backbone-reference', "the training-engine issue's reference recipe: --backbone vit-tiny-mnist --lora-targets q,v --lora-alpha 16")
  .option('--proto-weight <x>', 'prototype loss weight', '0')
  .option('--logit-adjust', 'balanced softmax against the local label prior in local training')
  .option('--prototype-every <n>', 'send prototype statistics every n rounds (0: last round only)', '0')
  .option('--dp-clip <x>', 'client DP: L2 clip of each update')
  .option('--dp-noise <x>', 'client DP: noise multiplier')
  .option('--fault <spec...>', 'fault schedule entries (see the file header)')
  .option('--local-only', 'baseline: every node trains alone for rounds x local-steps')
  .option('--test-slice <n>', 'test images each node evaluates per round', '1000')
  .option('--threads <n>', 'onnxruntime threads per node', '1')
  .option('--seed <n>', 'partition seed', '42')
  .option('--out <dir>', 'output folder', 'out/sim')
  .option('--name <s>', 'run name (subfolder of --out)', '')
  .option('--heartbeat-ms <n>', 'inproc mode: membership heartbeat period (default 1000 up to 16 nodes, then growing with N², expiry 6x)')
  .option('--memory-latency-ms <n>', 'inproc mode, memory transport: latency of every frame (default 1; 0 starves the timers of a large run)')
  .option('--status-s <n>', 'inproc mode: seconds between status lines (version, members, connections, wire, RSS, event-loop lag)', '30')
  .option('--verbose', 'log every node')
  .parse(process.argv);
const o = program.opts<Record<string, any>>();
if (o.backboneReference) {
  o.backbone ??= 'vit-tiny-mnist';
  o.loraTargets ??= 'q,v';
  o.loraAlpha ??= '16';
}
const N = Number(o.nodes);
const rounds = Number(o.rounds);
const name = o.name || `${o.localOnly ? 'local' : o.protocol}-n${N}-r${rounds}-topk${o.topk}-b${o.bits}`;
const outDir = resolve(o.out, name);
await rm(outDir, { recursive: true, force: true });
await mkdir(outDir, { recursive: true });
const log = createLogger({ level: 'info', name: 'sim' });
const t0 = Date.now();
const mode = o.mode ?? (N <= 16 ? 'procs' : 'inproc');
if (mode === 'procs' && N > 16) throw new Error('process mode runs at most 16 nodes; use --mode inproc --transport memory');

function flConfig(i: number): Record<string, unknown> {
  const byz = (o.fault ?? []).map((f: string) => /^byzantine:(\d+):(scale|nan)$/.exec(f)).find((m: RegExpExecArray | null) => m && Number(m[1]) === i);
  const drop = (o.fault ?? []).map((f: string) => /^drop:([\d.]+)$/.exec(f)).find(Boolean);
  return {
    dataset: o.data, ...(o.classes ? { classes: String(o.classes).split(',') } : {}),
    protocol: o.protocol, rounds, localSteps: Number(o.localSteps), batch: Number(o.batch), lr: Number(o.lr), lrSchedule: o.lrSchedule,
    shard: `${i}/${N}`, alpha: o.alpha === 'iid' ? null : Number(o.alpha), partitionSeed: Number(o.seed),
    topk: Number(o.topk), topkScope: o.topkScope, brotli: o.brotli !== false, bits: Number(o.bits), errorFeedback: o.errorFeedback !== false, downlinkBits: Number(o.downlinkBits),
    aggregator: o.aggregator, ...(o.serverLr !== undefined ? { serverLr: Number(o.serverLr) } : {}), ...(o.serverMomentum !== undefined ? { serverMomentum: Number(o.serverMomentum) } : {}), ...(o.serverLrDecay ? { serverLrDecay: true } : {}), quorum: Number(o.quorum), roundTimeoutMs: Number(o.roundTimeoutMs), leaderTimeoutMs: Number(o.leaderTimeoutMs),
    gossipGamma: Number(o.gamma), ...(o.gossipMomentum !== undefined ? { gossipMomentum: Number(o.gossipMomentum) } : {}), rank: Number(o.rank), ...(o.loraAlpha ? { loraAlpha: Number(o.loraAlpha) } : {}), ...(o.logitAdjust ? { logitAdjust: true } : {}),
    ...(o.backbone ? { backbone: o.backbone } : {}), ...(o.loraTargets ? { loraTargets: String(o.loraTargets).split(',') } : {}), protoWeight: Number(o.protoWeight), testSlice: Number(o.testSlice),
    threads: Number(o.threads), minMembers: N, prototypeEvery: Number(o.prototypeEvery),
    ...(o.dpClip ? { dpClip: Number(o.dpClip), dpNoise: Number(o.dpNoise ?? 1) } : {}),
    ...(byz ? { attack: { kind: byz[2], factor: 100 } } : {}),
    ...(drop ? { dropRate: Number(drop[1]) } : {}),
  };
}

function edges(): [number, number][] {
  const e: [number, number][] = [];
  switch (o.topology) {
    case 'full': for (let i = 0; i < N; i++) for (let j = i + 1; j < N; j++) e.push([i, j]); break;
    case 'ring': for (let i = 0; i < N; i++) e.push([i, (i + 1) % N]); break;
    case 'star': for (let i = 1; i < N; i++) e.push([0, i]); break;
    case 'line': for (let i = 0; i + 1 < N; i++) e.push([i, i + 1]); break;
    case 'random-k': {
      // A ring for connectivity plus seeded random chords up to degree ~k.
      for (let i = 0; i < N; i++) e.push([i, (i + 1) % N]);
      let s = Number(o.seed);
      const rnd = (): number => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
      for (let i = 0; i < N; i++) for (let c = 2; c < Number(o.k); c++) { const j = Math.floor(rnd() * N); if (j !== i) e.push([i, j]); }
      break;
    }
    default: throw new Error(`unknown topology ${o.topology}`);
  }
  return e;
}

// ------------------------------------------------------------------------------------------------------------
// Local-only baseline

if (o.localOnly) {
  const bb = await loadBackbone(o.backbone);
  const data = await loadData({ ref: o.data, input: bb.input, classes: o.classes ? String(o.classes).split(',') : undefined, seed: Number(o.seed) });
  const { train, test } = data;
  bb.cfg = { ...bb.cfg, classes: data.classes.length };
  const targets = (o.loraTargets ? String(o.loraTargets).split(',') : [...LORA_TARGETS]) as LoraTarget[];
  const heads = exitTensorNames(bb.cfg);
  const weights = new Map([...bb.weights].filter(([k]) => !heads.has(k)));
  const results: { node: number; samples: number; accuracy: number[] }[] = [];
  for (let i = 0; i < N; i++) {
    const cfg = flConfig(i);
    const shard = shardIndices(train.labels, `${i}/${N}`, cfg.alpha === null ? { seed: Number(o.seed), scheme: 'iid' } : { seed: Number(o.seed), scheme: 'dirichlet', alpha: cfg.alpha as number, dirichlet: { numClasses: bb.cfg.classes } });
    const tr = await Trainer.create({ cfg: bb.cfg, norm: bb.input, lora: { rank: Number(o.rank), alpha: 2 * Number(o.rank), targets }, trainableSet: 'lora+heads', weights, batch: Number(o.batch), seed: 7, threads: Number(o.threads), optimizer: { kind: 'adamw', lr: Number(o.lr), weightDecay: 0.01 } });
    await tr.trainSteps(train, shard, rounds * Number(o.localSteps));
    const ev = await tr.evaluate(test);
    results.push({ node: i, samples: shard.length, accuracy: ev.accuracy });
    log.info({ node: i, samples: shard.length, lastExit: ev.accuracy[ev.accuracy.length - 1].toFixed(4) }, 'local-only node done');
    await tr.release();
  }
  const last = results.map((r) => r.accuracy[r.accuracy.length - 1]);
  const summary = { mode: 'local-only', nodes: N, steps: rounds * Number(o.localSteps), alpha: o.alpha, meanLastExitAccuracy: last.reduce((a, b) => a + b, 0) / N, perNode: results, seconds: Math.round((Date.now() - t0) / 1000) };
  await writeFile(join(outDir, 'summary.json'), JSON.stringify(summary, null, 2));
  console.log(JSON.stringify(summary));
  process.exit(0);
}

// ------------------------------------------------------------------------------------------------------------
// Process mode: one fmfl-node process per node

const lastExit = (a: number[]): number => a[a.length - 1];
const meanOf = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

async function report(metrics: RoundMetrics[][], finals: { node: number; accuracy: number[]; ensembleAccuracy: number; hash: string }[], events: { t: number; event: string }[], faults: string[]): Promise<void> {
  const perRound = (key: 'bytesUp' | 'bytesDown' | 'updateBytes'): number => meanOf(metrics.flatMap((m) => m.map((x) => x[key])));
  const summary = {
    name, mode, nodes: N, protocol: o.protocol, topology: o.topology, rounds, localSteps: Number(o.localSteps),
    alpha: o.alpha, topk: Number(o.topk), bits: Number(o.bits), errorFeedback: o.errorFeedback !== false, aggregator: o.aggregator,
    serverLr: o.serverLr === undefined ? undefined : Number(o.serverLr), serverMomentum: o.serverMomentum === undefined ? undefined : Number(o.serverMomentum), serverLrDecay: !!o.serverLrDecay,
    gamma: o.protocol === 'gossip' ? Number(o.gamma) : undefined, gossipMomentum: o.protocol === 'gossip' ? Number(o.gossipMomentum ?? DEFAULT_GOSSIP_MOMENTUM) : undefined, logitAdjust: !!o.logitAdjust, lr: Number(o.lr), lrSchedule: o.lrSchedule, backbone: o.backbone ?? 'default', loraTargets: o.loraTargets ?? 'default',
    faults, events,
    finalAccuracyMean: meanOf(finals.map((f) => lastExit(f.accuracy))),
    finalAccuracyPerExitMean: finals[0]?.accuracy.map((_, e) => meanOf(finals.map((f) => f.accuracy[e]))),
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
  const accSeries = metrics.map((m, i) => ({ name: `node ${i}`, points: m.map((x) => [x.round, lastExit(x.accuracy)] as [number, number]) }));
  await writeFile(join(outDir, 'accuracy-vs-round.svg'), lineChart({ title: `${o.protocol}: last-exit test accuracy`, xLabel: 'round', yLabel: 'accuracy', series: accSeries }));
  const bytesSeries = metrics.map((m, i) => {
    let cum = 0;
    return { name: `node ${i}`, points: m.map((x) => [(cum += x.bytesUp), lastExit(x.accuracy)] as [number, number]) };
  });
  await writeFile(join(outDir, 'accuracy-vs-bytes.svg'), lineChart({ title: `${o.protocol}: accuracy vs bytes sent`, xLabel: 'cumulative bytes sent per node', yLabel: 'accuracy', series: bytesSeries, logX: true }));
  const rows = metrics.map((m, i) => {
    const last = m.at(-1);
    const fin = finals.find((f) => f.node === i);
    return `${String(i).padStart(4)}  ${String(m.length).padStart(6)}  ${last ? (lastExit(last.accuracy) * 100).toFixed(2).padStart(9) : '        -'}  ${fin ? (lastExit(fin.accuracy) * 100).toFixed(2).padStart(9) : '        -'}  ${String(Math.round(meanOf(m.map((x) => x.updateBytes)))).padStart(9)}  ${String(Math.round(meanOf(m.map((x) => x.bytesUp)))).padStart(9)}  ${String(Math.round(meanOf(m.map((x) => x.bytesDown)))).padStart(10)}  ${(last?.hash ?? '').slice(0, 12)}`;
  });
  console.log(`\nnode  rounds  slice-acc  full-acc%  update B  up B/rnd  down B/rnd  state`);
  console.log(rows.join('\n'));
  console.log(`\n${JSON.stringify({ ...summary, finals: undefined })}`);
  console.log(`\nplots: ${join(outDir, 'accuracy-vs-round.svg')}, ${join(outDir, 'accuracy-vs-bytes.svg')}`);
}

if (mode === 'procs') {
  const faults: string[] = o.fault ?? [];
  if (faults.some((f) => /^(partition|heal)@/.test(f))) throw new Error('partition/heal faults need --mode inproc');
  const E = edges();
  const events: { t: number; event: string }[] = [];
  const nodes: ProcNode[] = [];
  const peerIds: string[] = [];
  const fired = new Set<string>();
  let exits: Promise<number | null>[] = [];
  const procOpts = {
    n: N,
    outDir,
    peersOf: (i: number) => E.filter(([a, b]) => Math.max(a, b) === i && a !== b).map(([a, b]) => Math.min(a, b)),
    flags: (i: number) => {
      const fl = flConfig(i) as Record<string, unknown>;
      const profile = join(outDir, `node-${i}.json`);
      const extra = { ...(fl.attack ? { attack: fl.attack } : {}), ...(fl.dropRate ? { dropRate: fl.dropRate } : {}) };
      void writeFile(profile, JSON.stringify({ fl: extra }));
      const flag = (k: string, v: unknown): string[] => (v === undefined || v === null ? [] : [k, String(v)]);
      return [
        '--federation', 'sim', '--heartbeat-ms', '1000', '--expiry-ms', '6000', '--config', profile, '--final-eval',
        '--data', o.data, ...flag('--classes', o.classes), '--shard', `${i}/${N}`, '--alpha', String(o.alpha), '--protocol', o.protocol,
        ...flag('--partition-seed', o.seed), ...flag('--rounds', rounds), ...flag('--local-steps', o.localSteps), ...flag('--batch', o.batch), ...flag('--lr', o.lr),
        ...flag('--topk', o.topk), ...flag('--topk-scope', o.topkScope), ...(o.brotli === false ? ['--no-brotli'] : []), ...flag('--bits', o.bits), ...(o.errorFeedback === false ? ['--no-error-feedback'] : []),
        ...flag('--downlink-bits', o.downlinkBits), ...flag('--aggregator', o.aggregator), ...flag('--server-lr', o.serverLr), ...flag('--server-momentum', o.serverMomentum), ...(o.serverLrDecay ? ['--server-lr-decay'] : []), ...flag('--quorum', o.quorum),
        ...flag('--round-timeout-ms', o.roundTimeoutMs), ...flag('--leader-timeout-ms', o.leaderTimeoutMs), ...flag('--gamma', o.gamma), ...flag('--gossip-momentum', o.gossipMomentum), ...(o.logitAdjust ? ['--logit-adjust'] : []), ...flag('--lr-schedule', o.lrSchedule),
        ...flag('--rank', o.rank), ...flag('--lora-alpha', o.loraAlpha), ...flag('--backbone', o.backbone), ...flag('--lora-targets', o.loraTargets), ...flag('--proto-weight', o.protoWeight), ...flag('--prototype-every', o.prototypeEvery), ...flag('--test-slice', o.testSlice), ...flag('--threads', o.threads),
        ...(o.dpClip ? ['--dp-clip', String(o.dpClip), '--dp-noise', String(o.dpNoise ?? 1)] : []),
      ];
    },
    onLine: (i: number, line: string) => {
      const id = /^fmfl-node (\S+)/.exec(line);
      if (id) peerIds[i] = id[1];
      const r = /^round (\d+) /.exec(line);
      if (r) {
        if (i === 0 || o.verbose) console.log(`[node ${i}] ${line}`);
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
        const alive = nodes.filter((n) => n.proc).map((n) => peerIds[n.index]);
        const victim = peerIds.indexOf(leaderOrder('sim', next, alive)[0]);
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
  log.info({ nodes: N, mode, topology: o.topology, protocol: o.protocol, setupMs: Date.now() - t0 }, 'node processes started');
  exits = nodes.map((n) => n.exited);
  for (let k = 0; k < exits.length; k++) await exits[k];
  const metrics: RoundMetrics[][] = [];
  const finals: { node: number; accuracy: number[]; ensembleAccuracy: number; hash: string }[] = [];
  for (let i = 0; i < N; i++) {
    const all = (await readMetrics(nodes[i])) as (RoundMetrics & { final?: boolean })[];
    metrics.push(all.filter((x) => !x.final));
    const fin = all.find((x) => x.final) as unknown as { accuracy: number[]; ensembleAccuracy: number; hash: string } | undefined;
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
const stateDir = (i: number): string => join(outDir, `node-${i}`);
const meshOpts = inprocMeshOptions(N, { heartbeatMs: o.heartbeatMs === undefined ? undefined : Number(o.heartbeatMs), memoryLatencyMs: o.memoryLatencyMs === undefined ? undefined : Number(o.memoryLatencyMs) });
const listen = (i: number): string[] => (o.transport === 'memory' ? [`/memory/${name}-${i}-${Date.now()}`] : ['/ip4/127.0.0.1/tcp/0']);

async function startNode(i: number, peers: string[]): Promise<void> {
  await mkdir(stateDir(i), { recursive: true });
  const mesh = await createMesh({
    federation: 'sim', identity: await loadOrCreateIdentity(stateDir(i)), listen: listen(i), peers,
    ...meshOpts, logger: o.verbose ? createLogger({ level: 'info', name: `mesh${i}` }) : undefined,
  });
  await mesh.start();
  meshes[i] = mesh;
  feds[i] = await Federation.create(mesh, flConfig(i), { logger: o.verbose || i === 0 ? createLogger({ level: 'info', name: `node${i}` }) : silentLogger(), stateDir: stateDir(i) });
}

function addrOf(i: number): string {
  return meshes[i]!.multiaddrs()[0];
}

for (let i = 0; i < N; i++) await startNode(i, []);
const linkMs = await linkInWaves(meshes as Mesh[], edges(), {
  onWave: (w) => (w.connected < w.dials || w.node % 8 === 0) && log.info({ ...w, ms: Math.round(w.ms), t: Math.round((Date.now() - t0) / 1000) }, 'linked'),
});
log.info({ nodes: N, topology: o.topology, protocol: o.protocol, setupMs: Date.now() - t0, linkMs: Math.round(linkMs), rssMB: Math.round(process.memoryUsage.rss() / 1e6), ...meshOpts }, 'nodes started and linked');

// Fault schedule, triggered when the first node finishes round R-1 (i.e. round R starts).
const faults: string[] = o.fault ?? [];
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
    f.run({ onRound: (m) => { metrics[i].push(m); onRoundDone(m.round); } }).then(() => undefined, (err) => log.error({ node: i, err: String(err) }, 'node failed')),
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
const statusTimer = setInterval(() => {
  const live = meshes.filter((m): m is Mesh => m !== null);
  const span = (xs: number[]): string => (xs.length ? `${Math.min(...xs)}..${Math.max(...xs)}` : '-');
  log.info({
    t: Math.round((Date.now() - t0) / 1000), version: span(feds.filter((f): f is Federation => f !== null).map((f) => f.protocol.round)),
    members: span(live.map((m) => m.membership.memberIds().length)), connections: span(live.map((m) => m.connectedPeers().length)),
    wireMB: Math.round(live.reduce((a, m) => a + m.wire.bytesOut, 0) / 1e5) / 10, rssMB: Math.round(process.memoryUsage.rss() / 1e6),
    lagP50Ms: Math.round(lag.percentile(50) / 1e6), lagMaxMs: Math.round(lag.max / 1e6),
  }, 'status');
  lag.reset();
}, 1000 * Number(o.statusS));
statusTimer.unref();
// Runs started by restarts are appended while we wait.
for (let k = 0; k < runs.length; k++) await runs[k];
clearInterval(statusTimer);
log.info({ t: Date.now() - t0 }, 'all runs done');

// Final evaluation on the full test split: freeze each node's model, stop every protocol and mesh at once, then
// evaluate each distinct model once (scripts/lib/inproc.ts says why; this order ends the 32-node hang of issue 17).
const testSet = (await loadData({ ref: o.data, input: (await loadBackbone(o.backbone)).input, classes: o.classes ? String(o.classes).split(',') : undefined, seed: Number(o.seed) })).test;
const done = await finishInproc({
  feds, meshes, test: testSet,
  onEval: (e) => log.info({ node: e.node, sharedBy: e.nodes, ms: Math.round(e.ms) }, 'final evaluation'),
});
log.info({ t: Date.now() - t0, stopMs: Math.round(done.stopMs), evalMs: Math.round(done.evalMs), evaluations: done.evaluations }, 'meshes stopped, final models evaluated');
const finals = done.finals.map(({ node, accuracy, ensembleAccuracy, hash }) => ({ node, accuracy, ensembleAccuracy, hash: metrics[node].at(-1)?.hash ?? hash }));
await report(metrics, finals, events, faults);
for (const f of feds) await f?.release().catch(() => {});
process.exit(0);
