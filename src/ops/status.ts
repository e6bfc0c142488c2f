/**
 * What a node knows about its federation, gathered for `GET /status`, the dashboard and `fmfl-node status`:
 * members (from the membership view, with each member's own round, neighbours and RTT polled over `ops.status`),
 * the mesh graph, the round in progress and the completed rounds, refusals, DP epsilon and consensus distance.
 */
import { RefusalReason, type RefusalEvent } from '../mesh/index.ts';
import type { Mesh } from '../mesh/mesh.ts';
import type { Capabilities } from '../mesh/membership.ts';
import type { RoundMetrics } from '../round/federation.ts';
import { roundProtocol } from '../round/registry.ts';
import { MAX_POLLED_PEERS, MAX_RECENT_REFUSALS, MAX_ROUND_HISTORY, MAX_STATUS_MEMBERS, PEER_POLL_INTERVAL_MS, STATUS_POLL_WAIT_MS } from './limits.ts';
import { pollPeer, servePeerStatus, type Phase, type PolledPeer } from './peer-status.ts';
import type { FmflMetrics } from './metrics.ts';

/** Version of the /status JSON document. */
export const STATUS_VERSION = 1;

/** One member as /status shows it. */
export interface StatusMember {
  id: string;
  self: boolean;
  addrs: string[];
  capabilities: Capabilities;
  /** Local time of the last heartbeat received (ms since epoch); this node: now. */
  lastSeenMs: number;
  joinedMs: number;
  connected: boolean;
  /** The member's own completed rounds (polled), null when unknown. */
  round: number | null;
  phase: Phase | null;
  /** Round trip of a sync ping (ms), null when unknown or for this node. */
  rttMs: number | null;
  /** PeerIds of members it is connected to (polled; this node: its own connections). */
  neighbours: string[];
}

/** One completed round as /status shows it. */
export interface StatusRound {
  round: number;
  version: number;
  hash: string;
  via: string;
  leader: string | null;
  contributors: number;
  /** Members in this node's view (itself included) when the round completed. */
  members: number;
  accuracy: number[];
  ensembleAccuracy: number;
  trainLoss: number;
  bytesUp: number;
  bytesDown: number;
  trainMs: number;
  roundMs: number;
  consensusDistance: number | null;
  epsilon: number | null;
  /** Completion time (ms since epoch). */
  timeMs: number;
}

/** The federation part of /status (null when the node does not federate). */
export interface StatusFederation {
  protocol: 'leader' | 'gossip';
  /** Target number of rounds. */
  rounds: number;
  /** Rounds completed (global version). */
  round: number;
  phase: Phase;
  /** Members needed before round 1. */
  minMembers: number;
  current: {
    round: number;
    /** Expected leader of the round in progress (leader protocol: first of the round's leader order). */
    leader: string | null;
    startedMs: number | null;
    /** When the leader stops waiting for updates (exchange start + roundTimeoutMs); null outside the exchange. */
    deadlineMs: number | null;
    step: number;
    steps: number;
  };
  last: StatusRound | null;
  epsilon: number | null;
  consensusDistance: number | null;
  stepsPerSecond: number | null;
  stoppedBy: string | null;
}

/** The /status document. */
export interface StatusDocument {
  v: typeof STATUS_VERSION;
  timeMs: number;
  node: { id: string; federation: string; addrs: string[]; startedMs: number; name: string | null; checkpoint: string | null };
  members: StatusMember[];
  mesh: { edges: [string, string][] };
  federation: StatusFederation | null;
  rounds: StatusRound[];
  refusals: { byReason: Record<string, number>; recent: { timeMs: number; reason: string; where: string; peer: string | null }[] };
  bytes: { wireIn: number; wireOut: number; updateUp: number; updateDown: number };
  /** Configured peers that are not connected, with the likely cause of the last dial failure. */
  dialing: { addr: string; attempts: number; cause: string | null }[];
}

/** Settings of the federation this node runs, for {@link NodeStatus.federationStarted}. */
export interface FederationInfo {
  protocol: 'leader' | 'gossip';
  rounds: number;
  minMembers: number;
  roundTimeoutMs: number;
  localSteps: number;
  /** Rounds already completed (a resumed node). */
  version: number;
}

/** Collects the node's status; see {@link StatusDocument}. Events: none (readers poll `snapshot`). */
export class NodeStatus {
  private readonly startedMs = Date.now();
  private readonly recent: StatusDocument['refusals']['recent'] = [];
  private readonly history: StatusRound[] = [];
  private readonly polled = new Map<string, PolledPeer>();
  private polling: Promise<void> | null = null;
  private lastPollMs = 0;
  private fed: (FederationInfo & { phase: Phase; version: number; startedMs: number | null; exchangeMs: number | null; step: number; stoppedBy: string | null; stepsPerSecond: number | null; stepT0: number | null }) | null = null;
  private updateUp = 0;
  private updateDown = 0;

  constructor(
    private readonly mesh: Mesh,
    private readonly info: { name?: string; checkpoint?: string } = {},
    private readonly metrics?: FmflMetrics,
  ) {
    mesh.on('refused', (ev: RefusalEvent) => {
      this.recent.push({ timeMs: Date.now(), reason: RefusalReason[ev.reason] ?? String(ev.reason), where: ev.where, peer: ev.peer ?? null });
      if (this.recent.length > MAX_RECENT_REFUSALS) this.recent.splice(0, this.recent.length - MAX_RECENT_REFUSALS);
    });
    servePeerStatus(mesh, () => ({ round: this.fed?.version ?? null, phase: this.fed?.phase ?? 'idle' }));
  }

  /** The node starts federating (before it waits for members). */
  federationStarted(info: FederationInfo): void {
    this.fed = { ...info, phase: 'waiting', startedMs: null, exchangeMs: null, step: 0, stoppedBy: null, stepsPerSecond: null, stepT0: null };
  }

  /** A local training step finished (`step` of `total`, 1-based). */
  trainingStep(step: number, total: number): void {
    const f = this.fed;
    if (f === null) return;
    const now = Date.now();
    if (f.phase !== 'training') {
      f.phase = 'training';
      f.startedMs = now;
      f.exchangeMs = null;
      f.stepT0 = now;
    }
    f.step = step;
    f.localSteps = total;
    if (step >= total) {
      if (f.stepT0 !== null && now > f.stepT0) f.stepsPerSecond = Math.round((total / ((now - f.stepT0) / 1000)) * 100) / 100;
      f.phase = 'exchanging';
      f.exchangeMs = now;
    }
  }

  /** A round completed on this node. */
  roundDone(m: RoundMetrics): void {
    const r: StatusRound = {
      round: m.round, version: m.version, hash: m.hash, via: m.via, leader: m.leader ?? null, contributors: m.contributors,
      members: this.mesh.membership.memberIds(true).length, accuracy: m.accuracy, ensembleAccuracy: m.ensembleAccuracy, trainLoss: m.trainLoss,
      bytesUp: m.bytesUp, bytesDown: m.bytesDown, trainMs: m.trainMs, roundMs: m.roundMs,
      consensusDistance: m.consensusDistance ?? null, epsilon: m.epsilon ?? null, timeMs: Date.now(),
    };
    this.history.push(r);
    if (this.history.length > MAX_ROUND_HISTORY) this.history.splice(0, this.history.length - MAX_ROUND_HISTORY);
    this.updateUp += m.bytesUp;
    this.updateDown += m.bytesDown;
    if (this.fed) {
      this.fed.version = m.version;
      this.fed.phase = m.version >= this.fed.rounds ? 'done' : 'training';
      this.fed.startedMs = Date.now();
      this.fed.exchangeMs = null;
      this.fed.step = 0;
      this.fed.stepT0 = Date.now();
    }
    this.metrics?.round(m, this.fed?.stepsPerSecond ?? undefined);
  }

  /** The federation loop ended (rounds done, or stopped by a signal). */
  federationEnded(stoppedBy?: string): void {
    if (this.fed === null) return;
    this.fed.phase = stoppedBy !== undefined ? 'stopped' : 'done';
    this.fed.stoppedBy = stoppedBy ?? null;
  }

  /** Members in the view, this node included. */
  memberCount(): number {
    return this.mesh.membership.memberIds(true).length;
  }

  /** Completed rounds kept (oldest first). */
  rounds(): readonly StatusRound[] {
    return this.history;
  }

  /** Refresh the polled member status when older than PEER_POLL_INTERVAL_MS (one poll at a time). */
  async refreshPeers(force = false): Promise<void> {
    if (this.polling) return this.polling;
    if (!force && Date.now() - this.lastPollMs < PEER_POLL_INTERVAL_MS) return;
    if (!this.mesh.isRunning) return;
    const ids = this.mesh.membership.memberIds(false).slice(0, MAX_POLLED_PEERS);
    this.polling = (async () => {
      const got = await Promise.all(ids.map(async (id) => [id, await pollPeer(this.mesh, id)] as const));
      const live = new Set(this.mesh.membership.memberIds(false));
      for (const id of this.polled.keys()) if (!live.has(id)) this.polled.delete(id);
      for (const [id, p] of got) if (live.has(id)) this.polled.set(id, p);
      this.lastPollMs = Date.now();
    })().finally(() => {
      this.polling = null;
    });
    return this.polling;
  }

  /**
   * The /status document. Starts a member poll when their status is stale and waits for it at most `waitMs`
   * (default STATUS_POLL_WAIT_MS): a member busy training answers late, and its last known status is shown meanwhile.
   */
  async snapshot(waitMs = STATUS_POLL_WAIT_MS): Promise<StatusDocument> {
    const poll = this.refreshPeers().catch(() => {});
    if (waitMs > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([poll, new Promise<void>((r) => (timer = setTimeout(r, waitMs)))]);
      clearTimeout(timer);
    }
    return this.document();
  }

  /** The /status document from what is known now (no polling). */
  document(): StatusDocument {
    const self = this.mesh.peerId.toString();
    const now = Date.now();
    const connected = new Set(this.mesh.connectedPeers());
    const view = this.mesh.membership.members().slice(0, MAX_STATUS_MEMBERS - 1);
    const ids = new Set([self, ...view.map((m) => m.peerId)]);
    const members: StatusMember[] = [
      {
        id: self, self: true, addrs: this.mesh.multiaddrs(), capabilities: this.mesh.membership.getCapabilities(), lastSeenMs: now, joinedMs: this.startedMs,
        connected: true, round: this.fed?.version ?? null, phase: this.fed?.phase ?? 'idle', rttMs: null, neighbours: [...connected].filter((p) => ids.has(p)).sort(),
      },
      ...view.map((m): StatusMember => {
        const p = this.polled.get(m.peerId);
        return {
          id: m.peerId, self: false, addrs: m.addrs, capabilities: m.capabilities, lastSeenMs: m.lastSeenMs, joinedMs: m.joinedMs, connected: connected.has(m.peerId),
          round: p?.status?.round ?? null, phase: p?.status?.phase ?? null, rttMs: p?.rttMs ?? null, neighbours: (p?.status?.neighbours ?? []).filter((x) => ids.has(x) && x !== m.peerId).sort(),
        };
      }),
    ];
    const edges = new Map<string, [string, string]>();
    for (const m of members) {
      for (const n of m.neighbours) {
        const e: [string, string] = m.id < n ? [m.id, n] : [n, m.id];
        edges.set(e.join(' '), e);
      }
    }
    const f = this.fed;
    let federation: StatusFederation | null = null;
    if (f !== null) {
      const next = f.version + 1;
      const leaderOf = roundProtocol(f.protocol).leaderOf;
      const leader = leaderOf && f.phase !== 'done' && f.phase !== 'stopped' ? leaderOf(this.mesh.federation, next, [...ids]) : null;
      const last = this.history.at(-1) ?? null;
      federation = {
        protocol: f.protocol, rounds: f.rounds, round: f.version, phase: f.phase, minMembers: f.minMembers,
        current: {
          round: Math.min(next, f.rounds), leader, startedMs: f.startedMs,
          deadlineMs: f.phase === 'exchanging' && f.exchangeMs !== null && leaderOf !== undefined ? f.exchangeMs + f.roundTimeoutMs : null,
          step: f.step, steps: f.localSteps,
        },
        last, epsilon: last?.epsilon ?? null, consensusDistance: last?.consensusDistance ?? null, stepsPerSecond: f.stepsPerSecond, stoppedBy: f.stoppedBy,
      };
    }
    const byReason: Record<string, number> = {};
    for (const [reason, n] of this.mesh.refusals) byReason[RefusalReason[reason] ?? String(reason)] = n;
    return {
      v: STATUS_VERSION,
      timeMs: now,
      node: { id: self, federation: this.mesh.federation, addrs: this.mesh.multiaddrs(), startedMs: this.startedMs, name: this.info.name ?? null, checkpoint: this.info.checkpoint ?? null },
      members,
      mesh: { edges: [...edges.values()].sort((a, b) => (a.join() < b.join() ? -1 : 1)) },
      federation,
      rounds: [...this.history],
      refusals: { byReason, recent: [...this.recent] },
      bytes: { wireIn: this.mesh.wire.bytesIn, wireOut: this.mesh.wire.bytesOut, updateUp: this.updateUp, updateDown: this.updateDown },
      dialing: this.mesh.dialStatus().filter((d) => !d.connected).map((d) => ({ addr: d.addr, attempts: d.attempts, cause: d.cause })),
    };
  }
}
