/**
 * Rotating round-leader protocol (protocols/round.md). The leader of round r is the first member in the
 * rendezvous order of (federation, r, PeerId) over the live membership view, so every member computes it
 * without election messages. Members publish their compressed update on `update`; the leader aggregates once
 * a quorum of members has contributed or its deadline passes, and publishes the signed aggregate on `global`
 * with the hashes of the state it applies to and produces. If no aggregate arrives, the k-th backup in the
 * order takes over after k extra leader timeouts. A node that is behind or diverged pulls the publisher's state
 * over the sync stream (`round.state`). Versions only move forward, so no round is applied twice.
 */
import { EventEmitter } from 'node:events';
import { createHash } from 'node:crypto';
import { lrAt } from '../train/schedule.ts';
import { getAggregator, momentumFromStep, MOMENTUM_AGGREGATORS, type AggregateOptions, type ServerOptimizerState } from '../aggregate/index.ts';
import { RefusalError, RefusalReason, type MessageMeta } from '../mesh/index.ts';
import { privatizeUpdate } from '../privacy/index.ts';
import { decodeUpdate, encodeUpdate, encodeWithErrorFeedback, ErrorFeedback, UpdateError, type ModelUpdate, type TensorMap } from '../update/index.ts';
import { FmflError } from '../util/errors.ts';
import { peerIdFromString } from '@libp2p/peer-id';
import { Rng } from '../util/rng.ts';
import { nextChange, RoundBytes } from './signals.ts';
import { GlobalUpdate, StateRequest, StateResponse, UpdateRequest } from './pb/round.ts';
import { SECAGG_ANNOUNCE_INTERVAL_MS, SecAggRound } from './secagg-round.ts';
import { applyDelta, decodeState, deltaOf, encodeState, hex, mergePrototypes, sameHash, type GlobalState } from './state.ts';
import type { LocalContribution, ProtocolSnapshot, RoundContext, RoundOptions, RoundOutcome, RoundProtocol } from './types.ts';

/** Wire version of round messages. */
export const ROUND_WIRE_VERSION = 1;
/** Most contributors listed in a GlobalUpdate. */
export const MAX_CONTRIBUTORS = 1024;
/** Only the first this-many members of a round's leader order may publish its aggregate. */
export const MAX_LEADER_RANKS = 4;
/** Topics and stream methods. */
export const UPDATE_TOPIC = 'update';
export const GLOBAL_TOPIC = 'global';
export const STATE_METHOD = 'round.state';
export const UPDATE_METHOD = 'round.update';

export class RoundStoppedError extends FmflError {
  constructor() {
    super('ROUND_STOPPED', 'the round protocol was stopped');
  }
}

/** Rendezvous (highest-random-weight) order of members for a round: every member computes the same list. */
export function leaderOrder(federation: string, round: number, members: readonly string[]): string[] {
  const score = (id: string): string => createHash('sha256').update(`${federation}|${round}|${id}`).digest('hex');
  return [...new Set(members)].map((id) => [score(id), id] as const).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).map((x) => x[1]);
}

interface PendingGlobal {
  msg: GlobalUpdate;
  update: ModelUpdate;
  from: string;
  bytes: number;
}

export class LeaderProtocol implements RoundProtocol {
  readonly name = 'leader' as const;
  readonly topics: readonly string[];
  /** Secure aggregation (RoundOptions.secagg): members publish masked deltas, the leader unmasks only their sum. */
  readonly secagg: SecAggRound | null;
  private state: GlobalState;
  private readonly ctx: RoundContext;
  private readonly opts: RoundOptions;
  private readonly ef: ErrorFeedback;
  private serverOpt: ServerOptimizerState | undefined;
  private readonly updates = new Map<number, Map<string, ModelUpdate>>();
  private readonly globals: PendingGlobal[] = [];
  private readonly events = new EventEmitter();
  private readonly rng: Rng;
  private readonly dropRng: Rng;
  private running = false;
  /** This node's encoded update for the round in progress (served to a leader that missed it). */
  private myUpdate: { round: number; bytes: Uint8Array } | null = null;
  /** Payload bytes received per round (updates and globals for that round, state pulls while in it). */
  private readonly down = new RoundBytes();

  constructor(ctx: RoundContext, opts: RoundOptions, initial: GlobalState, restore?: ProtocolSnapshot) {
    this.ctx = ctx;
    this.opts = opts;
    this.state = restore?.state ?? initial;
    this.ef = restore ? ErrorFeedback.restore(restore.residual) : new ErrorFeedback();
    this.serverOpt = restore?.serverOpt;
    this.rng = new Rng(ctx.seed ^ 0x1ead);
    this.dropRng = new Rng(ctx.seed ^ 0xd40b);
    this.events.setMaxListeners(64);
    this.secagg = opts.secagg
      ? new SecAggRound(ctx, { revealTimeoutMs: Math.min(5000, opts.leaderTimeoutMs / 2), ...opts.secagg }, this.state, () => this.state.version, (peer, round) => this.mayAggregate(peer, round), this.events)
      : null;
    this.topics = this.secagg ? [GLOBAL_TOPIC, ...this.secagg.topics] : [UPDATE_TOPIC, GLOBAL_TOPIC];
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

  snapshot(): ProtocolSnapshot {
    return { protocol: 'leader', state: this.state, residual: this.ef.snapshot(), serverOpt: this.serverOpt };
  }

  async start(): Promise<void> {
    const { mesh } = this.ctx;
    this.running = true;
    // With secure aggregation no member publishes its cleartext update: the `update` topic is not joined.
    if (!this.secagg) mesh.subscribe(UPDATE_TOPIC, (p, m) => this.onUpdate(p, m), { validator: (p, m) => this.validateUpdate(p, m) });
    mesh.subscribe(GLOBAL_TOPIC, (p, m) => this.onGlobal(p, m), { validator: (p, m) => this.validateGlobal(p, m) });
    mesh.handleRequest(STATE_METHOD, (body) => this.serveState(body));
    mesh.handleRequest(UPDATE_METHOD, (body) => this.serveUpdate(body));
    await this.secagg?.start();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.events.emit('change');
    this.secagg?.stop();
    try {
      if (!this.secagg) this.ctx.mesh.unsubscribe(UPDATE_TOPIC);
      this.ctx.mesh.unsubscribe(GLOBAL_TOPIC);
    } catch {
      // mesh already stopped
    }
  }

  /** Ask members for a newer global state (restart / late join). Returns true if the state advanced. */
  async catchUp(): Promise<boolean> {
    let advanced = false;
    for (const peer of this.ctx.members()) {
      if (peer === this.ctx.selfId) continue;
      if (await this.syncFrom(peer)) advanced = true;
    }
    return advanced;
  }

  // ------------------------------------------------------------------------------------------------------
  // Inbound

  private decodeUpdateOrRefuse(payload: Uint8Array, meta: MessageMeta): ModelUpdate | RefusalReason {
    let u: ModelUpdate;
    try {
      u = decodeUpdate(payload, this.ctx.manifest);
    } catch (err) {
      if (err instanceof UpdateError) return RefusalReason.INVALID_FIELD;
      return RefusalReason.MALFORMED;
    }
    if (u.federation !== this.ctx.federation) return RefusalReason.INVALID_FIELD;
    if (u.sender !== meta.from.toString()) return RefusalReason.PEER_MISMATCH;
    return u;
  }

  private validateUpdate(payload: Uint8Array, meta: MessageMeta): RefusalReason | undefined {
    const u = this.decodeUpdateOrRefuse(payload, meta);
    if (typeof u === 'number') return u;
    if (u.round !== u.baseVersion + 1) return RefusalReason.INVALID_FIELD;
    if (u.round <= this.state.version - 1) return RefusalReason.REPLAYED; // old round: ignore, no penalty
    if (this.updates.get(u.round)?.has(u.sender)) return RefusalReason.REPLAYED;
    return undefined;
  }

  private onUpdate(payload: Uint8Array, meta: MessageMeta, pulled = false): void {
    if (!pulled && this.lost()) return;
    const u = this.decodeUpdateOrRefuse(payload, meta);
    if (typeof u === 'number' || u.round <= this.state.version) return;
    let m = this.updates.get(u.round);
    if (!m) this.updates.set(u.round, (m = new Map()));
    if (m.has(u.sender)) return;
    m.set(u.sender, u);
    this.down.add(u.round, payload.byteLength);
    this.events.emit('change');
  }

  private decodeGlobal(payload: Uint8Array, meta: MessageMeta): PendingGlobal | RefusalReason {
    let msg: GlobalUpdate;
    try {
      msg = GlobalUpdate.decode(payload, { limits: { contributors: MAX_CONTRIBUTORS } });
    } catch {
      return RefusalReason.MALFORMED;
    }
    if (msg.version !== ROUND_WIRE_VERSION) return RefusalReason.UNSUPPORTED_VERSION;
    const round = Number(msg.round);
    if (!Number.isSafeInteger(round) || round < 1 || msg.baseHash.length !== 32 || msg.newHash.length !== 32 || msg.leaderRank >= MAX_LEADER_RANKS) {
      return RefusalReason.INVALID_FIELD;
    }
    const u = this.decodeUpdateOrRefuse(msg.update, meta);
    if (typeof u === 'number') return u;
    if (u.round !== round || u.baseVersion !== round - 1) return RefusalReason.INVALID_FIELD;
    // Only the round's first MAX_LEADER_RANKS members in the rendezvous order may publish its aggregate.
    if (!this.mayAggregate(u.sender, round)) return RefusalReason.APPLICATION;
    return { msg, update: u, from: u.sender, bytes: payload.byteLength };
  }

  private validateGlobal(payload: Uint8Array, meta: MessageMeta): RefusalReason | undefined {
    const g = this.decodeGlobal(payload, meta);
    if (typeof g === 'number') return g;
    if (Number(g.msg.round) < this.state.version) return RefusalReason.REPLAYED;
    return undefined;
  }

  private onGlobal(payload: Uint8Array, meta: MessageMeta): void {
    if (this.lost()) return;
    const g = this.decodeGlobal(payload, meta);
    if (typeof g === 'number') return;
    if (Number(g.msg.round) <= this.state.version) return;
    this.down.add(Number(g.msg.round), g.bytes);
    this.globals.push(g);
    this.events.emit('change');
  }

  private serveState(body: Uint8Array): Uint8Array {
    let req: StateRequest;
    try {
      req = StateRequest.decode(body);
    } catch {
      throw new RefusalError(RefusalReason.MALFORMED, 'StateRequest does not decode');
    }
    if (req.version !== ROUND_WIRE_VERSION) throw new RefusalError(RefusalReason.UNSUPPORTED_VERSION, `StateRequest version ${req.version}`);
    if (req.haveVersion >= BigInt(this.state.version)) throw new RefusalError(RefusalReason.UNAVAILABLE, 'not ahead of the requester');
    const st = this.state;
    return StateResponse.encode({
      version: ROUND_WIRE_VERSION,
      globalVersion: BigInt(st.version),
      hash: st.hash,
      state: encodeState(st, this.ctx.manifest, this.ctx.federation, this.ctx.selfId, this.ctx.loraRank),
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

  /** Leader side: pull the updates of members that have not arrived by gossip (validated like gossip). */
  private async pullMissing(round: number): Promise<void> {
    const have = this.updates.get(round) ?? new Map();
    const missing = this.ctx.members().filter((p) => p !== this.ctx.selfId && !have.has(p));
    const body = UpdateRequest.encode({ version: ROUND_WIRE_VERSION, round: BigInt(round) });
    await Promise.all(missing.map(async (peer) => {
      try {
        const bytes = await this.ctx.mesh.request(peer, UPDATE_METHOD, body, { timeoutMs: 10_000, maxResponseBytes: 16 * 1024 * 1024 });
        const meta = { topic: UPDATE_TOPIC, from: peerIdFromString(peer), via: peerIdFromString(peer), timestampMs: Date.now(), viaStream: true };
        if (this.validateUpdate(bytes, meta) === undefined) this.onUpdate(bytes, meta, true);
      } catch (err) {
        this.ctx.logger.debug({ peer, err: (err as Error).message }, 'pulling a missing update failed');
      }
    }));
  }

  /** Pull `peer`'s state if it is ahead; true if adopted. */
  private async syncFrom(peer: string): Promise<boolean> {
    try {
      const body = StateRequest.encode({ version: ROUND_WIRE_VERSION, haveVersion: BigInt(this.state.version) });
      const res = StateResponse.decode(await this.ctx.mesh.request(peer, STATE_METHOD, body, { timeoutMs: 15_000 }));
      if (res.version !== ROUND_WIRE_VERSION || res.hash.length !== 32) return false;
      const st = decodeState(res.state, this.ctx.manifest, res.hash, this.ctx.federation);
      if (st.version !== Number(res.globalVersion) || st.version <= this.state.version) return false;
      this.down.add(this.state.version + 1, res.state.byteLength);
      this.ctx.logger.info({ from: peer, version: st.version }, 'pulled global state');
      this.adopt(st);
      return true;
    } catch (err) {
      this.ctx.logger.debug({ peer, err: (err as Error).message }, 'state sync failed');
      return false;
    }
  }

  /**
   * Make `st` the current global state. `applied` is the global step that produced it from the previous state
   * (absent after a state pull). Momentum rules (fedavgm) derive their buffer from it on every member, so the
   * next leader, whoever it is, continues the same momentum; after a state pull the momentum restarts from zero.
   */
  /** The aggregator options of round `round`, with the decayed server learning rate when serverLrDecay is set. */
  private aggregatorOptionsFor(round: number): AggregateOptions {
    const o = this.opts.aggregatorOptions ?? {};
    const d = this.opts.serverLrDecay;
    if (!d || o.serverLr === undefined) return o;
    const step = Math.min(d.rounds - 1, Math.max(0, round - 1));
    return { ...o, serverLr: 1 + (o.serverLr - 1) * lrAt('cosine', 1, step, d.rounds) };
  }

  private adopt(st: GlobalState, applied?: TensorMap): void {
    if (MOMENTUM_AGGREGATORS.includes(this.opts.aggregator)) {
      this.serverOpt = applied ? momentumFromStep(applied, this.aggregatorOptionsFor(st.version), this.serverOpt?.step ?? 0) : undefined;
    }
    this.state = st;
    for (const r of [...this.updates.keys()]) if (r <= st.version) this.updates.delete(r);
    this.secagg?.prune(st.version);
    this.events.emit('change');
  }

  // ------------------------------------------------------------------------------------------------------
  // One round

  async exchange(local: LocalContribution): Promise<RoundOutcome> {
    if (!this.running) throw new RoundStoppedError();
    const round = this.state.version + 1;
    const base = this.state;

    // 1. Publish this node's compressed update for the round (masked, with secure aggregation).
    if (this.secagg && !this.opts.attack) {
      await this.secagg.waitForKeys(Math.max(this.opts.leaderTimeoutMs, 3 * SECAGG_ANNOUNCE_INTERVAL_MS));
      const n = await this.secagg.publish(round, base, local.tensors, this.opts.dp, this.rng);
      return this.follow(round, n, Date.now());
    }
    let deltas = deltaOf(local.tensors, base.tensors);
    if (this.opts.dp) deltas = privatizeUpdate(deltas, this.opts.dp, this.rng.fork()).deltas;
    const update: ModelUpdate = {
      federation: this.ctx.federation, round, baseVersion: base.version, sender: this.ctx.selfId,
      sampleCount: local.sampleCount, loraRank: this.ctx.loraRank, deltas, prototypes: local.prototypes,
    };
    const c = this.opts.compression;
    const encOpts = { topk: c.topk < 1 ? { fraction: c.topk, scope: c.topkScope ?? 'global' } : undefined, bits: c.bits, brotli: c.brotli, seed: this.rng.nextU32(), prototypeBits: 32 as const };
    if (this.opts.attack) return this.misbehave(update, round);
    const enc = c.errorFeedback ? encodeWithErrorFeedback(update, this.ctx.manifest, this.ef, encOpts) : encodeUpdate(update, this.ctx.manifest, encOpts);
    // Aggregate what peers will decode, not the pre-compression values.
    const own: ModelUpdate = { ...update, deltas: enc.reconstruction };
    let mine = this.updates.get(round);
    if (!mine) this.updates.set(round, (mine = new Map()));
    mine.set(this.ctx.selfId, own);
    try {
      await this.ctx.mesh.publish(UPDATE_TOPIC, enc.bytes);
    } catch (err) {
      this.ctx.logger.warn({ err: (err as Error).message }, 'publishing the update failed; the round goes on');
    }
    this.myUpdate = { round, bytes: enc.bytes };
    return this.follow(round, enc.bytes.byteLength, Date.now());
  }

  /** After publishing this node's update (`updateBytes`) at `publishedAt`: wait for, or produce, the round's model. */
  private async follow(round: number, updateBytes: number, publishedAt: number): Promise<RoundOutcome> {
    const bytesUp = updateBytes;
    // Lost messages: the leader pulls missing updates at 1/4 of its deadline; anyone still without the round's
    // model after the deadline plus one leader timeout asks members for their state, then again periodically.
    const pullAt = publishedAt + this.opts.roundTimeoutMs / 4;
    let pulled = false;
    let nextCatchUp = publishedAt + this.opts.roundTimeoutMs + this.opts.leaderTimeoutMs;

    // 2. Wait until this node holds version >= round: apply a global, sync, or lead.
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
      const have = this.secagg ? this.secagg.count(round) : (this.updates.get(round)?.size ?? 0);
      const quorum = Math.max(1, Math.ceil(this.opts.quorum * members.length));
      const now = Date.now();
      const deadline = publishedAt + this.opts.roundTimeoutMs;
      if (rank === 0 && !pulled && !this.secagg && have < quorum && now >= pullAt) {
        pulled = true;
        await this.pullMissing(round);
        continue;
      }
      if (now >= nextCatchUp) {
        nextCatchUp = now + this.opts.leaderTimeoutMs;
        if (await this.catchUp()) continue;
      }
      const myTurn =
        rank === 0 ? have >= quorum || now >= deadline : rank > 0 && rank < MAX_LEADER_RANKS && now >= deadline + rank * this.opts.leaderTimeoutMs;
      if (myTurn) {
        const led = await this.lead(round, rank);
        if (led) return { ...led, bytesUp: bytesUp + led.bytesUp, updateBytes, bytesDown: this.down.take(round) };
      }
      await nextChange(this.events, rank === 0 ? 100 : 250);
    }
  }

  /**
   * Fault injection: publish a scaled or NaN update, then follow the round passively (never lead, so the
   * experiment measures what honest leaders do with it).
   */
  private async misbehave(update: ModelUpdate, round: number): Promise<RoundOutcome> {
    const a = this.opts.attack!;
    const deltas: TensorMap = new Map([...update.deltas].map(([k, v]) => [k, Float32Array.from(v, (x) => x * a.factor)]));
    let bytes = encodeUpdate({ ...update, deltas }, this.ctx.manifest, { bits: 32, prototypeBits: 32 }).bytes;
    if (a.kind === 'nan') {
      // Overwrite every float32 of the dense payload that equals a scaled delta value with NaN: find the first
      // tensor's values by searching for its first 4 bytes.
      const first = [...deltas.values()].find((t) => t.some((x) => x !== 0));
      if (first) {
        const pat = new Uint8Array(first.buffer, first.byteOffset, 4);
        bytes = Uint8Array.from(bytes);
        for (let i = 0; i + 4 <= bytes.length; i++) {
          if (bytes[i] === pat[0] && bytes[i + 1] === pat[1] && bytes[i + 2] === pat[2] && bytes[i + 3] === pat[3]) {
            new DataView(bytes.buffer).setFloat32(i, Number.NaN, true);
            break;
          }
        }
      }
    }
    try {
      await this.ctx.mesh.publish(UPDATE_TOPIC, bytes);
    } catch {
      // ignored: a Byzantine node does not care
    }
    for (;;) {
      if (!this.running) throw new RoundStoppedError();
      if (this.state.version >= round) return { round, via: 'synced', contributors: [], bytesUp: bytes.byteLength, bytesDown: this.down.take(round) };
      const applied = await this.tryApplyGlobals(round);
      if (applied) return { ...applied, bytesUp: bytes.byteLength, bytesDown: this.down.take(round) };
      await nextChange(this.events, 250);
    }
  }

  private async tryApplyGlobals(round: number): Promise<Omit<RoundOutcome, 'bytesUp' | 'bytesDown'> | null> {
    while (this.globals.length) {
      const g = this.globals.shift()!;
      const r = Number(g.msg.round);
      if (r <= this.state.version) continue;
      if (r === this.state.version + 1 && sameHash(g.msg.baseHash, this.state.hash)) {
        const next = applyDelta(this.state, g.update.deltas, g.update.prototypes, this.ctx.manifest);
        if (sameHash(next.hash, g.msg.newHash)) {
          this.adopt(next, g.update.deltas);
          this.ctx.logger.debug({ round: r, leader: g.from, rank: g.msg.leaderRank }, 'applied global');
          if (r >= round) return { round, via: 'applied', leader: g.from, leaderRank: g.msg.leaderRank, contributors: g.msg.contributors };
          continue;
        }
        this.ctx.logger.warn({ round: r, leader: g.from }, 'global update does not reproduce its announced hash; pulling the state');
      }
      // Behind, diverged, or a hash mismatch: pull the publisher's state.
      if (await this.syncFrom(g.from)) {
        if (this.state.version >= round) return { round, via: 'synced', leader: g.from, leaderRank: g.msg.leaderRank, contributors: g.msg.contributors };
      }
    }
    return null;
  }

  private async lead(round: number, rank: number): Promise<Omit<RoundOutcome, 'bytesDown'> | null> {
    const base = this.state;
    let inputs: ModelUpdate[];
    let contributors: string[];
    if (this.secagg) {
      // Secure aggregation: only the mean of the survivors' deltas (uniform weights; sample counts would leak).
      const agg = await this.secagg.aggregate(round, base);
      if (!agg || this.state !== base) return null;
      contributors = agg.contributors;
      inputs = [{
        federation: this.ctx.federation, round, baseVersion: base.version, sender: this.ctx.selfId, sampleCount: contributors.length,
        loraRank: this.ctx.loraRank, deltas: agg.mean, prototypes: [],
      }];
    } else {
      inputs = [...(this.updates.get(round)?.values() ?? [])].filter((u) => u.baseVersion === base.version);
      if (inputs.length === 0) return null;
      inputs.sort((a, b) => (a.sender < b.sender ? -1 : 1));
      contributors = inputs.map((u) => u.sender);
    }
    const agg = getAggregator(this.opts.aggregator);
    let result;
    try {
      result = agg(inputs, {
        manifest: this.ctx.manifest, base: base.tensors, state: this.serverOpt,
        weighting: this.opts.dp ? 'uniform' : undefined, ...this.aggregatorOptionsFor(round),
      });
    } catch (err) {
      this.ctx.logger.error({ round, err: (err as Error).message }, 'aggregation failed');
      return null;
    }
    // With secure aggregation no prototype statistics are exchanged: the global ones stay as they are.
    const prototypes = this.secagg ? base.prototypes : mergePrototypes(inputs.map((u) => u.prototypes));
    const global: ModelUpdate = {
      federation: this.ctx.federation, round, baseVersion: base.version, sender: this.ctx.selfId,
      sampleCount: Math.max(1, Math.round(result.sampleCount)), loraRank: this.ctx.loraRank, deltas: result.deltas, prototypes,
    };
    const enc = encodeUpdate(global, this.ctx.manifest, { bits: this.opts.compression.downlinkBits, prototypeBits: 32, seed: this.rng.nextU32() });
    const next = applyDelta(base, enc.reconstruction, prototypes, this.ctx.manifest);
    const bytes = GlobalUpdate.encode({
      version: ROUND_WIRE_VERSION, round: BigInt(round), baseHash: base.hash, newHash: next.hash, contributors, leaderRank: rank, update: enc.bytes,
    });
    if (this.state !== base) return null; // a global arrived meanwhile
    if (result.state) this.serverOpt = result.state;
    this.adopt(next, enc.reconstruction);
    try {
      await this.ctx.mesh.publish(GLOBAL_TOPIC, bytes);
    } catch (err) {
      this.ctx.logger.warn({ err: (err as Error).message }, 'publishing the global update failed; peers will pull the state');
    }
    this.ctx.logger.info({ round, rank, contributors: contributors.length, serverStep: result.serverStep, hash: hex(next.hash).slice(0, 12) }, 'led round');
    return { round, via: 'led', leader: this.ctx.selfId, leaderRank: rank, contributors, bytesUp: bytes.byteLength };
  }

  /** Fault injection: drop an inbound message with probability dropRate. */
  private lost(): boolean {
    return (this.opts.dropRate ?? 0) > 0 && this.dropRng.next() < this.opts.dropRate!;
  }



}
