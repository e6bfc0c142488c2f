/**
 * Rotating round-leader protocol (protocols/round.md). The leader of round r is the first member in the
 * rendezvous order of (federation, r, PeerId) over the live roster members, so every member computes it without
 * election messages. Members publish their signed, compressed update on `update`; the leader aggregates once every
 * member still contributing has sent (or its adaptive deadline passes) and a majority of the roster contributed, and
 * publishes the aggregate on `global`, naming each contributor and its update's digest. Every member recomputes the
 * aggregate from those updates (pulling any it lacks) and applies the step only if it gives the announced state
 * hash; then it signs an attestation. A mismatch marks the leader faulty for the round and the next rank takes over
 * at once. A node that is behind adopts a pulled state only with a certificate (a roster majority's attestations).
 * Versions only move forward, so no round is applied twice.
 */
import { EventEmitter } from 'node:events';
import { lrAt } from '../train/schedule.ts';
import { budgetDelta, momentumFromStep, MOMENTUM_AGGREGATORS, type AggregateOptions, type ServerOptimizerState } from '../aggregate/index.ts';
import { RefusalError, RefusalReason, type MessageMeta } from '../mesh/index.ts';
import { privatizeUpdate } from '../privacy/index.ts';
import { decodeUpdate, encodeUpdate, encodeWithErrorFeedback, ErrorFeedback, type ModelUpdate, type TensorMap } from '../update/index.ts';
import { Rng } from '../util/rng.ts';
import { nextChange, RoundBytes, RoundStoppedError } from './signals.ts';
import { Attestation, GlobalUpdate, InputRequest, SignedUpdate, StateRequest, StateResponse, UpdateRequest } from './pb/round.ts';
import { SECAGG_ANNOUNCE_INTERVAL_MS, SecAggRound } from './secagg-round.ts';
import { applyDelta, decodeState, encodeState, hex, sameHash, type GlobalState } from './state.ts';
import {
  ATTEST_TOPIC, decodeGlobal, GLOBAL_TOPIC, INPUT_METHOD, leaderOrder, MAX_LEADER_RANKS, openSignedUpdate, ROUND_WIRE_VERSION, sha256,
  STATE_METHOD, UPDATE_METHOD, UPDATE_TOPIC, updateSigningBytes, type ReceivedGlobal, type ReceivedUpdate, type WireContext,
} from './leader-wire.ts';
import { AttestationStore, checkAttestation, checkCertificate, makeAttestation, majority, MAX_CERTIFICATE_ENTRIES } from './certificate.ts';
import { ArrivalTracker, computeGlobalStep, VerifyRefusal, WithholdRecord } from './verify.ts';
import type { LocalContribution, ProtocolSnapshot, RoundContext, RoundOptions, RoundOutcome, RoundProtocol } from './types.ts';

export { leaderOrder, MAX_CONTRIBUTORS, MAX_LEADER_RANKS, ROUND_WIRE_VERSION, UPDATE_TOPIC, GLOBAL_TOPIC, ATTEST_TOPIC, STATE_METHOD, INPUT_METHOD } from './leader-wire.ts';
export { RoundStoppedError };
/** State requests a catch-up keeps in flight at once. */
export const CATCH_UP_PARALLEL = 8;

/** Rules whose server state carries over rounds (must be replicated for an aggregate to be recomputable). */
const STATEFUL_RULES: readonly string[] = ['fedavgm', 'fedadam', 'fedyogi', 'fedadagrad'];
/** Deadline of pulling one missing input or update over the sync stream. */
const PULL_TIMEOUT_MS = 10_000;
/** Largest update or state pulled over the sync stream. */
const MAX_PULL_BYTES = 64 * 1024 * 1024;

type Applied = Omit<RoundOutcome, 'bytesUp' | 'bytesDown'>;

export class LeaderProtocol implements RoundProtocol {
  readonly name = 'leader' as const;
  readonly topics: readonly string[];
  /** Secure aggregation (RoundOptions.secagg): members publish masked deltas, the leader unmasks only their sum. */
  readonly secagg: SecAggRound | null;
  /** Refusals of received aggregates and states, by reason (also logged). */
  readonly refusals = new Map<VerifyRefusal, number>();
  /** Rounds this node led and what closed them: every contributing member in (`all-in`) or the deadline. */
  readonly closedBy = new Map<number, 'all-in' | 'deadline' | 'takeover'>();
  private state: GlobalState;
  private readonly ctx: RoundContext;
  private readonly opts: RoundOptions;
  private readonly ef: ErrorFeedback;
  private serverOpt: ServerOptimizerState | undefined;
  /** Whether serverOpt is the federation's replicated server state for the current state (unknown after a pull). */
  private serverKnown: boolean;
  /** Updates received per round, by sender, and by digest (hex) for serving `round.input`. */
  private readonly updates = new Map<number, Map<string, ReceivedUpdate>>();
  private readonly byDigest = new Map<number, Map<string, ReceivedUpdate>>();
  private readonly globals: ReceivedGlobal[] = [];
  private readonly noted = new WeakSet<ReceivedGlobal>();
  /** Publishers found faulty per round. */
  private readonly faulty = new Map<number, Set<string>>();
  private readonly attestations = new AttestationStore();
  /** The newest state this node holds with a certificate (what `round.state` serves). */
  private certified: { state: GlobalState; cert: Attestation[] } | null;
  private readonly arrivals = new ArrivalTracker();
  private readonly withheld = new WithholdRecord();
  /** The round this node is in and when it published its update (slot times count from there). */
  private current: { round: number; publishedAt: number } | null = null;
  private readonly opened = new WeakMap<Uint8Array, ReceivedUpdate>();
  private readonly events = new EventEmitter();
  private readonly rng: Rng;
  private running = false;
  private pausedLogged = 0;
  /** This node's signed update for the round in progress (served to a leader that missed it). */
  private myUpdate: { round: number; bytes: Uint8Array } | null = null;
  /** Payload bytes received per round (updates and globals for that round, state pulls while in it). */
  private readonly down = new RoundBytes();

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
    this.rng = new Rng(ctx.seed ^ 0x1ead);
    this.events.setMaxListeners(64);
    this.secagg = opts.secagg
      ? new SecAggRound(ctx, { revealTimeoutMs: Math.min(5000, opts.leaderTimeoutMs / 2), ...opts.secagg }, this.state, () => this.state.version, (peer, round) => this.mayAggregate(peer, round), this.events)
      : null;
    this.topics = this.secagg ? [GLOBAL_TOPIC, ATTEST_TOPIC, ...this.secagg.topics] : [UPDATE_TOPIC, GLOBAL_TOPIC, ATTEST_TOPIC];
  }

  private get wire(): WireContext {
    return { federation: this.ctx.federation, manifest: this.ctx.manifest, onRoster: (p) => this.ctx.mesh.onRoster(p) };
  }

  /**
   * Whether `peer` counts as a federation member for certificates: on the roster, or, in an open mesh without one,
   * in the live view (an open mesh cannot stop a peer from minting keys; see the start-up warning).
   */
  private isMember(peer: string): boolean {
    return this.ctx.mesh.roster !== undefined ? this.ctx.mesh.onRoster(peer) : this.ctx.members().includes(peer);
  }

  /** Members of the federation: the roster when there is one, else the live view. */
  private rosterSize(): number {
    return this.ctx.mesh.roster?.length ?? this.ctx.members().length;
  }

  /** Fewest contributions a round closes with: a roster majority by default, ceil(quorum × roster) when set. */
  private need(): number {
    const r = this.rosterSize();
    return this.opts.quorum === undefined ? majority(r) : Math.max(1, Math.ceil(this.opts.quorum * r));
  }

  /**
   * Attestations that certify a state: a majority of the roster. In an open mesh (no roster) a majority of the other
   * live members: the live view grows with nodes that are behind (they cannot attest what they do not hold).
   */
  private certNeed(): number {
    return this.ctx.mesh.roster !== undefined ? majority(this.ctx.mesh.roster.length) : majority(Math.max(1, this.ctx.members().length - 1));
  }

  /**
   * Whether `peer` is among the first MAX_LEADER_RANKS of round `round`'s leader order over the live roster members
   * this node sees. Never over members ∪ {peer}: a peer outside the view has no rank.
   */
  private mayAggregate(peer: string, round: number): boolean {
    const rank = leaderOrder(this.ctx.federation, round, this.ctx.members()).indexOf(peer);
    return rank >= 0 && rank < MAX_LEADER_RANKS;
  }

  get round(): number {
    return this.state.version;
  }

  globalState(): GlobalState {
    return this.state;
  }

  trainingStart(): TensorMap {
    return this.state.tensors;
  }

  model(): TensorMap {
    return this.state.tensors;
  }

  prototypes() {
    return this.state.prototypes;
  }

  /** Refusals counted for `reason`. */
  refusalCount(reason: VerifyRefusal): number {
    return this.refusals.get(reason) ?? 0;
  }

  snapshot(): ProtocolSnapshot {
    const cert = this.certified && this.certified.state === this.state ? this.certified.cert : this.attestations.certificate(this.state.version, this.state.hash, this.certNeed());
    return {
      protocol: 'leader', state: this.state, residual: this.ef.snapshot(), serverOpt: this.serverOpt, serverKnown: this.serverKnown,
      certificate: cert ? cert.map((a) => Attestation.encode(a)) : undefined,
    };
  }

  async start(): Promise<void> {
    const { mesh } = this.ctx;
    this.running = true;
    // With secure aggregation no member publishes its cleartext update: the `update` topic is not joined.
    if (!this.secagg) mesh.subscribe(UPDATE_TOPIC, (p, m) => this.onUpdate(p, m), { validator: (p, m) => this.validateUpdate(p, m) });
    mesh.subscribe(GLOBAL_TOPIC, (p, m) => this.onGlobal(p, m), { validator: (p, m) => this.validateGlobal(p, m) });
    mesh.subscribe(ATTEST_TOPIC, (p, m) => this.onAttestation(p, m), { validator: (p, m) => this.validateAttestation(p, m), maxPayloadBytes: 1024 });
    mesh.handleRequest(STATE_METHOD, (body) => this.serveState(body));
    mesh.handleRequest(UPDATE_METHOD, (body) => this.serveUpdate(body));
    mesh.handleRequest(INPUT_METHOD, (body) => this.serveInput(body));
    await this.secagg?.start();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.events.emit('change');
    this.secagg?.stop();
    try {
      if (!this.secagg) this.ctx.mesh.unsubscribe(UPDATE_TOPIC);
      this.ctx.mesh.unsubscribe(GLOBAL_TOPIC);
      this.ctx.mesh.unsubscribe(ATTEST_TOPIC);
    } catch {
      // mesh already stopped
    }
  }

  /** Ask members for a newer certified state (restart / late join / after a partition). True if the state advanced. */
  async catchUp(): Promise<boolean> {
    let advanced = false;
    const peers = this.ctx.members().filter((p) => p !== this.ctx.selfId);
    // CATCH_UP_PARALLEL requests at a time: one after another, N-1 round trips made every node of a fresh
    // N-node federation wait minutes before round 1 at N = 32 in one process (issue 17).
    for (let i = 0; i < peers.length; i += CATCH_UP_PARALLEL) {
      const got = await Promise.all(peers.slice(i, i + CATCH_UP_PARALLEL).map(async (p) => this.syncFrom(p)));
      if (got.some(Boolean)) advanced = true;
    }
    return advanced;
  }

  private refuse(reason: VerifyRefusal, fields: Record<string, unknown>, level: 'warn' | 'debug' = 'warn'): void {
    this.refusals.set(reason, (this.refusals.get(reason) ?? 0) + 1);
    this.ctx.logger[level]({ ...fields, reason: VerifyRefusal[reason] }, 'refused a global step');
  }

  private markFaulty(round: number, peer: string): void {
    let s = this.faulty.get(round);
    if (!s) this.faulty.set(round, (s = new Set()));
    s.add(peer);
    this.events.emit('change');
  }

  private isFaulty(round: number, peer: string): boolean {
    return this.faulty.get(round)?.has(peer) ?? false;
  }

  // ------------------------------------------------------------------------------------------------------
  // Inbound

  private async validateUpdate(payload: Uint8Array, meta: MessageMeta): Promise<RefusalReason | undefined> {
    const r = await openSignedUpdate(payload, this.wire, meta.from.toString());
    if (typeof r === 'number') return r;
    const u = r.update;
    if (u.round !== u.baseVersion + 1) return RefusalReason.INVALID_FIELD;
    if (u.round <= this.state.version - 1) return RefusalReason.REPLAYED; // old round: ignore, no penalty
    if (this.updates.get(u.round)?.has(u.sender)) return RefusalReason.REPLAYED;
    this.opened.set(payload, r);
    return undefined;
  }

  private onUpdate(payload: Uint8Array, _meta: MessageMeta): void {
    const r = this.opened.get(payload);
    if (r) this.store(r, payload.byteLength);
  }

  /** Keep a validated update of a round not yet applied (first one per sender counts; every digest is servable). */
  private store(r: ReceivedUpdate, bytes: number): boolean {
    const u = r.update;
    if (u.round < this.state.version) return false;
    let d = this.byDigest.get(u.round);
    if (!d) this.byDigest.set(u.round, (d = new Map()));
    if (d.size < 4 * 1024) d.set(hex(r.digest), r);
    if (u.round <= this.state.version) return false;
    let m = this.updates.get(u.round);
    if (!m) this.updates.set(u.round, (m = new Map()));
    if (m.has(u.sender)) return false;
    m.set(u.sender, r);
    this.down.add(u.round, bytes);
    if (this.current?.round === u.round && u.sender !== this.ctx.selfId) this.arrivals.record(Date.now() - this.current.publishedAt);
    this.events.emit('change');
    return true;
  }

  private validateGlobal(payload: Uint8Array, meta: MessageMeta): RefusalReason | undefined {
    const g = decodeGlobal(payload, this.wire, meta.from.toString());
    if (typeof g === 'number') return g;
    if (g.round < this.state.version) return RefusalReason.REPLAYED;
    // Only the round's first MAX_LEADER_RANKS members over the live roster members may publish its aggregate.
    if (!this.mayAggregate(g.from, g.round)) return RefusalReason.APPLICATION;
    return undefined;
  }

  private onGlobal(payload: Uint8Array, meta: MessageMeta): void {
    const g = decodeGlobal(payload, this.wire, meta.from.toString());
    if (typeof g === 'number' || g.round <= this.state.version) return;
    if (this.globals.length >= 64) this.globals.shift();
    this.down.add(g.round, g.bytes);
    this.globals.push(g);
    this.events.emit('change');
  }

  private async validateAttestation(payload: Uint8Array, meta: MessageMeta): Promise<RefusalReason | undefined> {
    let a: Attestation;
    try {
      a = Attestation.decode(payload);
    } catch {
      return RefusalReason.MALFORMED;
    }
    if (a.signer !== meta.from.toString()) return RefusalReason.PEER_MISMATCH;
    if (Number(a.round) < this.state.version - 2) return RefusalReason.REPLAYED;
    return checkAttestation(a, this.ctx.federation, (p) => this.isMember(p));
  }

  private onAttestation(payload: Uint8Array, _meta: MessageMeta): void {
    let a: Attestation;
    try {
      a = Attestation.decode(payload);
    } catch {
      return;
    }
    if (this.attestations.add(a)) {
      this.refreshCertified();
      this.events.emit('change');
    }
  }

  private refreshCertified(): void {
    if (this.certified?.state === this.state) return;
    const cert = this.attestations.certificate(this.state.version, this.state.hash, this.certNeed());
    if (cert) this.certified = { state: this.state, cert };
  }

  private serveState(body: Uint8Array): Uint8Array {
    let req: StateRequest;
    try {
      req = StateRequest.decode(body);
    } catch {
      throw new RefusalError(RefusalReason.MALFORMED, 'StateRequest does not decode');
    }
    if (req.version !== ROUND_WIRE_VERSION) throw new RefusalError(RefusalReason.UNSUPPORTED_VERSION, `StateRequest version ${req.version}`);
    this.refreshCertified();
    const c = this.certified;
    if (!c || req.haveVersion >= BigInt(c.state.version)) throw new RefusalError(RefusalReason.UNAVAILABLE, 'no certified state ahead of the requester');
    return StateResponse.encode({
      version: ROUND_WIRE_VERSION,
      globalVersion: BigInt(c.state.version),
      hash: c.state.hash,
      state: encodeState(c.state, this.ctx.manifest, this.ctx.federation, this.ctx.selfId, this.ctx.loraRank),
      certificate: c.cert,
    });
  }

  private serveUpdate(body: Uint8Array): Uint8Array {
    let req: UpdateRequest;
    try {
      req = UpdateRequest.decode(body);
    } catch {
      throw new RefusalError(RefusalReason.MALFORMED, 'UpdateRequest does not decode');
    }
    if (req.version !== ROUND_WIRE_VERSION) throw new RefusalError(RefusalReason.UNSUPPORTED_VERSION, `UpdateRequest version ${req.version}`);
    if (!this.myUpdate || BigInt(this.myUpdate.round) !== req.round) throw new RefusalError(RefusalReason.UNAVAILABLE, 'no update for that round');
    return this.myUpdate.bytes;
  }

  private serveInput(body: Uint8Array): Uint8Array {
    let req: InputRequest;
    try {
      req = InputRequest.decode(body);
    } catch {
      throw new RefusalError(RefusalReason.MALFORMED, 'InputRequest does not decode');
    }
    if (req.version !== ROUND_WIRE_VERSION) throw new RefusalError(RefusalReason.UNSUPPORTED_VERSION, `InputRequest version ${req.version}`);
    if (req.digest.length !== 32) throw new RefusalError(RefusalReason.INVALID_FIELD, 'digest is not 32 bytes');
    const r = this.byDigest.get(Number(req.round))?.get(hex(req.digest));
    if (!r || r.update.sender !== req.sender) throw new RefusalError(RefusalReason.UNAVAILABLE, 'no such input here');
    return r.signed;
  }

  /** Leader side: pull the updates of members that have not arrived by gossip (validated like gossip). */
  private async pullMissing(round: number): Promise<void> {
    const have = this.updates.get(round) ?? new Map();
    const missing = this.ctx.members().filter((p) => p !== this.ctx.selfId && !have.has(p) && !this.withheld.excused(p, round));
    const body = UpdateRequest.encode({ version: ROUND_WIRE_VERSION, round: BigInt(round) });
    await Promise.all(missing.map(async (peer) => {
      try {
        const bytes = await this.ctx.mesh.request(peer, UPDATE_METHOD, body, { timeoutMs: PULL_TIMEOUT_MS, maxResponseBytes: MAX_PULL_BYTES });
        const r = await openSignedUpdate(bytes, this.wire, peer);
        if (typeof r !== 'number' && r.update.round === round && r.update.baseVersion === round - 1) this.store(r, bytes.byteLength);
      } catch (err) {
        this.ctx.logger.debug({ peer, err: (err as Error).message }, 'pulling a missing update failed');
      }
    }));
  }

  /** Member side: the listed inputs of a global, pulling those it lacks from the publisher, then the contributor. */
  private async gatherInputs(g: ReceivedGlobal): Promise<ModelUpdate[] | null> {
    const round = g.round;
    const wanted = g.msg.contributors.map((c, i) => ({ sender: c, digest: g.msg.contributorDigests[i] }));
    const got = await Promise.all(wanted.map(async ({ sender, digest }) => {
      const have = this.byDigest.get(round)?.get(hex(digest));
      if (have && have.update.sender === sender) return have.update;
      const body = InputRequest.encode({ version: ROUND_WIRE_VERSION, round: BigInt(round), sender, digest });
      for (const src of new Set([g.from, sender])) {
        if (src === this.ctx.selfId) continue;
        try {
          const bytes = await this.ctx.mesh.request(src, INPUT_METHOD, body, { timeoutMs: PULL_TIMEOUT_MS, maxResponseBytes: MAX_PULL_BYTES });
          const r = await openSignedUpdate(bytes, this.wire, sender);
          if (typeof r === 'number' || !sameHash(r.digest, digest) || r.update.round !== round || r.update.baseVersion !== round - 1) continue;
          this.store(r, bytes.byteLength);
          return r.update;
        } catch (err) {
          this.ctx.logger.debug({ src, sender, err: (err as Error).message }, 'pulling an aggregate input failed');
        }
      }
      return null;
    }));
    return got.every((u) => u !== null) ? (got as ModelUpdate[]) : null;
  }

  /**
   * Pull `peer`'s certified state if it is ahead; true if adopted. Refused: no valid certificate (a majority of
   * distinct roster attestations over its hash), past the last round, or not ahead.
   */
  private async syncFrom(peer: string): Promise<boolean> {
    try {
      const body = StateRequest.encode({ version: ROUND_WIRE_VERSION, haveVersion: BigInt(this.state.version) });
      const res = StateResponse.decode(await this.ctx.mesh.request(peer, STATE_METHOD, body, { timeoutMs: 15_000, maxResponseBytes: MAX_PULL_BYTES }), {
        limits: { certificate: MAX_CERTIFICATE_ENTRIES },
      });
      if (res.version !== ROUND_WIRE_VERSION || res.hash.length !== 32) return false;
      const version = Number(res.globalVersion);
      if (!Number.isSafeInteger(version) || version <= this.state.version) return false;
      if (this.opts.maxRounds !== undefined && version > this.opts.maxRounds) {
        this.refuse(VerifyRefusal.PAST_LAST_ROUND, { from: peer, version, maxRounds: this.opts.maxRounds });
        return false;
      }
      if (!(await checkCertificate(res.certificate, version, res.hash, this.certNeed(), this.ctx.federation, (p) => this.isMember(p)))) {
        this.refuse(VerifyRefusal.UNCERTIFIED_STATE, { from: peer, version, attestations: res.certificate.length, need: this.certNeed() });
        return false;
      }
      const st = decodeState(res.state, this.ctx.manifest, res.hash, this.ctx.federation);
      if (st.version !== version || st.version <= this.state.version) return false;
      this.down.add(this.state.version + 1, res.state.byteLength);
      this.ctx.logger.info({ from: peer, version: st.version, certifiedBy: res.certificate.length }, 'pulled certified global state');
      for (const a of res.certificate) this.attestations.add(a);
      this.adopt(st);
      this.certified = { state: st, cert: res.certificate };
      return true;
    } catch (err) {
      this.ctx.logger.debug({ peer, err: (err as Error).message }, 'state sync failed');
      return false;
    }
  }

  /** The aggregator options of round `round`, with the decayed server learning rate when serverLrDecay is set. */
  private aggregatorOptionsFor(round: number): AggregateOptions {
    const o = this.opts.aggregatorOptions ?? {};
    const d = this.opts.serverLrDecay;
    if (!d || o.serverLr === undefined) return o;
    const step = Math.min(d.rounds - 1, Math.max(0, round - 1));
    return { ...o, serverLr: 1 + (o.serverLr - 1) * lrAt('cosine', 1, step, d.rounds) };
  }

  /** Whether this node can recompute the federation's next step (it holds the replicated server state). */
  private canRecompute(): boolean {
    return !this.secagg && (this.serverKnown || !STATEFUL_RULES.includes(this.opts.aggregator));
  }

  /**
   * Make `st` the current global state. `applied` is the global step that produced it from the previous state
   * (absent after a state pull) and `server` the recomputed server-optimizer state. Momentum rules (fedavgm) derive
   * their buffer from the applied step on every member; adaptive rules take the recomputed moments. After a state
   * pull the server state is unknown until the next applied step (momentum) or for good (adaptive rules).
   */
  private adopt(st: GlobalState, applied?: TensorMap, server?: ServerOptimizerState): void {
    if (MOMENTUM_AGGREGATORS.includes(this.opts.aggregator)) {
      this.serverOpt = applied ? momentumFromStep(applied, this.aggregatorOptionsFor(st.version), this.serverOpt?.step ?? 0) : undefined;
      this.serverKnown = applied !== undefined;
    } else if (STATEFUL_RULES.includes(this.opts.aggregator)) {
      if (server) this.serverOpt = server;
      this.serverKnown = this.serverKnown && applied !== undefined && server !== undefined;
    }
    this.state = st;
    for (const r of [...this.updates.keys()]) if (r <= st.version) this.updates.delete(r);
    // The inputs of the round just applied stay servable: members still verifying it pull them (`round.input`).
    for (const r of [...this.byDigest.keys()]) if (r < st.version) this.byDigest.delete(r);
    for (const r of [...this.faulty.keys()]) if (r <= st.version) this.faulty.delete(r);
    this.attestations.prune(st.version);
    this.secagg?.prune(st.version);
    this.refreshCertified();
    this.events.emit('change');
  }

  /** Sign and gossip this node's attestation of the step it just verified and applied. */
  private async attest(round: number, baseHash: Uint8Array, newHash: Uint8Array): Promise<void> {
    try {
      const a = await makeAttestation((d) => this.ctx.mesh.signWithIdentity(d), this.ctx.federation, this.ctx.selfId, round, baseHash, newHash);
      this.attestations.add(a);
      this.refreshCertified();
      await this.ctx.mesh.publish(ATTEST_TOPIC, Attestation.encode(a));
    } catch (err) {
      this.ctx.logger.debug({ err: (err as Error).message }, 'publishing an attestation failed');
    }
  }

  // ------------------------------------------------------------------------------------------------------
  // One round

  async exchange(local: LocalContribution): Promise<RoundOutcome> {
    if (!this.running) throw new RoundStoppedError();
    const round = this.state.version + 1;
    const base = this.state;

    // 1. Publish this node's compressed update for the round (masked, with secure aggregation).
    if (this.secagg) {
      await this.secagg.waitForKeys(Math.max(this.opts.leaderTimeoutMs, 3 * SECAGG_ANNOUNCE_INTERVAL_MS));
      const n = await this.secagg.publish(round, base, local.tensors, this.opts.dp, this.rng);
      this.current = { round, publishedAt: Date.now() };
      return this.follow(round, n, this.current.publishedAt);
    }
    const budget = { globalRank: this.ctx.loraRank, rank: local.budget?.rank ?? this.ctx.loraRank, trained: local.budget?.trained };
    let deltas = budgetDelta(local.tensors, base.tensors, this.ctx.manifest, budget);
    if (this.opts.dp) deltas = privatizeUpdate(deltas, this.opts.dp, this.rng.fork()).deltas;
    const update: ModelUpdate = {
      federation: this.ctx.federation, round, baseVersion: base.version, sender: this.ctx.selfId,
      sampleCount: local.sampleCount, loraRank: budget.rank, deltas, prototypes: local.prototypes, partial: budget.trained !== undefined || undefined,
    };
    const c = this.opts.compression;
    const encOpts = { topk: c.topk < 1 ? { fraction: c.topk, scope: c.topkScope ?? 'global' } : undefined, bits: c.bits, brotli: c.brotli, seed: this.rng.nextU32(), prototypeBits: 32 as const };
    const enc = c.errorFeedback ? encodeWithErrorFeedback(update, this.ctx.manifest, this.ef, encOpts) : encodeUpdate(update, this.ctx.manifest, encOpts);
    const signed = await this.sign(enc.bytes);
    // Aggregate what peers decode from the wire, exactly as they will when they verify.
    this.store({ update: decodeUpdate(enc.bytes, this.ctx.manifest), digest: sha256(enc.bytes), signed }, 0);
    this.myUpdate = { round, bytes: signed };
    this.current = { round, publishedAt: Date.now() };
    try {
      await this.ctx.mesh.publish(UPDATE_TOPIC, signed);
    } catch (err) {
      this.ctx.logger.warn({ err: (err as Error).message }, 'publishing the update failed; the round goes on');
    }
    return this.follow(round, signed.byteLength, this.current.publishedAt);
  }

  private async sign(updateBytes: Uint8Array): Promise<Uint8Array> {
    const signature = await this.ctx.mesh.signWithIdentity(updateSigningBytes(this.ctx.federation, sha256(updateBytes)));
    return SignedUpdate.encode({ version: ROUND_WIRE_VERSION, update: updateBytes, signature });
  }

  /** The adaptive round deadline: p90 of measured arrival delays × slack, within the configured bounds. */
  private deadlineMs(): number {
    const max = this.opts.roundTimeoutMs;
    return this.arrivals.deadlineMs(Math.min(max, this.opts.minRoundTimeoutMs ?? 2000), max);
  }

  /**
   * Whether rank `rank`'s slot of round `round` is open on this node: rank 0 always; rank k once the deadline plus
   * k leader timeouts passed since this node published its update, or at once when every lower rank is faulty.
   */
  private slotOpen(round: number, rank: number, order: readonly string[]): boolean {
    if (rank === 0) return true;
    if (order.slice(0, rank).every((p) => this.isFaulty(round, p))) return true;
    if (this.current?.round !== round) return false;
    return Date.now() >= this.current.publishedAt + this.deadlineMs() + rank * this.opts.leaderTimeoutMs;
  }

  /** After publishing this node's update (`updateBytes`) at `publishedAt`: wait for, or produce, the round's model. */
  private async follow(round: number, updateBytes: number, publishedAt: number): Promise<RoundOutcome> {
    const bytesUp = updateBytes;
    // Lost messages: the leader pulls missing updates at 1/4 of its deadline; anyone still without the round's
    // model after the deadline plus one leader timeout asks members for their certified state, then periodically.
    let pulled = false;
    let nextCatchUp = publishedAt + this.opts.roundTimeoutMs + this.opts.leaderTimeoutMs;

    // 2. Wait until this node holds version >= round: apply a verified global, sync a certified state, or lead.
    for (;;) {
      if (!this.running) throw new RoundStoppedError();
      if (this.state.version >= round) {
        return { round, via: 'synced', contributors: [], bytesUp, updateBytes, bytesDown: this.down.take(round) };
      }
      const applied = await this.tryApplyGlobals(round);
      if (applied) return { ...applied, bytesUp, updateBytes, bytesDown: this.down.take(round) };

      const members = this.ctx.members();
      const order = leaderOrder(this.ctx.federation, round, members);
      const rank = order.indexOf(this.ctx.selfId);
      const mine = this.updates.get(round);
      const have = this.secagg ? this.secagg.count(round) : (mine?.size ?? 0);
      // Everyone still contributing has sent: members that withheld in the last rounds do not hold the round open.
      const allIn = this.secagg ? have >= members.length : members.every((p) => mine?.has(p) || this.withheld.excused(p, round));
      const need = this.need();
      const now = Date.now();
      const deadline = publishedAt + this.deadlineMs();
      if (rank === 0 && !pulled && !this.secagg && !allIn && now >= publishedAt + this.deadlineMs() / 4) {
        pulled = true;
        await this.pullMissing(round);
        continue;
      }
      if (now >= nextCatchUp) {
        nextCatchUp = now + this.opts.leaderTimeoutMs;
        if (await this.catchUp()) continue;
      }
      const slot = rank === 0 ? allIn || now >= deadline : rank > 0 && rank < MAX_LEADER_RANKS && this.slotOpen(round, rank, order);
      if (slot && have < need && now >= deadline && now - this.pausedLogged > 10_000) {
        this.pausedLogged = now;
        this.ctx.logger.warn({ round, have, need, roster: this.rosterSize(), live: members.length },
          'round paused: fewer contributions than the quorum (a majority of the roster by default); a minority partition waits for the heal');
      }
      // A node that cannot recompute the federation's step (server state unknown after a pull) lets its slot pass.
      if (slot && have >= need && (this.secagg !== null || this.canRecompute())) {
        const led = await this.lead(round, rank, members);
        if (led) this.closedBy.set(round, rank > 0 ? 'takeover' : allIn ? 'all-in' : 'deadline');
        if (led) return { ...led, bytesUp: bytesUp + led.bytesUp, updateBytes, bytesDown: this.down.take(round) };
      }
      await nextChange(this.events, rank === 0 ? 100 : 250);
    }
  }

  /** Consider the received globals: apply the first verified one for the next round; hold those not yet decidable. */
  private async tryApplyGlobals(round: number): Promise<Applied | null> {
    const held: ReceivedGlobal[] = [];
    try {
      while (this.globals.length) {
        const g = this.globals.shift()!;
        const r = g.round;
        if (r <= this.state.version) continue;
        const fields = { round: r, leader: g.from, rank: g.msg.leaderRank };
        if (this.isFaulty(r, g.from)) {
          this.refuse(VerifyRefusal.FAULTY_LEADER, fields, 'debug');
          continue;
        }
        if (r !== this.state.version + 1 || !sameHash(g.msg.baseHash, this.state.hash)) {
          // Behind or diverged: only a certified state moves this node (never the publisher's word). One try per
          // global; the periodic catch-up asks again later.
          if (await this.syncFrom(g.from)) {
            if (this.state.version >= round) return { round, via: 'synced', leader: g.from, leaderRank: g.msg.leaderRank, contributors: g.msg.contributors };
          }
          continue;
        }
        const order = leaderOrder(this.ctx.federation, r, this.ctx.members());
        const rank = order.indexOf(g.from);
        if (rank < 0 || rank >= MAX_LEADER_RANKS || rank !== g.msg.leaderRank) {
          this.refuse(VerifyRefusal.NOT_A_LEADER, { ...fields, actualRank: rank });
          this.markFaulty(r, g.from);
          continue;
        }
        if (!this.slotOpen(r, rank, order)) {
          if (!this.noted.has(g)) {
            this.noted.add(g);
            this.refuse(VerifyRefusal.SLOT_NOT_OPEN, fields, 'debug');
          }
          held.push(g);
          continue;
        }
        const res = await this.verifyAndApply(g, rank);
        if (res === 'wait') held.push(g);
        else if (res === 'applied') {
          if (r >= round) return { round, via: 'applied', leader: g.from, leaderRank: rank, contributors: g.msg.contributors };
        }
      }
      return null;
    } finally {
      this.globals.unshift(...held);
    }
  }

  /** Verify a global for the next round by recomputation (or, when this node cannot recompute, by its certificate). */
  private async verifyAndApply(g: ReceivedGlobal, rank: number): Promise<'applied' | 'refused' | 'wait'> {
    const base = this.state;
    const r = g.round;
    const fields = { round: r, leader: g.from, rank };
    const need = this.need();
    if (g.msg.contributors.length < need) {
      this.refuse(VerifyRefusal.QUORUM_NOT_MET, { ...fields, contributors: g.msg.contributors.length, need });
      this.markFaulty(r, g.from);
      return 'refused';
    }
    if (!this.canRecompute()) {
      // Secure aggregation hides the inputs; after a state pull the server state is unknown. Apply the publisher's
      // delta only once a roster majority attested its result (secure aggregation: on its hash, see round.md).
      const cert = this.secagg ? [] : this.attestations.certificate(r, g.msg.newHash, this.certNeed());
      if (!this.secagg && !cert) {
        if (!this.noted.has(g)) {
          this.noted.add(g);
          this.refuse(VerifyRefusal.UNVERIFIABLE, fields, 'debug');
        }
        return 'wait';
      }
      const next = applyDelta(base, g.update.deltas, g.update.prototypes, this.ctx.manifest);
      if (!sameHash(next.hash, g.msg.newHash)) {
        this.refuse(VerifyRefusal.HASH_MISMATCH, fields);
        this.markFaulty(r, g.from);
        return 'refused';
      }
      this.adopt(next, g.update.deltas);
      this.afterApply(r, base, next, g.msg.contributors);
      return 'applied';
    }
    const inputs = await this.gatherInputs(g);
    if (this.state !== base) return 'refused';
    if (!inputs) {
      this.refuse(VerifyRefusal.INPUT_UNAVAILABLE, fields);
      this.markFaulty(r, g.from);
      return 'refused';
    }
    let step;
    try {
      step = computeGlobalStep({
        federation: this.ctx.federation, manifest: this.ctx.manifest, round: r, base, updates: inputs, rule: this.opts.aggregator,
        options: { weighting: this.opts.dp ? 'uniform' : undefined, ...this.aggregatorOptionsFor(r) }, serverState: this.serverOpt,
        sender: g.from, loraRank: this.ctx.loraRank, downlinkBits: this.opts.compression.downlinkBits,
      });
    } catch (err) {
      this.refuse(VerifyRefusal.AGGREGATE_FAILED, { ...fields, err: (err as Error).message });
      this.markFaulty(r, g.from);
      return 'refused';
    }
    if (!sameHash(step.next.hash, g.msg.newHash)) {
      this.refuse(VerifyRefusal.AGGREGATE_MISMATCH, { ...fields, announced: hex(g.msg.newHash).slice(0, 12), recomputed: hex(step.next.hash).slice(0, 12) });
      this.markFaulty(r, g.from);
      return 'refused';
    }
    this.adopt(step.next, step.applied, step.agg.state);
    this.afterApply(r, base, step.next, g.msg.contributors);
    this.ctx.logger.debug({ ...fields, contributors: inputs.length }, 'verified and applied global');
    return 'applied';
  }

  private afterApply(round: number, base: GlobalState, next: GlobalState, contributors: readonly string[]): void {
    this.withheld.record(round, this.ctx.members(), contributors);
    void this.attest(round, base.hash, next.hash);
  }

  private async lead(round: number, rank: number, members: readonly string[]): Promise<Omit<RoundOutcome, 'bytesDown'> | null> {
    const base = this.state;
    let inputs: ModelUpdate[];
    let contributors: string[];
    let digests: Uint8Array[];
    if (this.secagg) {
      // Secure aggregation: only the mean of the survivors' deltas (uniform weights; sample counts would leak).
      const agg = await this.secagg.aggregate(round, base);
      if (!agg || this.state !== base) return null;
      contributors = agg.contributors;
      digests = contributors.map(() => new Uint8Array(32));
      inputs = [{
        federation: this.ctx.federation, round, baseVersion: base.version, sender: this.ctx.selfId, sampleCount: contributors.length,
        loraRank: this.ctx.loraRank, deltas: agg.mean, prototypes: [],
      }];
    } else {
      const received = [...(this.updates.get(round)?.values() ?? [])].filter((r) => r.update.baseVersion === base.version);
      if (received.length < this.need()) return null;
      received.sort((a, b) => (a.update.sender < b.update.sender ? -1 : 1));
      inputs = received.map((r) => r.update);
      contributors = inputs.map((u) => u.sender);
      digests = received.map((r) => r.digest);
    }
    let step;
    try {
      step = computeGlobalStep({
        federation: this.ctx.federation, manifest: this.ctx.manifest, round, base, updates: inputs, rule: this.opts.aggregator,
        options: { weighting: this.opts.dp ? 'uniform' : undefined, ...this.aggregatorOptionsFor(round) }, serverState: this.serverOpt,
        sender: this.ctx.selfId, loraRank: this.ctx.loraRank, downlinkBits: this.opts.compression.downlinkBits, keepPrototypes: this.secagg !== null,
      });
    } catch (err) {
      this.ctx.logger.error({ round, err: (err as Error).message }, 'aggregation failed');
      return null;
    }
    const bytes = GlobalUpdate.encode({
      version: ROUND_WIRE_VERSION, round: BigInt(round), baseHash: base.hash, newHash: step.next.hash, contributors, leaderRank: rank,
      update: step.bytes, contributorDigests: digests,
    });
    if (this.state !== base) return null; // a global arrived meanwhile
    this.adopt(step.next, step.applied, step.agg.state);
    this.withheld.record(round, members, contributors);
    try {
      await this.ctx.mesh.publish(GLOBAL_TOPIC, bytes);
    } catch (err) {
      this.ctx.logger.warn({ err: (err as Error).message }, 'publishing the global update failed; peers will pull the state');
    }
    await this.attest(round, base.hash, step.next.hash);
    this.ctx.logger.info({ round, rank, contributors: contributors.length, serverStep: step.agg.serverStep, hash: hex(step.next.hash).slice(0, 12) }, 'led round');
    return { round, via: 'led', leader: this.ctx.selfId, leaderRank: rank, contributors, bytesUp: bytes.byteLength };
  }
}
