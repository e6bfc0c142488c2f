/**
 * The federated-learning part of `fmfl-node`: flags that map onto FederationConfig, and the run loop that
 * trains, exchanges and checkpoints every round with a progress bar and per-round metric lines.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { appendFile } from 'node:fs/promises';
import cliProgress from 'cli-progress';
import { Option, type Command } from 'commander';
import { AGGREGATOR_NAMES } from '../aggregate/index.ts';
import type { FmflNode } from '../node/fmfl-node.ts';
import { join } from 'node:path';
import { Federation, type FederationConfig, type RoundMetrics } from '../round/index.ts';
import { CHECKPOINT_FILE } from '../round/federation.ts';
import { ConfigError } from '../util/errors.ts';
import { prototypesFromStats } from '../model/model-checkpoint.ts';

/** Flags of the federated run, as commander parses them. */
export interface FlFlags {
  data?: string;
  classes?: string;
  imageSize?: number;
  channels?: number;
  testFraction?: number;
  shard?: string;
  partitionSeed?: number;
  alpha?: string;
  protocol?: string;
  rounds?: number;
  localSteps?: number;
  batch?: number;
  lr?: number;
  rank?: number;
  globalRank?: number;
  maxDepth?: number;
  loraAlpha?: number;
  loraTargets?: string[];
  topk?: number;
  topkScope?: string;
  brotli?: boolean;
  bits?: number;
  errorFeedback?: boolean;
  downlinkBits?: number;
  aggregator?: string;
  serverLr?: number;
  serverMomentum?: number;
  serverLrDecay?: boolean;
  logitAdjust?: boolean;
  lrSchedule?: string;
  quorum?: number;
  roundTimeoutMs?: number;
  leaderTimeoutMs?: number;
  gamma?: number;
  gossipMomentum?: number;
  protoWeight?: number;
  prototypeEvery?: number;
  testSlice?: number;
  dpClip?: number;
  dpNoise?: number;
  secagg?: boolean;
  secaggClip?: number;
  threads?: number;
  device?: string;
  backbone?: string;
  minMembers?: number;
  metrics?: string;
  progress?: boolean;
  finalEval?: boolean;
}

function num(name: string) {
  return (v: string): number => {
    const x = Number(v);
    if (v.trim() === '' || !Number.isFinite(x)) throw new ConfigError(`${name} must be a number, got "${v}"`);
    return x;
  };
}

/** Add the federated-learning flags to the main command. */
export function addFederationOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--data <name|dir|csv>', 'training data: fashion-mnist | mnist, a folder of <class>/<image> files (png, jpg, webp, tif, dcm; optional train/ and test/ inside), or a CSV of path,label rows (enables federated training)'))
    .addOption(new Option('--classes <list|file>', "the federation's label set: comma-separated names or a classes.txt (one per line); default: the data's own (sorted folder names)"))
    .addOption(new Option('--image-size <n>', "input size the node expects; must match the backbone's (default: the backbone's)").argParser(num('--image-size')))
    .addOption(new Option('--channels <n>', "input channels the node expects, 1 or 3; must match the backbone's (default: the backbone's)").argParser(num('--channels')))
    .addOption(new Option('--test-fraction <x>', 'share of each class held out for testing when the data has no test/ folder (seeded, stratified; default 0.2)').argParser(num('--test-fraction')))
    .addOption(new Option('--shard <i/n>', "this node's shard of the train split, 0-based (e.g. 3/8)"))
    .addOption(new Option('--partition-seed <n>', 'seed of the label split; every member must use the same one to get disjoint shards (default 42)').argParser(num('--partition-seed')))
    .addOption(new Option('--alpha <x|iid>', 'Dirichlet label-skew concentration, or "iid" (default 0.5)'))
    .addOption(new Option('--protocol <p>', 'round protocol: leader | gossip (default leader)'))
    .addOption(new Option('--rounds <n>', 'rounds to run (default 30)').argParser(num('--rounds')))
    .addOption(new Option('--local-steps <n>', 'local training steps per round (default 50)').argParser(num('--local-steps')))
    .addOption(new Option('--batch <n>', 'batch size (default 64)').argParser(num('--batch')))
    .addOption(new Option('--lr <x>', 'AdamW learning rate (default 1e-3)').argParser(num('--lr')))
    .addOption(new Option('--lr-schedule <s>', 'local learning-rate schedule over all rounds: constant | cosine (default constant)'))
    .addOption(new Option('--rank <n>', 'LoRA rank of this node (default 8); below --global-rank it trains the global adapter truncated to it').argParser(num('--rank')))
    .addOption(new Option('--global-rank <n>', 'rank of the federation\'s global adapter, the same on every member (default: --rank); mixed ranks need --aggregator hetlora-zero | hetlora-replicate | flexlora').argParser(num('--global-rank')))
    .addOption(new Option('--max-depth <k>', 'depth budget: train and serve blocks 1..k and exits 1..k only; updates carry only those tensors (default: all blocks)').argParser(num('--max-depth')))
    .addOption(new Option('--lora-alpha <x>', 'LoRA alpha (default 64: scale alpha/r = 8 at r=8; the reference recipe uses 16)').argParser(num('--lora-alpha')))
    .addOption(new Option('--lora-targets <list>', 'projections with LoRA, comma-separated: q,k,v,proj,fc1,fc2 (default all six)').argParser((v: string) => v.split(',').map((s) => s.trim())))
    .addOption(new Option('--topk <x>', 'fraction of update entries sent, 1 = dense (default 1)').argParser(num('--topk')))
    .addOption(new Option('--topk-scope <s>', 'top-k per tensor (tensor, default) or one threshold over all tensors (global)'))
    .addOption(new Option('--no-brotli', 'do not brotli-compress update payloads (on by default: lossless, ~8% smaller)'))
    .addOption(new Option('--bits <n>', 'bits per sent value: 32 | 16 | 8 | 4 | 1 (1: scaled sign, for dense updates with error feedback; default 1)').argParser(num('--bits')))
    .addOption(new Option('--no-error-feedback', 'do not carry compression residuals into the next round'))
    .addOption(new Option('--downlink-bits <n>', 'bits of the leader broadcast: 32 | 16 | 8 (default 16)').argParser(num('--downlink-bits')))
    .addOption(new Option('--aggregator <name>', `aggregation rule (default fedavgm): ${AGGREGATOR_NAMES.join(', ')}`))
    .addOption(new Option('--server-lr <x>', 'server learning rate of fedavgm (default 1) and fedadam/fedyogi/fedadagrad (default 0.01)').argParser(num('--server-lr')))
    .addOption(new Option('--server-lr-decay', 'decay --server-lr over the rounds to 1 (cosine)'))
    .addOption(new Option('--server-momentum <x>', 'fedavgm: server momentum in [0, 1) (default 0.6)').argParser(num('--server-momentum')))
    .addOption(new Option('--quorum <x>', 'leader: fewest contributions a round closes with, as a fraction of the roster (default: a majority)').argParser(num('--quorum')))
    .addOption(new Option('--round-timeout-ms <ms>', 'leader: wait for updates at most this long (default 60000)').argParser(num('--round-timeout-ms')))
    .addOption(new Option('--leader-timeout-ms <ms>', 'leader: backup k takes over after k times this (default 15000)').argParser(num('--leader-timeout-ms')))
    .addOption(new Option('--gamma <x>', 'gossip: CHOCO consensus step size in [0, 1] (default 0)').argParser(num('--gamma')))
    .addOption(new Option('--gossip-momentum <x>', 'gossip: heavy-ball momentum on the averaged model in [0, 1) (default 0.6)').argParser(num('--gossip-momentum')))
    .addOption(new Option('--logit-adjust', 'against label skew: local training adds the log of the local label prior to the logits in the loss (balanced softmax, FedLC)'))
    .addOption(new Option('--proto-weight <x>', 'weight of the prototype loss term (default 0)').argParser(num('--proto-weight')))
    .addOption(new Option('--prototype-every <n>', 'send prototype statistics every n rounds (default 0: last round only)').argParser(num('--prototype-every')))
    .addOption(new Option('--test-slice <n>', 'test images evaluated each round (default 1000)').argParser(num('--test-slice')))
    .addOption(new Option('--dp-clip <x>', 'client-level DP: clip each update to this L2 norm').argParser(num('--dp-clip')))
    .addOption(new Option('--dp-noise <x>', 'client-level DP: Gaussian noise multiplier').argParser(num('--dp-noise')))
    .addOption(new Option('--secagg', 'leader protocol: secure aggregation, the leader learns only the mean of the updates (dense 32-bit masked updates: no top-k/quantization; no prototypes)'))
    .addOption(new Option('--secagg-clip <x>', 'secure aggregation: clip each update value to [-x, x] before fixed-point encoding (default 1)').argParser(num('--secagg-clip')))
    .addOption(new Option('--threads <n>', 'onnxruntime threads (default: cores)').argParser(num('--threads')))
    .addOption(new Option('--device <d>', 'cpu | cuda | auto (default cpu)'))
    .addOption(new Option('--backbone <name>', 'backbone in models/ (default vit-tiny-mnist-strong; vit-tiny-mnist is the reference recipe)'))
    .addOption(new Option('--min-members <n>', 'members to wait for before round 1 (default: n of --shard)').argParser(num('--min-members')))
    .addOption(new Option('--metrics <file>', 'append per-round metrics as JSON lines to this file'))
    .addOption(new Option('--final-eval', 'after the last round, evaluate on the whole test split'))
    .addOption(new Option('--no-progress', 'no progress bar during local training'));
}

/** The FederationConfig fields set by flags (undefined = not given). */
export function flFlagsToConfig(f: FlFlags): Partial<FederationConfig> & Record<string, unknown> {
  const out: Record<string, unknown> = {
    dataset: f.data, shard: f.shard, partitionSeed: f.partitionSeed, protocol: f.protocol, rounds: f.rounds, localSteps: f.localSteps, batch: f.batch, lr: f.lr,
    rank: f.rank, globalRank: f.globalRank, maxDepth: f.maxDepth, loraAlpha: f.loraAlpha, loraTargets: f.loraTargets, topk: f.topk, topkScope: f.topkScope, brotli: f.brotli === false ? false : undefined, bits: f.bits,
    errorFeedback: f.errorFeedback === false ? false : undefined, downlinkBits: f.downlinkBits, aggregator: f.aggregator,
    serverLr: f.serverLr, serverMomentum: f.serverMomentum, serverLrDecay: f.serverLrDecay, logitAdjust: f.logitAdjust, lrSchedule: f.lrSchedule, quorum: f.quorum, roundTimeoutMs: f.roundTimeoutMs, leaderTimeoutMs: f.leaderTimeoutMs, gossipGamma: f.gamma, gossipMomentum: f.gossipMomentum,
    protoWeight: f.protoWeight, prototypeEvery: f.prototypeEvery, testSlice: f.testSlice, dpClip: f.dpClip, dpNoise: f.dpNoise, secagg: f.secagg, secaggClip: f.secaggClip, threads: f.threads,
    device: f.device, backbone: f.backbone, minMembers: f.minMembers, finalEval: f.finalEval,
  };
  if (f.alpha !== undefined) out.alpha = f.alpha === 'iid' ? null : num('--alpha')(f.alpha);
  if (f.classes !== undefined) out.classes = parseClassList(f.classes);
  if (f.imageSize !== undefined) out.imageSize = f.imageSize;
  if (f.channels !== undefined) out.channels = f.channels;
  if (f.testFraction !== undefined) out.testFraction = f.testFraction;
  for (const k of Object.keys(out)) if (out[k] === undefined) delete out[k];
  return out as Partial<FederationConfig>;
}

/**
 * `--classes`: a comma-separated list, or the path of a text file with one class per line (blank lines and lines
 * starting with # are skipped). @throws ConfigError on an empty list or a duplicate name.
 */
export function parseClassList(v: string): string[] {
  let names: string[];
  if (!v.includes(',') && existsSync(v) && statSync(v).isFile()) {
    names = readFileSync(v, 'utf8').split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
    if (names.length === 0) throw new ConfigError(`--classes ${v}: the file names no class (one class name per line)`);
  } else {
    names = v.split(',').map((s) => s.trim()).filter((s) => s !== '');
    if (names.length === 0) throw new ConfigError('--classes: give at least one class name, e.g. --classes normal,pneumonia (or a classes.txt)');
  }
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup !== undefined) throw new ConfigError(`--classes names '${dup}' twice`);
  return names;
}

/** True when the flags or the profile ask for federated training. */
export function wantsFederation(f: FlFlags, profile: Record<string, unknown> | undefined): boolean {
  return f.data !== undefined || f.classes !== undefined || f.rounds !== undefined || f.protocol !== undefined || f.shard !== undefined || profile !== undefined;
}

export function formatRound(m: RoundMetrics): string {
  const acc = m.accuracy.map((a) => (a * 100).toFixed(1)).join('/');
  return `round ${m.round} v${m.version} ${m.via}${m.leader ? ` leader=${m.leader.slice(-8)}` : ''} loss=${m.trainLoss.toFixed(3)} acc(exits)=${acc} up=${m.bytesUp}B down=${m.bytesDown}B ${(m.roundMs / 1000).toFixed(1)}s${m.consensusDistance !== undefined ? ` consensus=${m.consensusDistance.toExponential(2)}` : ''}${m.epsilon !== undefined ? ` eps=${m.epsilon.toFixed(2)}` : ''}`;
}

/**
 * Run the federation on a started node until the configured rounds are done or `shutdown` resolves.
 * State is checkpointed every round in the node's state folder, so a restart resumes.
 */
export async function runFederation(
  node: FmflNode,
  fl: Record<string, unknown>,
  io: { stdout: (s: string) => void; stderr: (s: string) => void },
  shutdown: Promise<string>,
  opts: { metrics?: string; progress?: boolean } = {},
): Promise<{ rounds: RoundMetrics[]; stoppedBy?: string }> {
  const t0 = performance.now();
  const fed = await Federation.create(node.mesh, fl, { logger: node.log, stateDir: node.config.stateDir });
  node.mesh.membership.setCapabilities({ datasetSize: fed.shardSize, loraRank: fed.cfg.trainable === 'lora+heads' ? fed.cfg.rank : 0, maxExitDepth: fed.trainer.depth });
  io.stdout(`federating: protocol=${fed.cfg.protocol} rounds=${fed.cfg.rounds} shard=${fed.cfg.shard} samples=${fed.shardSize} topk=${fed.cfg.topk} bits=${fed.cfg.bits} aggregator=${fed.cfg.aggregator}\n`);
  const minMembers = fed.cfg.minMembers ?? Number(fed.cfg.shard.split('/')[1]);
  node.status.federationStarted({ protocol: fed.cfg.protocol, rounds: fed.cfg.rounds, minMembers, roundTimeoutMs: fed.cfg.roundTimeoutMs, localSteps: fed.cfg.localSteps, version: fed.protocol.round });
  const waiting = waitingReporter(node, minMembers, io);
  const useBar = opts.progress !== false && process.stderr.isTTY === true;
  const bar = useBar ? new cliProgress.SingleBar({ format: 'local training [{bar}] {value}/{total} steps  loss {loss}', stream: process.stderr, clearOnComplete: true }, cliProgress.Presets.shades_classic) : null;
  let barOn = false;
  let stoppedBy: string | undefined;
  void shutdown.then(async (why) => {
    stoppedBy = why;
    await fed.stop();
  });
  const rounds = await fed.run({
    onStep: (s, total, loss) => {
      waiting.stop();
      node.status.trainingStep(s, total);
      if (!bar) return;
      if (!barOn) {
        bar.start(total, 0, { loss: '-' });
        barOn = true;
      }
      bar.update(s, { loss: loss.toFixed(3) });
      if (s >= total) {
        bar.stop();
        barOn = false;
      }
    },
    onRound: (m) => {
      waiting.stop();
      const members = node.mesh.membership.memberIds(true).length;
      node.status.roundDone(m);
      // Leader rounds count the leader among the contributors; a gossip round counts the peers mixed in.
      const contributed = m.via === 'mixed' ? m.contributors + 1 : m.contributors;
      if (m.via !== 'synced' && contributed < members) {
        node.log.warn({ round: m.version, contributors: contributed, members }, `round ${m.version} ran with ${contributed} of ${members} members' updates (the others were late or gone)`);
      }
      // A node that also serves predictions switches to each new global model (sessions are reused).
      if (node.inference) {
        try {
          const c = fed.trainer.cfg;
          const tables = fed.protocol.prototypes();
          const sums = new Float64Array(c.depth * c.classes * c.dim);
          const counts = new Float64Array(c.depth * c.classes);
          for (const t of tables) {
            if (t.exit >= c.depth || t.dim !== c.dim) continue;
            t.counts.forEach((n, k) => (counts[t.exit * c.classes + k] = n));
            sums.set(t.sums.subarray(0, c.classes * c.dim), t.exit * c.classes * c.dim);
          }
          const protos = tables.length ? prototypesFromStats({ exits: c.depth, classes: c.classes, dim: c.dim, sums, counts }) : undefined;
          node.inference.updateModel(fed.modelAtBudget(fed.protocol.model()), `fed-r${m.version}-${m.hash.slice(0, 8)}`, protos);
        } catch (err) {
          node.log.warn({ err: (err as Error).message }, 'the served model does not match the federation model; keeping the served one');
        }
      }
      // Text mode prints the line below on stdout; JSON-log mode also emits the structured record on stderr.
      if (node.config.jsonLogs) node.log.info({ ...m, accuracy: m.accuracy.map((a) => Math.round(a * 10000) / 10000) }, 'round complete');
      io.stdout(`${formatRound(m)}\n`);
      // wireIn / wireOut: cumulative raw connection bytes of this node (libp2p level, heartbeats included).
      if (opts.metrics) void appendFile(opts.metrics, JSON.stringify({ time: new Date().toISOString(), ...m, wireIn: node.mesh.wire.bytesIn, wireOut: node.mesh.wire.bytesOut }) + '\n').catch(() => {});
    },
    onFinal: (ev) => {
      io.stdout(`final v${ev.version} test accuracy (${ev.n} images) per exit ${ev.accuracy.map((a) => (a * 100).toFixed(2)).join('/')} exit-ensemble ${(ev.ensembleAccuracy * 100).toFixed(2)}\n`);
      if (opts.metrics) void appendFile(opts.metrics, JSON.stringify({ time: new Date().toISOString(), final: true, ...ev }) + '\n').catch(() => {});
    },
  }).finally(() => waiting.stop());
  if (barOn) bar?.stop();
  await fed.checkpoint();
  await fed.release();
  node.status.federationEnded(stoppedBy);
  io.stdout(`${runSummary(rounds, fed.protocol.round, fed.cfg.rounds, (performance.now() - t0) / 1000, node.config.stateDir, stoppedBy)}\n`);
  return { rounds, stoppedBy };
}

/** The one end-of-run line: rounds, final accuracy per exit, checkpoint, wall time. */
export function runSummary(rounds: RoundMetrics[], version: number, target: number, seconds: number, stateDir: string | undefined, stoppedBy?: string): string {
  const last = rounds.at(-1);
  const acc = last ? `final accuracy per exit ${last.accuracy.map((a) => (a * 100).toFixed(1)).join('/')}%` : 'no round completed';
  const ck = stateDir !== undefined ? `checkpoint ${join(stateDir, CHECKPOINT_FILE)}` : 'no checkpoint (no --state-dir)';
  const head = stoppedBy !== undefined && version < target ? `stopped (${stoppedBy}) at round ${version} of ${target}` : `done: ${version} of ${target} rounds`;
  return `${head} (${rounds.length} run here) in ${seconds.toFixed(1)} s; ${acc}; ${ck}`;
}

/**
 * While the node waits for members before round 1, print "waiting for members k/n (dialing ...)" whenever the count
 * or a dial failure cause changes. `stop()` ends it (first training step or round).
 */
function waitingReporter(node: FmflNode, need: number, io: { stdout: (s: string) => void }): { stop(): void } {
  let last = '';
  let stopped = false;
  const report = (): void => {
    if (stopped) return;
    const have = node.mesh.membership.memberIds(true).length;
    let line: string;
    if (have >= need) line = `members ${have}/${need}: starting`;
    else {
      const dialing = node.mesh.dialStatus().filter((d) => !d.connected);
      const what = dialing.length > 0
        ? `dialing ${dialing.map((d) => `${d.addr}${d.cause ? ` (${d.cause})` : ''}`).join(', ')}`
        : node.mesh.connectedPeers().length > 0 ? 'connected; waiting for their heartbeats' : 'no --peers to dial: the others must dial this node';
      line = `waiting for members ${have}/${need} (${what})`;
    }
    if (line !== last) {
      io.stdout(`${line}\n`);
      last = line;
    }
    if (have >= need) stop();
  };
  const timer = setInterval(report, 500);
  timer.unref();
  const stop = (): void => {
    stopped = true;
    clearInterval(timer);
  };
  report();
  return { stop };
}
