/**
 * The federated-learning part of `fmfl-node`: flags that map onto FederationConfig, and the run loop that
 * trains, exchanges and checkpoints every round with a progress bar and per-round metric lines.
 */
import { appendFile } from 'node:fs/promises';
import cliProgress from 'cli-progress';
import { Option, type Command } from 'commander';
import type { FmflNode } from '../node/fmfl-node.ts';
import { resolveAutoBudget } from '../node/budget.ts';
import { throughputAtDepth } from '../node/capabilities.ts';
import { join } from 'node:path';
import { Federation, type FederationConfig, type RoundMetrics } from '../round/index.ts';
import { CHECKPOINT_FILE } from '../round/federation.ts';
import { FL_DEFAULTS, FL_KNOBS, parseClassList } from '../round/fl-config.ts';
import { addSchemaOptions, typedValues } from './schema-options.ts';
import { prototypesFromStats } from '../model/model-checkpoint.ts';

/** Flags of the federated run that are not federation settings (how this process reports). */
export interface FlFlags {
  metrics?: string;
  progress?: boolean;
}

/** Add the federated-learning flags to the main command: one per schema key (src/round/fl-config.ts), then reporting. */
export function addFederationOptions(cmd: Command): Command {
  return addSchemaOptions(cmd, FL_KNOBS, FL_DEFAULTS)
    .addOption(new Option('--metrics <file>', 'append per-round metrics as JSON lines to this file'))
    .addOption(new Option('--no-progress', 'no progress bar during local training'));
}

/** The federation settings the user typed on the command line, by schema key (profile keys and flags share them). */
export function flFlagsToConfig(cmd: Command): Partial<FederationConfig> {
  return typedValues(cmd, FL_KNOBS) as Partial<FederationConfig>;
}

export { parseClassList };

/** True when the flags or the profile ask for federated training. */
export function wantsFederation(typed: Record<string, unknown>, profile: Record<string, unknown> | undefined): boolean {
  return Object.keys(typed).length > 0 || profile !== undefined;
}

export function formatRound(m: RoundMetrics): string {
  const acc = m.accuracy.map((a) => (a * 100).toFixed(1)).join('/');
  return `round ${m.round} v${m.version} ${m.via}${m.leader ? ` leader=${m.leader.slice(-8)}` : ''} loss=${m.trainLoss.toFixed(3)} acc(exits)=${acc} up=${m.bytesUp}B down=${m.bytesDown}B ${(m.roundMs / 1000).toFixed(1)}s${m.consensusDistance !== undefined ? ` consensus=${m.consensusDistance.toExponential(2)}` : ''}${m.epsilon !== undefined ? ` eps=${m.epsilon.toFixed(2)}` : ''}${m.personal ? ` own-split(global/personal)=${(m.personal.global.at(-1)! * 100).toFixed(1)}/${(m.personal.personal.at(-1)! * 100).toFixed(1)}` : ''}`;
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
  const budget = await resolveAutoBudget(fl, node.measured, node.config.stateDir ? `${node.config.stateDir}/${CHECKPOINT_FILE}` : undefined);
  if (budget.pick) {
    const p = budget.pick;
    node.log.debug({ depth: p.depth, rank: p.rank, outcome: p.outcome, stepSeconds: p.stepSeconds, trainSeconds: p.trainSeconds, depthModel: p.depthModel }, 'budget auto');
    io.stdout(`${p.reason}\n`);
  }
  const fed = await Federation.create(node.mesh, budget.fl, { logger: node.log, stateDir: node.config.stateDir });
  const atDepth = throughputAtDepth(node.measured, fed.trainer.depth);
  node.mesh.membership.setCapabilities({
    datasetSize: fed.shardSize, loraRank: fed.cfg.trainable === 'lora+heads' ? fed.cfg.rank : 0, maxExitDepth: fed.trainer.depth,
    ...(atDepth !== null ? { trainThroughput: atDepth } : {}),
  });
  io.stdout(`federating: protocol=${fed.cfg.protocol} rounds=${fed.cfg.rounds} shard=${fed.cfg.shard} samples=${fed.shardSize} topk=${fed.cfg.topk} bits=${fed.cfg.bits} aggregator=${fed.cfg.aggregator}\n`);
  const minMembers = fed.cfg.minMembers ?? Number(fed.cfg.shard.split('/')[1]);
  node.status.federationStarted({ protocol: fed.cfg.protocol, rounds: fed.cfg.rounds, minMembers, roundTimeoutMs: fed.cfg.roundTimeoutMs, localSteps: fed.cfg.localSteps, version: fed.protocol.round });
  const waiting = waitingReporter(node, minMembers, io);
  const shortRound = shortRoundWarnings();
  const useBar = opts.progress !== false && process.stderr.isTTY === true;
  const bar = useBar ? new cliProgress.SingleBar({ format: 'local training [{bar}] {value}/{total} steps  loss {loss}', stream: process.stderr, clearOnComplete: true }, cliProgress.Presets.shades_classic) : null;
  let barOn = false;
  let stoppedBy: string | undefined;
  void shutdown.then(async (why) => {
    stoppedBy = why;
    await fed.stop();
  });
  /** A node that also serves predictions switches to each new global model (sessions are reused). */
  const serveGlobal = (version: number, hash: string): void => {
    if (!node.inference) return;
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
      node.inference.updateModel(fed.modelAtBudget(fed.protocol.model()), `fed-r${version}-${hash.slice(0, 8)}`, protos);
    } catch (err) {
      node.log.warn({ err: (err as Error).message }, 'the served model does not match the federation model; keeping the served one');
    }
  };
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
      node.status.roundDone(m);
      const inView = node.mesh.membership.memberIds(true);
      // Leader rounds: every member of the federation (the roster, the members waited for, the view) should contribute,
      // so a survivor whose peer left keeps saying so. Gossip mixes only neighbours: its connected members.
      const expected = m.protocol === 'leader'
        ? Math.max(inView.length, minMembers, node.mesh.roster?.length ?? 0)
        : 1 + node.mesh.connectedPeers().filter((p) => inView.includes(p)).length;
      const warning = shortRound.next(m, expected);
      if (warning !== null) node.log.warn({ round: m.version, contributors: m.via === 'mixed' ? m.contributors + 1 : m.contributors, expected }, warning);
      serveGlobal(m.version, m.hash);
      // Text mode prints the line below on stdout; JSON-log mode also emits the structured record on stderr.
      if (node.config.jsonLogs) node.log.info({ ...m, accuracy: m.accuracy.map((a) => Math.round(a * 10000) / 10000) }, 'round complete');
      io.stdout(`${formatRound(m)}\n`);
      // wireIn / wireOut: cumulative raw connection bytes of this node (libp2p level, heartbeats included).
      if (opts.metrics) void appendFile(opts.metrics, JSON.stringify({ time: new Date().toISOString(), ...m, wireIn: node.mesh.wire.bytesIn, wireOut: node.mesh.wire.bytesOut }) + '\n').catch(() => {});
    },
    onFinalState: (st) => {
      node.log.warn({ version: st.version, hash: st.hash }, 'the final state was replaced by the one the federation certified; serving and checkpointing that');
      serveGlobal(st.version, st.hash);
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

/**
 * Warnings for rounds that ran with fewer updates than members expected: one when the shortfall starts or changes
 * (not one per round of a long solo run), none while rounds are full; a round pulled from peers (`synced`) says nothing.
 */
export function shortRoundWarnings(): { next(m: Pick<RoundMetrics, 'version' | 'via' | 'contributors'>, expected: number): string | null } {
  let last = '';
  return {
    next(m, expected) {
      if (m.via === 'synced') return null;
      // Leader rounds count the leader among the contributors; a gossip round counts the peers mixed in.
      const contributed = m.via === 'mixed' ? m.contributors + 1 : m.contributors;
      if (contributed >= expected) {
        last = '';
        return null;
      }
      const key = `${contributed}/${expected}`;
      if (key === last) return null;
      last = key;
      return `round ${m.version} ran with ${contributed} of ${expected} members' updates (the others were late or gone)${contributed === 1 ? '; training alone until they are back' : ''}`;
    },
  };
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
        : node.mesh.connectedPeers().length > 0 ? 'connected; waiting for their heartbeats' : node.config.mdns ? 'looking for members by mDNS' : 'no --peers to dial: the others must dial this node';
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
