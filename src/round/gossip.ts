/**
 * Gossip averaging without a leader, after CHOCO-SGD (Koloskova, Stich & Jaggi, ICML 2019). Each node keeps its
 * iterate x_i, a public copy x_hat_i that every peer replicates exactly, and replicas x_hat_j of its peers' public
 * copies. Its model is the sample-weighted average of the public copies it holds, m_i = sum_j w_j x_hat_j with
 * w_j = n_j / sum n (n_j: the sample count each peer announces, capped at SAMPLE_WEIGHT_CAP x the median): local
 * training starts from m_i, and the progress made is added to x_i. It then publishes q_i = C(x_i - x_hat_i) (top-k +
 * quantization); every holder of x_hat_i adds q_i, so what compression leaves out stays in x_i - x_hat_i and is
 * sent later (error feedback by construction). Finally the consensus step x_i += gamma * (m_i - x_hat_i) pulls
 * the public copies together; with gamma = 0 (default) the public copies are pure accumulators of each node's
 * progress and m_i is FedAvg's model whenever a node holds every replica, which gossipsub's relaying gives it.
 * Replicas resynchronize over the sync stream (`mix.public`) after a lost message or a peer restart.
 */
import { EventEmitter } from 'node:events';
import { RefusalError, RefusalReason, type MessageMeta } from '../mesh/index.ts';
import { decodeUpdate, encodeUpdate, UpdateError, type ModelUpdate, type PrototypeTable, type TensorMap } from '../update/index.ts';
import { Rng } from '../util/rng.ts';
import { decodeRequest, nextChange, RoundBytes, RoundStoppedError, ROUND_WIRE_VERSION } from './signals.ts';
import { MixUpdate, PublicRequest, PublicResponse } from './pb/round.ts';
import { deltaOf, encodeState, makeState, mergePrototypes, type GlobalState } from './state.ts';
import type { LocalContribution, ProtocolSnapshot, RoundContext, RoundOptions, RoundOutcome, RoundProtocol } from './types.ts';

export const MIX_TOPIC = 'mix';
export const PUBLIC_METHOD = 'mix.public';
/** A peer's averaging weight is its announced sample count, capped at this multiple of the median count. */
export const SAMPLE_WEIGHT_CAP = 4;

interface Replica {
  round: number;
  tensors: TensorMap;
  /** Sample count the peer announced with its latest message. */
  samples: number;
}

export class GossipProtocol implements RoundProtocol {
  readonly name = 'gossip' as const;
  readonly topics = [MIX_TOPIC] as const;
  private readonly ctx: RoundContext;
  private readonly opts: RoundOptions;
  private local: GlobalState;
  private pub: Replica;
  private readonly initial: TensorMap;
  private readonly replicas = new Map<string, Replica>();
  private readonly peerPrototypes = new Map<string, PrototypeTable[]>();
  private readonly pendingResync = new Set<string>();
  private readonly events = new EventEmitter();
  private readonly rng: Rng;
  private running = false;
  private readonly down = new RoundBytes();
  private myPrototypes: PrototypeTable[] = [];
  /** The model the round's local training started from (trainingStart). */
  private trainStart: TensorMap | null = null;
  /** The averaged model at the previous round's training start (gossip momentum). */
  private prevStart: { round: number; tensors: TensorMap } | null = null;

  constructor(ctx: RoundContext, opts: RoundOptions, initial: GlobalState, restore?: ProtocolSnapshot) {
    this.ctx = ctx;
    this.opts = opts;
    this.initial = initial.tensors;
    this.local = restore?.state ?? initial;
    // samples 0 = not known before this node's first exchange: it weighs as the median.
    this.pub = restore?.publicModel ? { round: restore.publicModel.round, tensors: restore.publicModel.tensors, samples: 0 } : { round: 0, tensors: cloneMap(initial.tensors), samples: 0 };
    this.rng = new Rng(ctx.seed ^ 0x90551);
    this.events.setMaxListeners(64);
  }

  get round(): number {
    return this.local.version;
  }

  /**
   * Local training starts from the node's estimate of the network average (`model()`), not from its own
   * CHOCO iterate x_i: gradients are taken at the consensus point, as in FedAvg, instead of at a model that has
   * drifted towards the node's own label distribution. The progress made (trained − start) is added to x_i in
   * `exchange`, so the compressed messages carry it with error feedback exactly as before.
   */
  trainingStart(): TensorMap {
    const m = this.model();
    this.trainStart = m;
    const prev = this.prevStart;
    this.prevStart = { round: this.pub.round, tensors: m };
    const beta = this.opts.gossipMomentum ?? 0;
    // Heavy ball: train from m_t + β·(m_t − m_{t−1}); the progress sent is measured from m_t, so it carries the
    // extrapolation. Only across consecutive rounds (not after a restart or a skipped round).
    if (!(beta > 0) || !prev || prev.round + 1 !== this.pub.round) return m;
    const y: TensorMap = new Map();
    for (const [k, v] of m) {
      const p = prev.tensors.get(k);
      if (!p || p.length !== v.length) return m;
      const o = new Float32Array(v.length);
      for (let i = 0; i < v.length; i++) o[i] = v[i] + beta * (v[i] - p[i]);
      y.set(k, o);
    }
    return y;
  }

  /**
   * The model this node evaluates, serves and trains from: the sample-weighted average of the public models it
   * holds (its own and its fresh replicas), i.e. its estimate of the network average.
   */
  model(): TensorMap {
    const fresh = this.freshReplicas();
    if (fresh.length === 0) return this.local.tensors;
    const held = [this.pub, ...fresh.map(([, r]) => r)];
    return weightedMean(held, averagingWeights(held.map((r) => r.samples)), this.ctx.manifest.tensors);
  }

  /** Replicas of live members at most two rounds behind this node's public model, with their peer ids. */
  private freshReplicas(): [string, Replica][] {
    const members = this.ctx.members();
    return [...this.replicas.entries()].filter(([p, r]) => p !== this.ctx.selfId && r.round >= this.pub.round - 2 && members.includes(p));
  }

  prototypes(): PrototypeTable[] {
    return mergePrototypes([this.myPrototypes, ...this.peerPrototypes.values()]);
  }

  snapshot(): ProtocolSnapshot {
    return { protocol: 'gossip', state: this.local, residual: new Map(), publicModel: { round: this.pub.round, tensors: this.pub.tensors } };
  }

  async start(): Promise<void> {
    this.running = true;
    this.ctx.mesh.subscribe(MIX_TOPIC, (p, m) => this.onMix(p, m), { validator: (p, m) => this.validateMix(p, m) });
    this.ctx.mesh.handleRequest(PUBLIC_METHOD, (body) => this.servePublic(body));
  }

  async stop(): Promise<void> {
    this.running = false;
    this.events.emit('change');
    try {
      this.ctx.mesh.unsubscribe(MIX_TOPIC);
    } catch {
      // mesh already stopped
    }
  }

  private decodeMix(payload: Uint8Array, meta: MessageMeta): { round: number; update: ModelUpdate } | RefusalReason {
    let msg: MixUpdate;
    try {
      msg = MixUpdate.decode(payload);
    } catch {
      return RefusalReason.MALFORMED;
    }
    if (msg.version !== ROUND_WIRE_VERSION) return RefusalReason.UNSUPPORTED_VERSION;
    const round = Number(msg.round);
    if (!Number.isSafeInteger(round) || round < 1) return RefusalReason.INVALID_FIELD;
    let u: ModelUpdate;
    try {
      u = decodeUpdate(msg.update, this.ctx.manifest);
    } catch (err) {
      return err instanceof UpdateError ? RefusalReason.INVALID_FIELD : RefusalReason.MALFORMED;
    }
    if (u.federation !== this.ctx.federation || u.round !== round) return RefusalReason.INVALID_FIELD;
    if (u.sender !== meta.from.toString()) return RefusalReason.PEER_MISMATCH;
    return { round, update: u };
  }

  private validateMix(payload: Uint8Array, meta: MessageMeta): RefusalReason | undefined {
    const m = this.decodeMix(payload, meta);
    return typeof m === 'number' ? m : undefined;
  }

  private onMix(payload: Uint8Array, meta: MessageMeta): void {
    const m = this.decodeMix(payload, meta);
    if (typeof m === 'number') return;
    const sender = m.update.sender;
    if (sender === this.ctx.selfId) return;
    this.down.add(m.round, payload.byteLength);
    this.peerPrototypes.set(sender, m.update.prototypes);
    let rep = this.replicas.get(sender);
    if (!rep && m.round === 1) this.replicas.set(sender, (rep = { round: 0, tensors: cloneMap(this.initial), samples: m.update.sampleCount }));
    if (rep && m.round === rep.round + 1) {
      addInto(rep.tensors, m.update.deltas);
      rep.round = m.round;
      rep.samples = m.update.sampleCount;
    } else if (!rep || m.round > rep.round + 1 || m.round <= rep.round) {
      // A gap (lost message), a restart of the sender, or a replica we never had: pull its public model.
      void this.resync(sender);
    }
    this.events.emit('change');
  }

  private async resync(peer: string): Promise<void> {
    if (this.pendingResync.has(peer) || !this.running) return;
    this.pendingResync.add(peer);
    try {
      const res = PublicResponse.decode(await this.ctx.mesh.request(peer, PUBLIC_METHOD, PublicRequest.encode({ version: ROUND_WIRE_VERSION }), { timeoutMs: 15_000 }));
      if (res.version !== ROUND_WIRE_VERSION) return;
      const u = decodeUpdate(res.state, this.ctx.manifest);
      if (u.sender !== peer || u.federation !== this.ctx.federation) return;
      for (const s of this.ctx.manifest.tensors) if (!u.deltas.has(s.name)) return;
      this.down.add(this.pub.round, res.state.byteLength);
      this.replicas.set(peer, { round: Number(res.round), tensors: u.deltas, samples: u.sampleCount });
      this.ctx.logger.debug({ peer, round: Number(res.round) }, 'resynchronized replica');
    } catch (err) {
      this.ctx.logger.debug({ peer, err: (err as Error).message }, 'replica resync failed');
    } finally {
      this.pendingResync.delete(peer);
      this.events.emit('change');
    }
  }

  private servePublic(body: Uint8Array): Uint8Array {
    const req = decodeRequest(PublicRequest, body, 'PublicRequest');
    const st = makeState(this.pub.round, this.pub.tensors, [], this.ctx.manifest);
    return PublicResponse.encode({ version: ROUND_WIRE_VERSION, round: BigInt(this.pub.round), state: encodeState(st, this.ctx.manifest, this.ctx.federation, this.ctx.selfId, this.ctx.loraRank, Math.max(1, this.pub.samples)) });
  }

  async exchange(local: LocalContribution): Promise<RoundOutcome> {
    if (!this.running) throw new RoundStoppedError();
    const round = this.pub.round + 1;
    this.myPrototypes = local.prototypes;
    this.pub.samples = local.sampleCount;
    // x_i += local progress (trained − start); q = C(x_i − x_hat_i); x_hat_i += q (what every replica of us adds).
    const x = this.trainStart ? addDelta(this.local.tensors, deltaOf(local.tensors, this.trainStart)) : local.tensors;
    this.trainStart = null;
    const diff = deltaOf(x, this.pub.tensors);
    const c = this.opts.compression;
    const u: ModelUpdate = {
      federation: this.ctx.federation, round, baseVersion: round - 1, sender: this.ctx.selfId, sampleCount: local.sampleCount,
      loraRank: this.ctx.loraRank, deltas: diff, prototypes: local.prototypes,
    };
    const enc = encodeUpdate(u, this.ctx.manifest, { topk: c.topk < 1 ? { fraction: c.topk, scope: c.topkScope ?? 'global' } : undefined, bits: c.bits, brotli: c.brotli, seed: this.rng.nextU32(), prototypeBits: 32 });
    addInto(this.pub.tensors, enc.reconstruction);
    this.pub.round = round;
    const payload = MixUpdate.encode({ version: ROUND_WIRE_VERSION, round: BigInt(round), update: enc.bytes });
    try {
      await this.ctx.mesh.publish(MIX_TOPIC, payload);
    } catch (err) {
      this.ctx.logger.warn({ err: (err as Error).message }, 'publishing the mix update failed; peers will resync');
    }
    const bytesUp = payload.byteLength;

    // Wait (bounded) for the other live members' round-`round` messages; halfway through, pull the public
    // model of any peer still behind (its message may have been lost).
    const start = Date.now();
    const deadline = start + this.opts.roundTimeoutMs;
    let pulled = false;
    for (;;) {
      if (!this.running) throw new RoundStoppedError();
      const peers = this.ctx.members().filter((p) => p !== this.ctx.selfId);
      const lagging = peers.filter((p) => (this.replicas.get(p)?.round ?? -1) < round);
      if (lagging.length === 0 || Date.now() >= deadline) break;
      if (!pulled && Date.now() >= start + this.opts.roundTimeoutMs / 2) {
        pulled = true;
        for (const p of lagging) void this.resync(p);
      }
      await nextChange(this.events, 100);
    }

    // Consensus step towards the same weighted average model() serves.
    const fresh = this.freshReplicas();
    const held = [this.pub, ...fresh.map(([, r]) => r)];
    const w = averagingWeights(held.map((r) => r.samples));
    const mean = weightedMean(held, w, this.ctx.manifest.tensors);
    const gamma = this.opts.gossipGamma;
    const next: TensorMap = new Map();
    let dist = 0;
    let count = 0;
    for (const spec of this.ctx.manifest.tensors) {
      const xi = x.get(spec.name)!;
      const m = mean.get(spec.name)!;
      const ts = held.map((r) => r.tensors.get(spec.name)!);
      const out = new Float32Array(xi.length);
      for (let i = 0; i < xi.length; i++) {
        out[i] = xi[i] + gamma * (m[i] - ts[0][i]);
        // consensus distance: weighted spread of the public models around their average
        for (let j = 0; j < ts.length; j++) dist += w[j] * (ts[j][i] - m[i]) ** 2;
        count++;
      }
      next.set(spec.name, out);
    }
    this.local = makeState(round, next, this.prototypes(), this.ctx.manifest);
    return { round, via: 'mixed', contributors: fresh.map(([p]) => p), bytesUp, updateBytes: bytesUp, bytesDown: this.down.take(round), consensusDistance: dist / Math.max(1, count) };
  }


}

/**
 * Normalized averaging weights from announced sample counts: each count is capped at SAMPLE_WEIGHT_CAP times the
 * median (so no peer can claim the whole average); non-positive or non-finite counts weigh as the median.
 */
export function averagingWeights(samples: readonly number[]): number[] {
  const ok = samples.filter((s) => Number.isFinite(s) && s > 0).sort((a, b) => a - b);
  const median = ok.length ? ok[ok.length >> 1] : 1;
  const capped = samples.map((s) => (Number.isFinite(s) && s > 0 ? Math.min(s, SAMPLE_WEIGHT_CAP * median) : median));
  const total = capped.reduce((a, b) => a + b, 0);
  return capped.map((c) => c / total);
}

/** Σ_j w_j · tensors_j per manifest tensor, accumulated in float64. */
function weightedMean(models: readonly Replica[], w: readonly number[], specs: readonly { name: string; shape: readonly number[] }[]): TensorMap {
  const out: TensorMap = new Map();
  for (const spec of specs) {
    const acc = new Float64Array(spec.shape.reduce((a, b) => a * b, 1));
    models.forEach((r, j) => {
      const t = r.tensors.get(spec.name)!;
      for (let i = 0; i < acc.length; i++) acc[i] += w[j] * t[i];
    });
    out.set(spec.name, Float32Array.from(acc));
  }
  return out;
}

function cloneMap(m: TensorMap): TensorMap {
  return new Map([...m].map(([k, v]) => [k, Float32Array.from(v)]));
}

function addDelta(base: TensorMap, delta: TensorMap): TensorMap {
  const out: TensorMap = new Map();
  for (const [k, b] of base) {
    const d = delta.get(k);
    const t = Float32Array.from(b);
    if (d) for (let i = 0; i < t.length; i++) t[i] += d[i];
    out.set(k, t);
  }
  return out;
}

function addInto(dst: TensorMap, delta: TensorMap): void {
  for (const [k, d] of delta) {
    const t = dst.get(k);
    if (!t) continue;
    for (let i = 0; i < t.length; i++) t[i] += d[i];
  }
}

