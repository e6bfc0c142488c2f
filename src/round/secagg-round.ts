/**
 * Secure aggregation inside the rotating-leader protocol (protocols/round.md, "Secure aggregation"). With it the
 * round's aggregator learns only the SUM of the round's deltas, never a member's delta:
 *
 * - Keys. Each node holds one X25519 key pair for its lifetime, signed with its libp2p identity key and announced
 *   on the `secagg` topic (re-announced every SECAGG_ANNOUNCE_INTERVAL_MS so late joiners learn it). Receivers
 *   verify the binding and keep the newest valid announcement per member.
 * - Masking. For round r a member clips its delta element-wise to [-clip, clip], encodes it in fixed point and
 *   double-masks it (src/privacy/secagg.ts) with pair seeds derived for (federation, r) with every member of U
 *   (the members in its view whose key it knows) plus a fresh self mask, and publishes
 *   MaskedUpdate{round, members = U, masked} on the `masked` topic.
 * - Unmasking. The aggregator takes the largest group of inputs that agree on U, fixes survivors S and dropped
 *   D = U \ S, asks every survivor for its reveal (`secagg.reveal`: self-mask seed + pair seeds with D), moves
 *   survivors that do not answer to D and asks again, then removes the masks and divides by |S|.
 *
 * Nothing here throws out of a gossip handler or a validator; stream handlers refuse with RefusalError.
 */
import type { EventEmitter } from 'node:events';
import { peerIdFromString } from '@libp2p/peer-id';
import { RefusalError, RefusalReason, type MessageMeta } from '../mesh/index.ts';
import {
  announce, decodeAnnounce, decodeMasked, decodeReveal, derivePairSeeds, encodeAnnounce, encodeMasked, encodeReveal, fixedPointFor,
  generateSecAggKeyPair, maskInput, newSelfMaskSeed, privatizeUpdate, revealFor, SecAggError, SecAggRefusal, unmaskSum, verifyAnnouncements,
  type ClientDpOptions, type FixedPoint, type MaskSecrets, type SecAggAnnouncement, type SecAggRevealData, type Verifier,
} from '../privacy/index.ts';
import { flattenTensors, unflattenTensors, type TensorMap } from '../update/index.ts';
import type { Rng } from '../util/rng.ts';
import { MaskedUpdate, RevealRequest } from './pb/round.ts';
import { deltaOf, type GlobalState } from './state.ts';
import type { RoundContext } from './types.ts';

/** Topics and stream method of secure aggregation. */
export const SECAGG_TOPIC = 'secagg';
export const MASKED_TOPIC = 'masked';
export const REVEAL_METHOD = 'secagg.reveal';
/** Wire version of MaskedUpdate / RevealRequest. */
export const SECAGG_ROUND_WIRE_VERSION = 1;
/** Key announcements are bound to this context round (one key per node lifetime; masks are bound to the round). */
export const SECAGG_KEY_EPOCH = 0;
/** Re-announce this node's key this often. */
export const SECAGG_ANNOUNCE_INTERVAL_MS = 2000;
/** Default element-wise clip of the deltas before fixed-point encoding. */
export const DEFAULT_SECAGG_CLIP = 1;
/** Deadline of one `secagg.reveal` request. */
export const SECAGG_REVEAL_TIMEOUT_MS = 5000;
/** Reveal responses are at most this large (32-byte seeds for up to MAX members plus ids). */
export const MAX_REVEAL_RESPONSE_BYTES = 1024 * 1024;
/** Most members in U / S / D of one round (same as MAX_CONTRIBUTORS). */
export const MAX_SECAGG_MEMBERS = 1024;
/**
 * Least number of survivors other than the aggregator (capped at |U| - 1): the aggregator knows its own input,
 * so a sum over itself and one other member would expose that member's delta. Members refuse reveals below it.
 */
export const SECAGG_MIN_OTHER_SURVIVORS = 2;
/** An aggregator gives up unmasking a round after this many failed attempts (the backups then try). */
export const MAX_SECAGG_ATTEMPTS = 3;
const MAX_ID_LENGTH = 256;
/** While waiting for members' keys, re-announce this often. */
const KEY_WAIT_ANNOUNCE_MS = 300;

export interface SecAggRoundOptions {
  /** Element-wise clip bound of the deltas (the same on every member: it fixes the fixed-point scale). */
  clip: number;
  /** Deadline of one reveal request (default SECAGG_REVEAL_TIMEOUT_MS). */
  revealTimeoutMs?: number;
}

/** Whether an aggregation over `survivors` of `members`, run by `aggregator`, keeps every input hidden from it. */
export function enoughSurvivors(members: readonly string[], survivors: readonly string[], aggregator: string): boolean {
  const others = survivors.filter((p) => p !== aggregator).length;
  return others >= Math.min(SECAGG_MIN_OTHER_SURVIVORS, members.length - 1);
}

/** A verified masked input of a round. */
interface MaskedInput {
  sender: string;
  baseVersion: number;
  members: string[];
  words: Uint32Array;
}

/** This member's secrets for a round it masked. */
interface MyRound {
  members: string[];
  secrets: MaskSecrets;
  /** Members whose pair seed this member has revealed (it considers them dropped). */
  revealedPairs: Set<string>;
  /** Set once a request named this member dropped: it never reveals its self-mask seed for the round. */
  declaredDropped: boolean;
}

const verifier: Verifier = (peerId, data, sig) => {
  const pk = peerIdFromString(peerId).publicKey;
  return pk === undefined ? false : pk.verify(data, sig);
};

function refusalOf(err: unknown): RefusalReason {
  if (!(err instanceof SecAggError)) return RefusalReason.MALFORMED;
  switch (err.reason) {
    case SecAggRefusal.MALFORMED: return RefusalReason.MALFORMED;
    case SecAggRefusal.BAD_SIGNATURE: return RefusalReason.BAD_SIGNATURE;
    default: return RefusalReason.INVALID_FIELD;
  }
}

function validIdList(ids: readonly string[]): boolean {
  for (let i = 0; i < ids.length; i++) {
    if (ids[i].length === 0 || ids[i].length > MAX_ID_LENGTH) return false;
    if (i > 0 && !(ids[i - 1] < ids[i])) return false; // sorted, unique
  }
  return true;
}

export class SecAggRound {
  readonly topics = [SECAGG_TOPIC, MASKED_TOPIC] as const;
  private readonly keys = generateSecAggKeyPair();
  private readonly anns = new Map<string, { ann: SecAggAnnouncement; ts: number }>();
  private readonly inputs = new Map<number, Map<string, MaskedInput>>();
  private readonly mine = new Map<number, MyRound>();
  private readonly attempts = new Map<number, number>();
  private readonly length: number;
  private myAnnouncement: Uint8Array | null = null;
  private timer: NodeJS.Timeout | null = null;
  private lastAnnounce = 0;
  /** Members whose key did not arrive within one full wait. */
  private readonly keyless = new Set<string>();
  private running = false;
  /** Test instrumentation: this member's own clipped input of its latest round (never sent in the clear). */
  lastInput: { round: number; values: Float64Array } | null = null;
  /** Test hook: called right after this member published its masked input. */
  onMaskedPublished: ((round: number) => void) | null = null;

  constructor(
    private readonly ctx: RoundContext,
    private readonly opts: SecAggRoundOptions,
    initial: GlobalState,
    /** Current global version. */
    private readonly version: () => number,
    /** May `peer` aggregate round `round` (it is among the round's first MAX_LEADER_RANKS)? */
    private readonly mayAggregate: (peer: string, round: number) => boolean,
    private readonly events: EventEmitter,
  ) {
    if (!(opts.clip > 0) || !Number.isFinite(opts.clip)) throw new SecAggError(SecAggRefusal.BAD_PARAMS, `secagg clip ${opts.clip} must be positive`);
    this.length = flattenTensors(initial.tensors, ctx.manifest, ctx.loraRank).length;
  }

  private get fed(): string {
    return this.ctx.federation;
  }

  fixedPoint(members: number): FixedPoint {
    return fixedPointFor(this.opts.clip, members);
  }

  async start(): Promise<void> {
    const { mesh } = this.ctx;
    this.running = true;
    mesh.subscribe(SECAGG_TOPIC, (p, m) => this.onAnnounce(p, m), { validator: (p, m) => this.validateAnnounce(p, m) });
    mesh.subscribe(MASKED_TOPIC, (p, m) => this.onMasked(p, m), { validator: (p, m) => this.validateMasked(p, m) });
    mesh.handleRequest(REVEAL_METHOD, (body, rc) => this.serveReveal(body, rc.peer.toString()));
    const a = await announce({ federation: this.fed, round: SECAGG_KEY_EPOCH }, this.ctx.selfId, this.keys, (d) => mesh.signWithIdentity(d));
    this.anns.set(this.ctx.selfId, { ann: a, ts: Date.now() });
    this.myAnnouncement = encodeAnnounce({ federation: this.fed, round: SECAGG_KEY_EPOCH }, a);
    await this.announceNow();
    this.timer = setInterval(() => void this.announceNow(), SECAGG_ANNOUNCE_INTERVAL_MS);
    this.timer.unref();
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const t of this.topics) {
      try {
        this.ctx.mesh.unsubscribe(t);
      } catch {
        // mesh already stopped
      }
    }
  }

  private async announceNow(): Promise<void> {
    if (!this.running || !this.myAnnouncement) return;
    this.lastAnnounce = Date.now();
    try {
      await this.ctx.mesh.publish(SECAGG_TOPIC, this.myAnnouncement);
    } catch (err) {
      this.ctx.logger.debug({ err: (err as Error).message }, 'secagg key announcement failed');
    }
  }

  /** Members of the live view whose key this node knows (sorted, self included). */
  keyedMembers(): string[] {
    return [...new Set(this.ctx.members())].filter((p) => this.anns.has(p)).sort();
  }

  /**
   * Wait until every member of the view has a known key, at most `timeoutMs`, re-announcing this node's key
   * every KEY_WAIT_ANNOUNCE_MS meanwhile (the members missing ours are likely waiting too).
   */
  async waitForKeys(timeoutMs: number): Promise<void> {
    const end = Date.now() + timeoutMs;
    // Members already waited for in vain (e.g. nodes without secagg) do not delay later rounds again.
    const missing = (): string[] => this.ctx.members().filter((p) => !this.anns.has(p) && !this.keyless.has(p));
    while (this.running && Date.now() < end) {
      if (missing().length === 0) return;
      if (Date.now() - this.lastAnnounce >= KEY_WAIT_ANNOUNCE_MS) void this.announceNow();
      await new Promise((r) => setTimeout(r, 50));
    }
    const left = missing();
    for (const p of left) this.keyless.add(p);
    if (left.length) this.ctx.logger.warn({ missing: left.length }, 'secagg keys of some members are unknown; masking without them');
  }

  // ------------------------------------------------------------------------------------------------------
  // Key announcements

  private decodeAnn(payload: Uint8Array, meta: MessageMeta): SecAggAnnouncement | RefusalReason {
    let a: SecAggAnnouncement;
    try {
      a = decodeAnnounce(payload, { federation: this.fed, round: SECAGG_KEY_EPOCH }, { maxIdLength: MAX_ID_LENGTH });
    } catch (err) {
      return refusalOf(err);
    }
    if (a.peerId !== meta.from.toString()) return RefusalReason.PEER_MISMATCH;
    return a;
  }

  private async validateAnnounce(payload: Uint8Array, meta: MessageMeta): Promise<RefusalReason | undefined> {
    const a = this.decodeAnn(payload, meta);
    if (typeof a === 'number') return a;
    const have = this.anns.get(a.peerId);
    if (have && have.ts > meta.timestampMs) return RefusalReason.REPLAYED; // older than the one we hold
    try {
      await verifyAnnouncements({ federation: this.fed, round: SECAGG_KEY_EPOCH }, [a], verifier);
    } catch (err) {
      return refusalOf(err);
    }
    return undefined;
  }

  private onAnnounce(payload: Uint8Array, meta: MessageMeta): void {
    try {
      const a = this.decodeAnn(payload, meta);
      if (typeof a === 'number' || a.peerId === this.ctx.selfId) return;
      const have = this.anns.get(a.peerId);
      if (have && have.ts > meta.timestampMs) return;
      this.anns.set(a.peerId, { ann: a, ts: meta.timestampMs });
      // A member we did not know (or that restarted with a new key) probably does not know our key either.
      const changed = !have || Buffer.compare(Buffer.from(have.ann.publicKey), Buffer.from(a.publicKey)) !== 0;
      if (changed) {
        this.events.emit('change');
        if (Date.now() - this.lastAnnounce > 250) void this.announceNow();
      }
    } catch (err) {
      this.ctx.logger.debug({ err: (err as Error).message }, 'secagg announcement handler failed');
    }
  }

  // ------------------------------------------------------------------------------------------------------
  // Masked inputs

  private decodeMaskedMsg(payload: Uint8Array, meta: MessageMeta): MaskedInput | RefusalReason {
    let msg: MaskedUpdate;
    try {
      msg = MaskedUpdate.decode(payload, { limits: { members: MAX_SECAGG_MEMBERS } });
    } catch {
      return RefusalReason.MALFORMED;
    }
    if (msg.version !== SECAGG_ROUND_WIRE_VERSION) return RefusalReason.UNSUPPORTED_VERSION;
    const round = Number(msg.round);
    if (!Number.isSafeInteger(round) || round < 1 || msg.baseVersion !== msg.round - 1n) return RefusalReason.INVALID_FIELD;
    const sender = meta.from.toString();
    if (msg.members.length === 0 || !validIdList(msg.members) || !msg.members.includes(sender)) return RefusalReason.INVALID_FIELD;
    let fp: FixedPoint;
    try {
      fp = this.fixedPoint(msg.members.length);
      const d = decodeMasked(msg.masked, { federation: this.fed, round }, { length: this.length, fracBits: fp.fracBits }, { maxIdLength: MAX_ID_LENGTH });
      if (d.peerId !== sender) return RefusalReason.PEER_MISMATCH;
      return { sender, baseVersion: round - 1, members: msg.members, words: d.words };
    } catch (err) {
      return refusalOf(err);
    }
  }

  private validateMasked(payload: Uint8Array, meta: MessageMeta): RefusalReason | undefined {
    const m = this.decodeMaskedMsg(payload, meta);
    if (typeof m === 'number') return m;
    const round = m.baseVersion + 1;
    if (round <= this.version() - 1) return RefusalReason.REPLAYED;
    if (this.inputs.get(round)?.has(m.sender)) return RefusalReason.REPLAYED;
    return undefined;
  }

  private onMasked(payload: Uint8Array, meta: MessageMeta): void {
    try {
      const m = this.decodeMaskedMsg(payload, meta);
      if (typeof m === 'number') return;
      this.store(m);
    } catch (err) {
      this.ctx.logger.debug({ err: (err as Error).message }, 'masked-input handler failed');
    }
  }

  private store(m: MaskedInput): void {
    const round = m.baseVersion + 1;
    if (round <= this.version()) return;
    let r = this.inputs.get(round);
    if (!r) this.inputs.set(round, (r = new Map()));
    if (r.has(m.sender)) return;
    r.set(m.sender, m);
    this.events.emit('change');
  }

  /** Masked inputs for `round` that agree on one member set (the largest such group): the leader's quorum count. */
  count(round: number): number {
    const sizes = new Map<string, number>();
    for (const m of this.inputs.get(round)?.values() ?? []) {
      const k = m.members.join('\n');
      sizes.set(k, (sizes.get(k) ?? 0) + 1);
    }
    return Math.max(0, ...sizes.values());
  }

  /**
   * Member side: clip (and with DP, clip + noise share) the delta, mask it for `round` over the keyed members
   * and publish it. Returns the bytes published (0 when masking failed; the round goes on without this input).
   */
  async publish(round: number, base: GlobalState, local: TensorMap, dp: ClientDpOptions | undefined, rng: Rng): Promise<number> {
    const members = this.keyedMembers();
    let deltas = deltaOf(local, base.tensors);
    if (dp) deltas = privatizeUpdate(deltas, { ...dp, noiseShares: members.length }, rng.fork()).deltas;
    const flat = flattenTensors(deltas, this.ctx.manifest, this.ctx.loraRank);
    const c = this.opts.clip;
    const values = Float64Array.from(flat, (v) => (Number.isFinite(v) ? Math.min(c, Math.max(-c, v)) : 0));
    const sctx = { federation: this.fed, round };
    let bytes: Uint8Array;
    try {
      const anns = members.map((p) => this.anns.get(p)!.ann);
      const pairSeeds = derivePairSeeds(sctx, this.ctx.selfId, this.keys, anns);
      const secrets: MaskSecrets = { pairSeeds, selfSeed: newSelfMaskSeed() };
      const fp = this.fixedPoint(members.length);
      const words = maskInput(values, this.ctx.selfId, secrets, fp, rng.fork());
      const masked = encodeMasked(sctx, this.ctx.selfId, fp.fracBits, words);
      bytes = MaskedUpdate.encode({ version: SECAGG_ROUND_WIRE_VERSION, round: BigInt(round), baseVersion: BigInt(base.version), members, masked });
      this.mine.set(round, { members, secrets, revealedPairs: new Set(), declaredDropped: false });
      this.lastInput = { round, values };
      this.store({ sender: this.ctx.selfId, baseVersion: base.version, members, words });
    } catch (err) {
      this.ctx.logger.error({ round, err: (err as Error).message }, 'masking the update failed; this round goes on without it');
      return 0;
    }
    try {
      await this.ctx.mesh.publish(MASKED_TOPIC, bytes);
    } catch (err) {
      this.ctx.logger.warn({ err: (err as Error).message }, 'publishing the masked update failed; the round goes on');
    }
    this.onMaskedPublished?.(round);
    return bytes.byteLength;
  }

  // ------------------------------------------------------------------------------------------------------
  // Reveals (member side)

  /** Answer an aggregator's reveal request; refuses with RefusalError (the mesh sends the reason back). */
  serveReveal(body: Uint8Array, requester: string): Uint8Array {
    let req: RevealRequest;
    try {
      req = RevealRequest.decode(body, { limits: { members: MAX_SECAGG_MEMBERS, survivors: MAX_SECAGG_MEMBERS, dropped: MAX_SECAGG_MEMBERS } });
    } catch {
      throw new RefusalError(RefusalReason.MALFORMED, 'RevealRequest does not decode');
    }
    if (req.version !== SECAGG_ROUND_WIRE_VERSION) throw new RefusalError(RefusalReason.UNSUPPORTED_VERSION, `RevealRequest version ${req.version}`);
    const round = Number(req.round);
    const my = this.mine.get(round);
    if (!Number.isSafeInteger(round) || !my) throw new RefusalError(RefusalReason.UNAVAILABLE, 'no masked input for that round');
    if (requester !== this.ctx.selfId && !this.mayAggregate(requester, round)) {
      throw new RefusalError(RefusalReason.NOT_ALLOWED, 'the requester may not aggregate this round');
    }
    const self = this.ctx.selfId;
    const { members, survivors, dropped } = req;
    if (members.length !== my.members.length || members.some((p, i) => p !== my.members[i])) {
      throw new RefusalError(RefusalReason.INVALID_FIELD, 'member set differs from the one this input was masked with');
    }
    const inU = new Set(members);
    const s = new Set(survivors);
    const d = new Set(dropped);
    if (s.size !== survivors.length || d.size !== dropped.length || s.size + d.size !== inU.size ||
      ![...s, ...d].every((p) => inU.has(p)) || survivors.some((p) => d.has(p))) {
      throw new RefusalError(RefusalReason.INVALID_FIELD, 'survivors and dropped must partition the member set');
    }
    if (d.has(self)) my.declaredDropped = true;
    // Bonawitz rule: a member declared dropped never reveals its self-mask seed for the round.
    if (my.declaredDropped) throw new RefusalError(RefusalReason.APPLICATION, 'declared dropped in this round: never reveal the self-mask seed');
    if (!s.has(self)) throw new RefusalError(RefusalReason.INVALID_FIELD, 'this member is not listed as a survivor');
    if (!enoughSurvivors(members, survivors, requester)) {
      throw new RefusalError(RefusalReason.APPLICATION, 'too few survivors: the sum would expose an individual input to the aggregator');
    }
    // A member whose pair seed we revealed (we consider it dropped) must not be unmasked as a survivor.
    const back = survivors.find((p) => my.revealedPairs.has(p));
    if (back !== undefined) throw new RefusalError(RefusalReason.APPLICATION, `${back} is already considered dropped in this round`);
    let reveal: SecAggRevealData;
    try {
      reveal = revealFor(self, my.secrets, dropped);
    } catch (err) {
      throw new RefusalError(RefusalReason.APPLICATION, (err as Error).message);
    }
    for (const p of dropped) my.revealedPairs.add(p);
    return encodeReveal({ federation: this.fed, round }, self, reveal);
  }

  // ------------------------------------------------------------------------------------------------------
  // Aggregation (leader side)

  private async requestReveal(peer: string, round: number, members: string[], survivors: string[], dropped: string[]): Promise<SecAggRevealData | null> {
    const body = RevealRequest.encode({ version: SECAGG_ROUND_WIRE_VERSION, round: BigInt(round), members, survivors, dropped });
    try {
      const bytes = peer === this.ctx.selfId
        ? this.serveReveal(body, peer)
        : await this.ctx.mesh.request(peer, REVEAL_METHOD, body, { timeoutMs: this.opts.revealTimeoutMs ?? SECAGG_REVEAL_TIMEOUT_MS, maxResponseBytes: MAX_REVEAL_RESPONSE_BYTES });
      const r = decodeReveal(bytes, { federation: this.fed, round }, { maxSeeds: MAX_SECAGG_MEMBERS, maxIdLength: MAX_ID_LENGTH });
      if (r.peerId !== peer) throw new Error(`reveal signed as ${r.peerId}`);
      if (r.reveal.pairSeeds.size !== dropped.length || !dropped.every((p) => r.reveal.pairSeeds.has(p))) throw new Error('reveal does not cover exactly the dropped set');
      return r.reveal;
    } catch (err) {
      this.ctx.logger.debug({ peer, round, err: (err as Error).message }, 'secagg reveal failed');
      return null;
    }
  }

  /**
   * Unmask the mean delta of `round` over the largest group of inputs that agree on their member set. Null when
   * there is nothing to aggregate, every survivor failed to reveal, the unmasked sum is out of range (a wrong
   * seed), or this node already failed MAX_SECAGG_ATTEMPTS times for the round.
   */
  async aggregate(round: number, base: GlobalState): Promise<{ mean: TensorMap; contributors: string[] } | null> {
    const tries = this.attempts.get(round) ?? 0;
    if (tries >= MAX_SECAGG_ATTEMPTS) return null;
    this.attempts.set(round, tries + 1);
    const all = [...(this.inputs.get(round)?.values() ?? [])].filter((m) => m.baseVersion === base.version);
    if (all.length === 0) return null;
    const groups = new Map<string, MaskedInput[]>();
    for (const m of all) {
      const k = m.members.join('\n');
      const g = groups.get(k);
      if (g) g.push(m);
      else groups.set(k, [m]);
    }
    const [key, group] = [...groups].sort((a, b) => b[1].length - a[1].length || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))[0];
    const members = key.split('\n');
    let survivors = group.map((m) => m.sender).sort();
    let dropped = members.filter((p) => !survivors.includes(p));
    let reveals = new Map<string, SecAggRevealData>();
    // Survivors that do not answer move to the dropped set; the others are asked again with the larger set.
    for (;;) {
      if (!enoughSurvivors(members, survivors, this.ctx.selfId)) {
        this.ctx.logger.warn({ round, survivors: survivors.length, members: members.length }, 'too few survivors for secure aggregation');
        return null;
      }
      const got = await Promise.all(survivors.map((p) => this.requestReveal(p, round, members, survivors, dropped)));
      if (!this.running) return null;
      const failed = survivors.filter((_, i) => got[i] === null);
      reveals = new Map(survivors.flatMap((p, i) => (got[i] ? [[p, got[i]!] as const] : [])));
      if (failed.length === 0) break;
      this.ctx.logger.info({ round, failed: failed.length }, 'survivors did not reveal; treating them as dropped');
      survivors = survivors.filter((p) => !failed.includes(p));
      dropped = [...dropped, ...failed].sort();
    }
    const fp = this.fixedPoint(members.length);
    const masked = new Map(group.filter((m) => survivors.includes(m.sender)).map((m) => [m.sender, m.words]));
    let sum: Float64Array;
    let count: number;
    try {
      ({ sum, count } = unmaskSum(masked, dropped, reveals, fp, this.length));
    } catch (err) {
      this.ctx.logger.error({ round, err: (err as Error).message }, 'unmasking failed');
      return null;
    }
    // Every input lies in [-clip, clip]: a sum outside count·clip (plus rounding) means a wrong seed was revealed.
    const bound = count * (this.opts.clip + 2 ** -fp.fracBits);
    for (let i = 0; i < sum.length; i++) {
      if (!(Math.abs(sum[i]) <= bound)) {
        this.ctx.logger.error({ round }, 'unmasked sum out of range (a survivor revealed a wrong seed); not aggregating');
        return null;
      }
    }
    const mean = Float32Array.from(sum, (v) => v / count);
    return { mean: unflattenTensors(mean, this.ctx.manifest, this.ctx.loraRank), contributors: survivors };
  }

  /** Forget inputs and secrets of rounds that are done. */
  prune(version: number): void {
    for (const r of [...this.inputs.keys()]) if (r <= version) this.inputs.delete(r);
    for (const r of [...this.attempts.keys()]) if (r <= version) this.attempts.delete(r);
    for (const r of [...this.mine.keys()]) if (r < version) this.mine.delete(r);
  }
}
