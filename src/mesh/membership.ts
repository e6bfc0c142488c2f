import { EventEmitter } from 'node:events';
import { multiaddr } from '@multiformats/multiaddr';
import type { Logger } from '../util/log.ts';
import { Heartbeat, type Capabilities as PbCapabilities } from './pb/membership.ts';
import { RefusalReason } from './errors.ts';
import type { Mesh, MessageMeta } from './mesh.ts';
import {
  HEARTBEAT_FULL_EVERY,
  LEAVE_FLUSH_MS,
  MAX_ADDR_CHARS,
  MAX_CLOCK_SKEW_MS,
  MAX_FEATURES,
  MAX_HEARTBEAT_ADDRS,
  MAX_HEARTBEAT_BYTES,
  MAX_MEMBERS,
  MAX_SHORT_STRING_CHARS,
  MESH_PROTOCOL_VERSION,
  WIRE_VERSION,
} from './constants.ts';

/** What a node advertises about itself in every heartbeat. */
export interface Capabilities {
  /** Execution device, e.g. "cpu" or "cuda". */
  device: string;
  /** Training throughput, samples per second. */
  trainThroughput: number;
  /** Deepest early-exit head this node can run (0 = none). */
  maxExitDepth: number;
  /** Local training samples. */
  datasetSize: number;
  /** LoRA rank this node trains (0 = none). */
  loraRank: number;
  /** Feature flags, e.g. "train", "infer". */
  features: string[];
}

/** Default capabilities: a CPU node with nothing to offer yet. */
/** Capability feature that carries the federation model digest (`model:<hex>`). */
export const MODEL_FEATURE_PREFIX = 'model:';

export const DEFAULT_CAPABILITIES: Capabilities = {
  device: 'cpu',
  trainThroughput: 0,
  maxExitDepth: 0,
  datasetSize: 0,
  loraRank: 0,
  features: [],
};

/** One entry of the membership view. */
export interface Member {
  peerId: string;
  /** Listen multiaddrs, each with `/p2p/<peerId>`. */
  addrs: string[];
  protocolVersion: string;
  capabilities: Capabilities;
  /** Last heartbeat sequence number seen. */
  seq: bigint;
  /** Author timestamp of the last heartbeat (ms since epoch). */
  lastHeartbeatMs: number;
  /** Local receive time of the last heartbeat (ms since epoch). */
  lastSeenMs: number;
  /** Local time this member joined the view. */
  joinedMs: number;
}

/** Why a member left the view. */
export type LeaveReason = 'left' | 'expired' | 'refused';

/** Options of the membership service (all required; Mesh fills defaults). */
export interface MembershipOptions {
  intervalMs: number;
  expiryMs: number;
  capabilities: Partial<Capabilities>;
  topic: string;
  /** Whether heartbeats are relayed (Mesh `relayHeartbeats`). */
  relay: boolean;
  logger: Logger;
}

/**
 * The live membership view of a federation. Every node publishes a signed Heartbeat (protocols/membership.md)
 * every `intervalMs`; receivers validate it (signer = claimed peer, fresh timestamp, increasing seq, bounded
 * fields) and keep a view with expiry. Events: `join` (Member), `leave` (Member, LeaveReason), `update` (Member).
 */
export class Membership extends EventEmitter {
  private readonly view = new Map<string, Member>();
  private readonly lastSeq = new Map<string, bigint>();
  private readonly opts: MembershipOptions;
  private capabilities: Capabilities;
  private modelDigest: string | undefined;
  /** Peers already told about (once each) for a model mismatch. */
  private readonly mismatchLogged = new Set<string>();
  private seq: bigint;
  /** Light heartbeats sent since the last full one; the next is full when this reaches HEARTBEAT_FULL_EVERY - 1. */
  private lightSinceFull = HEARTBEAT_FULL_EVERY;
  /** The next heartbeat is full (capabilities changed, a new connection, a new member). */
  private fullPending = true;
  private readonly onConnect = (): void => {
    this.fullPending = true;
  };
  private timer: NodeJS.Timeout | undefined;
  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    private readonly mesh: Mesh,
    opts: MembershipOptions,
  ) {
    super();
    if (!(opts.intervalMs > 0) || !(opts.expiryMs > opts.intervalMs)) {
      throw new RangeError('membership needs intervalMs > 0 and expiryMs > intervalMs');
    }
    this.opts = opts;
    this.capabilities = { ...DEFAULT_CAPABILITIES, ...opts.capabilities };
    // Seeded from the clock so a restarted node's sequence numbers stay above those it sent before.
    this.seq = BigInt(Date.now()) * 1000n;
  }

  /** Heartbeat interval in ms. */
  get intervalMs(): number {
    return this.opts.intervalMs;
  }

  /** Expiry in ms. */
  get expiryMs(): number {
    return this.opts.expiryMs;
  }

  /** Subscribe to the membership topic and start heartbeating. */
  async start(): Promise<void> {
    this.mesh.subscribe(this.opts.topic, (payload, meta) => this.apply(payload, meta), {
      validator: (payload, meta) => this.validate(payload, meta),
      maxPayloadBytes: MAX_HEARTBEAT_BYTES,
      relay: this.opts.relay,
    });
    this.timer = setInterval(() => void this.beat(false), this.opts.intervalMs);
    this.timer.unref();
    this.sweeper = setInterval(() => this.sweep(), Math.max(10, Math.floor(this.opts.intervalMs / 2)));
    this.sweeper.unref();
    // A new neighbour, or a member new to the view, may not know this node yet: the next heartbeat is full.
    this.mesh.on('peer:connect', this.onConnect);
    this.on('join', this.onConnect);
    await this.beat(false);
  }

  /** Send a final `leaving` heartbeat (best effort) and stop. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    clearInterval(this.sweeper);
    this.timer = undefined;
    this.sweeper = undefined;
    this.mesh.off('peer:connect', this.onConnect);
    this.off('join', this.onConnect);
    if (this.mesh.connectedPeers().length > 0) {
      await this.beat(true);
      // Let the goodbye leave the send buffers before the connections close (bounded).
      await new Promise((r) => setTimeout(r, LEAVE_FLUSH_MS));
    }
    this.view.clear();
  }

  /**
   * Declare the federation model this node trains (backbone, input spec, label set, update shape; see
   * federationModelDigest). It is advertised as the feature `model:<digest>`, and heartbeats of peers that
   * advertise another digest are refused (MODEL_MISMATCH): they never join this node's view. Peers that
   * advertise none (a node that only routes or serves) are accepted.
   */
  setModelDigest(digest: string): void {
    if (!/^[0-9a-f]{8,64}$/.test(digest)) throw new RangeError('model digest must be 8..64 lowercase hex characters');
    this.modelDigest = digest;
    const features = this.capabilities.features.filter((f) => !f.startsWith(MODEL_FEATURE_PREFIX));
    this.capabilities = { ...this.capabilities, features: [...features, MODEL_FEATURE_PREFIX + digest].slice(-MAX_FEATURES) };
    this.fullPending = true;
    // Peers that joined before the digest was known and advertise another one leave the view now.
    for (const [id, m] of this.view) {
      const theirs = m.capabilities.features.find((f) => f.startsWith(MODEL_FEATURE_PREFIX))?.slice(MODEL_FEATURE_PREFIX.length);
      if (theirs !== undefined && theirs !== digest) {
        this.opts.logger.warn({ peer: id, theirs, ours: digest }, 'refusing a peer that trains another model: every member must use the same --backbone, --classes, --image-size/--channels and --lora-targets');
        this.mismatchLogged.add(id);
        this.dropRefused(id);
      }
    }
  }

  /** Remove a member refused for its model from the view (a no-op when it is not in it). */
  private dropRefused(id: string): void {
    const m = this.view.get(id);
    if (m === undefined) return;
    this.view.delete(id);
    this.emit('leave', m, 'refused' satisfies LeaveReason);
  }

  /** Replace advertised capabilities (sent with the next heartbeat). */
  setCapabilities(c: Partial<Capabilities>): void {
    this.capabilities = { ...this.capabilities, ...c };
    this.fullPending = true;
  }

  /** Current advertised capabilities. */
  getCapabilities(): Capabilities {
    return { ...this.capabilities, features: [...this.capabilities.features] };
  }

  /** Remote members currently in the view (never includes this node). */
  members(): Member[] {
    return [...this.view.values()];
  }

  /** PeerIds in the view, sorted; with `includeSelf`, this node's id too. */
  memberIds(includeSelf = false): string[] {
    const ids = [...this.view.keys()];
    if (includeSelf) ids.push(this.mesh.peerId.toString());
    return ids.sort();
  }

  /** A member by PeerId. */
  get(peerId: string): Member | undefined {
    return this.view.get(peerId);
  }

  private encodeHeartbeat(leaving: boolean): Uint8Array {
    this.seq += 1n;
    const full = leaving || this.fullPending || this.lightSinceFull >= HEARTBEAT_FULL_EVERY - 1;
    if (!full) {
      this.lightSinceFull++;
      return Heartbeat.encode({ version: WIRE_VERSION, peerId: this.mesh.peerId.toMultihash().bytes, seq: this.seq, timestampMs: BigInt(Date.now()), addrs: [], protocolVersion: '', leaving: false });
    }
    this.fullPending = false;
    this.lightSinceFull = 0;
    const c = this.capabilities;
    const pbCaps: PbCapabilities = {
      device: c.device,
      trainThroughput: c.trainThroughput,
      maxExitDepth: c.maxExitDepth,
      datasetSize: BigInt(c.datasetSize),
      loraRank: c.loraRank,
      features: c.features,
    };
    const addrs = this.mesh.libp2p
      .getMultiaddrs()
      .map((m) => m.decapsulateCode(421).toString())
      .slice(0, MAX_HEARTBEAT_ADDRS);
    return Heartbeat.encode({
      version: WIRE_VERSION,
      peerId: this.mesh.peerId.toMultihash().bytes,
      seq: this.seq,
      timestampMs: BigInt(Date.now()),
      addrs,
      protocolVersion: MESH_PROTOCOL_VERSION,
      capabilities: pbCaps,
      leaving,
    });
  }

  private async beat(leaving: boolean): Promise<void> {
    if (!this.mesh.isRunning) return;
    try {
      await this.mesh.publish(this.opts.topic, this.encodeHeartbeat(leaving));
    } catch (err) {
      this.opts.logger.debug({ err: String(err) }, 'heartbeat publish failed');
    }
  }

  /** Full validation of a heartbeat; records its seq when accepted. */
  private validate(payload: Uint8Array, meta: MessageMeta): RefusalReason | undefined {
    if (payload.byteLength > MAX_HEARTBEAT_BYTES) return RefusalReason.OVERSIZED;
    let hb: Heartbeat;
    try {
      hb = Heartbeat.decode(payload, { limits: { addrs: MAX_HEARTBEAT_ADDRS, capabilities: { features: MAX_FEATURES } } });
    } catch {
      return RefusalReason.MALFORMED;
    }
    if (hb.version !== WIRE_VERSION) return RefusalReason.UNSUPPORTED_VERSION;
    if (hb.peerId.byteLength === 0 || hb.peerId.byteLength > 128) return RefusalReason.INVALID_FIELD;
    if (!Buffer.from(hb.peerId).equals(Buffer.from(meta.from.toMultihash().bytes))) return RefusalReason.PEER_MISMATCH;
    const from = meta.from.toString();
    const now = Date.now();
    const ts = Number(hb.timestampMs);
    if (ts > now + MAX_CLOCK_SKEW_MS || now - ts > this.opts.expiryMs) return RefusalReason.STALE;
    const light = hb.capabilities === undefined;
    if (light && (hb.addrs.length > 0 || hb.protocolVersion !== '' || hb.leaving)) return RefusalReason.INVALID_FIELD;
    if ((!light && !validCapabilities(hb.capabilities)) || hb.protocolVersion.length > MAX_SHORT_STRING_CHARS) {
      return RefusalReason.INVALID_FIELD;
    }
    if (!light && this.modelDigest !== undefined) {
      const theirs = hb.capabilities!.features.find((f) => f.startsWith(MODEL_FEATURE_PREFIX))?.slice(MODEL_FEATURE_PREFIX.length);
      if (theirs !== undefined && theirs !== this.modelDigest) {
        if (!this.mismatchLogged.has(from) && this.mismatchLogged.size < MAX_MEMBERS) {
          this.mismatchLogged.add(from);
          this.opts.logger.warn({ peer: from, theirs, ours: this.modelDigest },
            'refusing a peer that trains another model (its backbone, input size/channels, label set or LoRA targets differ): every member must use the same --backbone, --classes, --image-size/--channels and --lora-targets');
        }
        // A member that joined before it declared its digest leaves the view now; otherwise its light
        // heartbeats (which carry no capabilities) would keep it alive.
        this.dropRefused(from);
        return RefusalReason.MODEL_MISMATCH;
      }
    }
    for (const a of hb.addrs) {
      if (a.length > MAX_ADDR_CHARS) return RefusalReason.INVALID_FIELD;
      try {
        multiaddr(a);
      } catch {
        return RefusalReason.INVALID_FIELD;
      }
    }
    const last = this.lastSeq.get(from);
    if (last !== undefined && hb.seq <= last) return RefusalReason.REPLAYED;
    if (!this.view.has(from) && this.view.size >= MAX_MEMBERS && !hb.leaving) return RefusalReason.CAPACITY;
    if (this.lastSeq.size >= MAX_MEMBERS * 4) this.lastSeq.clear();
    this.lastSeq.set(from, hb.seq);
    return undefined;
  }

  private apply(payload: Uint8Array, meta: MessageMeta): void {
    const hb = Heartbeat.decode(payload);
    const id = meta.from.toString();
    const prev = this.view.get(id);
    if (hb.leaving) {
      if (prev !== undefined) {
        this.view.delete(id);
        this.emit('leave', prev, 'left' satisfies LeaveReason);
      }
      return;
    }
    const now = Date.now();
    if (hb.capabilities === undefined) {
      // Light heartbeat: liveness of a known member; an unknown sender waits for its next full heartbeat.
      if (prev !== undefined) {
        const member: Member = { ...prev, seq: hb.seq, lastHeartbeatMs: Number(hb.timestampMs), lastSeenMs: now };
        this.view.set(id, member);
        this.emit('update', member);
      }
      return;
    }
    const caps = hb.capabilities;
    const member: Member = {
      peerId: id,
      addrs: hb.addrs.map((a) => `${a}/p2p/${id}`),
      protocolVersion: hb.protocolVersion,
      capabilities: {
        device: caps.device,
        trainThroughput: caps.trainThroughput,
        maxExitDepth: caps.maxExitDepth,
        datasetSize: Number(caps.datasetSize),
        loraRank: caps.loraRank,
        features: [...caps.features],
      },
      seq: hb.seq,
      lastHeartbeatMs: Number(hb.timestampMs),
      lastSeenMs: now,
      joinedMs: prev?.joinedMs ?? now,
    };
    this.view.set(id, member);
    if (prev === undefined) {
      void this.mesh.libp2p.peerStore
        .merge(meta.from, { multiaddrs: hb.addrs.map((a) => multiaddr(a)) })
        .catch(() => {});
      this.emit('join', member);
    } else {
      this.emit('update', member);
    }
  }

  private sweep(): void {
    const now = Date.now();
    for (const [id, m] of this.view) {
      if (now - m.lastSeenMs > this.opts.expiryMs) {
        this.view.delete(id);
        this.emit('leave', m, 'expired' satisfies LeaveReason);
      }
    }
  }
}

function validCapabilities(c: PbCapabilities | undefined): c is PbCapabilities {
  if (c === undefined) return false;
  if (c.device.length > MAX_SHORT_STRING_CHARS) return false;
  if (!Number.isFinite(c.trainThroughput) || c.trainThroughput < 0 || c.trainThroughput > 1e12) return false;
  if (c.maxExitDepth > 1024 || c.loraRank > 4096) return false;
  if (c.datasetSize > BigInt(Number.MAX_SAFE_INTEGER)) return false;
  if (c.features.length > MAX_FEATURES || c.features.some((f) => f.length > MAX_SHORT_STRING_CHARS)) return false;
  return true;
}
