/**
 * The state one leader-protocol node keeps, shared by its parts (leader-inbox, leader-sync, leader-apply, leader):
 * the global state and server state, what it received per round, faulty publishers, attestations, the certified
 * state it serves, arrival delays and withholding, and the one place the current state changes (`adopt`).
 * Internal to src/round.
 */
import { EventEmitter } from 'node:events';
import { momentumFromStep, MOMENTUM_AGGREGATORS, type AggregateOptions, type ServerOptimizerState } from '../aggregate/index.ts';
import { ErrorFeedback, type TensorMap } from '../update/index.ts';
import { Rng } from '../util/rng.ts';
import { RoundBytes } from './signals.ts';
import { Attestation } from './pb/round.ts';
import { SecAggRound } from './secagg-round.ts';
import type { GlobalState } from './state.ts';
import type { DownlinkResidual, GlobalStep } from './verify.ts';
import type { ReceivedGlobal, ReceivedUpdate, WireContext } from './leader-wire.ts';
import { AttestationStore, majority } from './certificate.ts';
import { sameHash } from './state.ts';
import {
  aggregatorOptionsFor, canRecompute, certificateNeed, committeeOf, mayAggregate, rankedMembers, roundDeadlineMs, roundNeed, slotOpen, STATEFUL_RULES,
} from './leader-schedule.ts';
import { ArrivalTracker, VerifyRefusal, WithholdRecord } from './verify.ts';
import type { ProtocolSnapshot, RoundContext, RoundOptions } from './types.ts';

/** Applied steps kept servable over `round.step` (the most recent rounds). */
export const STEPS_KEPT = 4;

export class LeaderCore {
  readonly ctx: RoundContext;
  readonly opts: RoundOptions;
  readonly ef: ErrorFeedback;
  /** Secure aggregation (RoundOptions.secagg): members publish masked deltas, the leader unmasks only their sum. */
  readonly secagg: SecAggRound | null;
  /** Refusals of received aggregates and states, by reason (also logged). */
  readonly refusals = new Map<VerifyRefusal, number>();
  /** Rounds this node led and what closed them: every contributing member in (`all-in`) or the deadline. */
  readonly closedBy = new Map<number, 'all-in' | 'deadline' | 'takeover'>();
  state: GlobalState;
  serverOpt: ServerOptimizerState | undefined;
  /** Whether serverOpt is the federation's replicated server state for the current state (unknown after a pull). */
  serverKnown: boolean;
  /** Updates received per round, by sender, and by digest (hex) for serving `round.input`. */
  readonly updates = new Map<number, Map<string, ReceivedUpdate>>();
  readonly byDigest = new Map<number, Map<string, ReceivedUpdate>>();
  /** Senders whose announced update this node declined (off the round's committee), by the round it was judged for. */
  readonly declined = new Map<number, Set<string>>();
  readonly globals: ReceivedGlobal[] = [];
  readonly noted = new WeakSet<ReceivedGlobal>();
  /** Publishers found faulty per round. */
  readonly faulty = new Map<number, Set<string>>();
  /** When replaceUncertified last tried each version (leader-sync.ts). */
  readonly replaceTried = new Map<number, number>();
  readonly attestations = new AttestationStore();
  /** The newest state this node holds with a certificate (what `round.state` serves). */
  certified: { state: GlobalState; cert: Attestation[] } | null;
  readonly arrivals = new ArrivalTracker();
  readonly withheld = new WithholdRecord();
  /** The round this node is in and when it published its update (slot times count from there). */
  current: { round: number; publishedAt: number } | null = null;
  readonly opened = new WeakMap<Uint8Array, ReceivedUpdate>();
  readonly events = new EventEmitter();
  readonly rng: Rng;
  running = false;
  pausedLogged = 0;
  /** This node's signed update for the round in progress (served to a leader that missed it). */
  myUpdate: { round: number; bytes: Uint8Array } | null = null;
  /**
   * The encoded steps of the rounds this node applied, by round (the last STEPS_KEPT): served over `round.step` to
   * members that cannot recompute (protocols/round.md). Bytes are identical on every member that applied the step.
   */
  readonly steps = new Map<number, { hash: Uint8Array; bytes: Uint8Array }>();
  /**
   * Downlink error feedback (opts.compression.downlinkErrorFeedback): the residual that goes with the current state,
   * computed by this node (it recomputed or led the step) or pulled (`round.residual`); null when unknown here (a
   * member off the last committee that did not pull it, or after a state pull): such a node cannot recompute.
   */
  downRes: { version: number; residual: DownlinkResidual; pulled: boolean } | null = null;
  /** The residuals the last STEPS_KEPT applied steps left, by round (served over `round.residual`). */
  readonly residuals = new Map<number, { hash: Uint8Array; bytes: Uint8Array }>();
  /** Payload bytes received per round (updates and globals for that round, state pulls while in it). */
  readonly down = new RoundBytes();
  /**
   * The aggregate this node led and published, not yet its state: it becomes its state only once a roster majority
   * attested it (a certificate), like anyone else's (protocols/round.md "Own aggregate"). One per round.
   */
  pending: { round: number; rank: number; base: GlobalState; step: GlobalStep; contributors: string[]; members: readonly string[]; bytesUp: number } | null = null;
  /** The newest hash this node attested per round: it attests at most one hash per round (never equivocates). */
  readonly attested = new Map<number, Uint8Array>();
  /** When this node last tried pulling a certified state of a version it saw certified ahead of it, by version. */
  readonly aheadTried = new Map<number, number>();
  /**
   * When this node may next pull attestations (`round.attest`) for a state it lacks the certificate of, by
   * "<round>:<hash hex>", and whether a pull is in flight (protocols/round.md "Certified state").
   */
  readonly attestPullAt = new Map<string, { round: number; at: number }>();
  attestPulling = false;
  /** Downlink error feedback: when this node last retried a residual pull (retryResidual), and whether one runs. */
  residualRetryAt = 0;
  residualPulling = false;
  /** Rotates which members an attestation pull asks, so repeated pulls ask different members. */
  attestPullOffset = 0;
  /** Rotates which members a periodic state pull (catchUp with `batch`) asks. */
  catchUpOffset = 0;

  constructor(ctx: RoundContext, opts: RoundOptions, initial: GlobalState, restore?: ProtocolSnapshot) {
    this.ctx = ctx;
    this.opts = opts;
    this.state = restore?.state ?? initial;
    this.ef = restore ? ErrorFeedback.restore(restore.residual) : new ErrorFeedback();
    this.serverOpt = restore?.serverOpt;
    this.serverKnown = restore ? restore.serverKnown ?? true : true;
    const cert = (restore?.certificate ?? []).flatMap((b) => {
      try {
        return [Attestation.decode(b)];
      } catch {
        return [];
      }
    });
    // Version 0 is every member's own derivation from the federation seed; a restored state is this node's own disk.
    this.certified = this.state.version === 0 || cert.length > 0 ? { state: this.state, cert } : null;
    for (const a of cert) this.attestations.add(a);
    // Version 0's residual is zero on every member; after a restart (not persisted) it is unknown until pulled.
    if (this.downlinkEf && this.state.version === 0) this.downRes = { version: 0, residual: { tensors: new Map(), bytes: new Uint8Array(0) }, pulled: false };
    this.rng = new Rng(ctx.seed ^ 0x1ead);
    this.events.setMaxListeners(64);
    this.secagg = opts.secagg
      ? new SecAggRound(ctx, { revealTimeoutMs: Math.min(5000, opts.leaderTimeoutMs / 2), ...opts.secagg }, this.state, () => this.state.version, (peer, round) => this.mayAggregate(peer, round), this.events)
      : null;
  }

  get wire(): WireContext {
    return { federation: this.ctx.federation, manifest: this.ctx.manifest, onRoster: (p) => this.ctx.mesh.onRoster(p) };
  }

  /**
   * Whether `peer` counts as a federation member for certificates: on the roster, or, in an open mesh without one,
   * in the live view (an open mesh cannot stop a peer from minting keys; see the start-up warning).
   */
  isMember(peer: string): boolean {
    return this.ctx.mesh.roster !== undefined ? this.ctx.mesh.onRoster(peer) : this.ctx.members().includes(peer);
  }

  /** Members of the federation: the roster when there is one, else the live view. */
  rosterSize(): number {
    return this.ctx.mesh.roster?.length ?? this.ctx.members().length;
  }

  need(): number {
    return roundNeed(this.rosterSize(), this.opts.quorum);
  }

  certNeed(): number {
    return certificateNeed(this.ctx.mesh.roster, this.ctx.members().length);
  }

  /** Who leader ranks are computed over: the roster (the same at every honest member), else the live view. */
  ranked(): readonly string[] {
    return rankedMembers(this.ctx.mesh.roster, this.ctx.members());
  }

  mayAggregate(peer: string, round: number): boolean {
    return mayAggregate(this.ctx.federation, round, this.ranked(), peer);
  }

  deadlineMs(): number {
    return roundDeadlineMs(this.arrivals, this.opts);
  }

  slotOpen(round: number, rank: number, order: readonly string[]): boolean {
    return slotOpen(round, rank, order, {
      current: this.current, deadlineMs: this.deadlineMs(), leaderTimeoutMs: this.opts.leaderTimeoutMs, now: Date.now(), isFaulty: (r, p) => this.isFaulty(r, p),
      isAlive: this.aliveCheck(),
    });
  }

  /** A membership test of the live view (taken once). */
  aliveCheck(): (peer: string) => boolean {
    const live = new Set(this.ctx.members());
    return (p) => live.has(p);
  }

  /** The certificate of (round, hash) among the attestations this node holds, or null. */
  certificateOf(round: number, hash: Uint8Array): Attestation[] | null {
    return this.attestations.certificate(round, hash, this.certNeed());
  }

  aggregatorOptionsFor(round: number): AggregateOptions {
    return aggregatorOptionsFor(this.opts, round);
  }

  /** The round's verifying committee in this node's view (committeeOf), or null when every member verifies. */
  committee(round: number): readonly string[] | null {
    return this.secagg ? null : committeeOf(this.ctx.federation, round, this.ranked(), this.opts.committee, this.aliveCheck());
  }

  /** Whether this node verifies round `round` by recomputation: no committee, or it is on the round's committee. */
  verifies(round: number): boolean {
    const com = this.committee(round);
    return com === null || com.includes(this.ctx.selfId);
  }

  /**
   * A non-committee member's evidence for an aggregate (round, base, new hash): the attestations of a majority of the
   * round's committee over exactly that base and new hash, or a roster-majority certificate of the new hash (which
   * holds an honest member that recomputed it or itself saw a committee majority).
   */
  committeeAttested(round: number, baseHash: Uint8Array, newHash: Uint8Array): boolean {
    if (this.certificateOf(round, newHash)) return true;
    const com = this.committee(round);
    if (!com || com.length === 0) return false;
    const signers = new Set(this.attestations.for(round, newHash).filter((a) => sameHash(a.baseHash, baseHash) && com.includes(a.signer)).map((a) => a.signer));
    return signers.size >= majority(com.length);
  }

  /**
   * Whether to take (pull) an update announced by `sender` (the `update` topic's wantPayload): the announcement does
   * not say its round, but each member sends one update per round, in order, so it is for the first round above this
   * node's version that this node holds or declined no update of `sender` for. Taken only when this node is on that
   * round's committee; a declined one is remembered for the next announcement of the same sender.
   */
  wantsUpdateFrom(sender: string): boolean {
    let r = this.state.version + 1;
    while (this.updates.get(r)?.has(sender) || this.declined.get(r)?.has(sender)) r++;
    if (this.verifies(r)) return true;
    let d = this.declined.get(r);
    if (!d) this.declined.set(r, (d = new Set()));
    d.add(sender);
    return false;
  }

  canRecompute(): boolean {
    return this.knowsServerState() && (!this.downlinkEf || this.downRes?.version === this.state.version);
  }

  /** Whether the server-optimizer state is known here (what a member off the committee needs; not the downlink residual). */
  knowsServerState(): boolean {
    return canRecompute(this.secagg !== null, this.serverKnown, this.opts.aggregator);
  }

  /** Whether the downlink step carries error feedback (protocols/round.md "Compressed downlink"). */
  get downlinkEf(): boolean {
    return this.opts.compression.downlinkErrorFeedback === true;
  }

  /** The downlink residual of the current state (error feedback on), or undefined (off, or unknown here). */
  residualOf(): TensorMap | undefined {
    return this.downlinkEf && this.downRes?.version === this.state.version ? this.downRes.residual.tensors : undefined;
  }

  refuse(reason: VerifyRefusal, fields: Record<string, unknown>, level: 'warn' | 'debug' = 'warn'): void {
    this.refusals.set(reason, (this.refusals.get(reason) ?? 0) + 1);
    this.ctx.logger[level]({ ...fields, reason: VerifyRefusal[reason] }, 'refused a global step');
  }

  markFaulty(round: number, peer: string): void {
    let s = this.faulty.get(round);
    if (!s) this.faulty.set(round, (s = new Set()));
    s.add(peer);
    this.events.emit('change');
  }

  isFaulty(round: number, peer: string): boolean {
    return this.faulty.get(round)?.has(peer) ?? false;
  }

  refreshCertified(): void {
    if (this.certified?.state === this.state) return;
    const cert = this.attestations.certificate(this.state.version, this.state.hash, this.certNeed());
    if (cert) this.certified = { state: this.state, cert };
  }

  /**
   * Make `st` the current global state. `applied` is the global step that produced it from the previous state
   * (absent after a state pull) and `server` the recomputed server-optimizer state. Momentum rules (fedavgm) derive
   * their buffer from the applied step on every member; adaptive rules take the recomputed moments. After a state
   * pull the server state is unknown until the next applied step (momentum) or for good (adaptive rules). With
   * downlink error feedback `residual` is the residual the step left (absent: unknown here until pulled).
   */
  adopt(st: GlobalState, applied?: TensorMap, server?: ServerOptimizerState, stepBytes?: Uint8Array, residual?: DownlinkResidual): void {
    if (this.downlinkEf) {
      this.downRes = residual ? { version: st.version, residual, pulled: false } : null;
      if (residual) this.residuals.set(st.version, { hash: st.hash, bytes: residual.bytes });
      for (const r of [...this.residuals.keys()]) if (r <= st.version - STEPS_KEPT) this.residuals.delete(r);
    }
    if (MOMENTUM_AGGREGATORS.includes(this.opts.aggregator)) {
      this.serverOpt = applied ? momentumFromStep(applied, this.aggregatorOptionsFor(st.version), this.serverOpt?.step ?? 0) : undefined;
      this.serverKnown = applied !== undefined;
    } else if (STATEFUL_RULES.includes(this.opts.aggregator)) {
      if (server) this.serverOpt = server;
      this.serverKnown = this.serverKnown && applied !== undefined && server !== undefined;
    }
    this.state = st;
    if (stepBytes) this.steps.set(st.version, { hash: st.hash, bytes: stepBytes });
    for (const r of [...this.steps.keys()]) if (r <= st.version - STEPS_KEPT) this.steps.delete(r);
    for (const r of [...this.updates.keys()]) if (r <= st.version) this.updates.delete(r);
    for (const r of [...this.declined.keys()]) if (r <= st.version) this.declined.delete(r);
    // The inputs of the round just applied stay servable: members still verifying it pull them (`round.input`).
    for (const r of [...this.byDigest.keys()]) if (r < st.version) this.byDigest.delete(r);
    for (const r of [...this.faulty.keys()]) if (r <= st.version) this.faulty.delete(r);
    for (const r of [...this.attested.keys()]) if (r < st.version - 4) this.attested.delete(r);
    for (const r of [...this.aheadTried.keys()]) if (r <= st.version) this.aheadTried.delete(r);
    for (const r of [...this.replaceTried.keys()]) if (r < st.version) this.replaceTried.delete(r);
    for (const [k, v] of [...this.attestPullAt]) if (v.round < st.version - 4) this.attestPullAt.delete(k);
    if (this.pending && this.pending.round <= st.version) this.pending = null;
    this.attestations.prune(st.version);
    this.secagg?.prune(st.version);
    this.refreshCertified();
    this.events.emit('change');
  }
}
