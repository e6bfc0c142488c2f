import { EventEmitter } from 'node:events';
import { createLibp2p } from 'libp2p';
import { tcp } from '@libp2p/tcp';
import { memory } from '@libp2p/memory';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { identify } from '@libp2p/identify';
import { gossipsub } from '@chainsafe/libp2p-gossipsub';
import { preSharedKey } from '@libp2p/pnet';
import { peerIdFromString } from '@libp2p/peer-id';
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr';
import { TopicValidatorResult } from '@libp2p/interface';
import type { Libp2p, Message, PeerId, PrivateKey, PubSub, ConnectionGater } from '@libp2p/interface';
import type { Identify } from '@libp2p/identify';
import type { GossipSub, GossipsubEvents } from '@chainsafe/libp2p-gossipsub';
import { createTopicScoreParams } from '@chainsafe/libp2p-gossipsub/score';
import type { Registry } from 'prom-client';
import { prometheusMetrics } from '@libp2p/prometheus-metrics';
import type { Logger } from '../util/log.ts';
import { classifyDialError, CLOSED_BY_PEER, QUICK_CLOSE_MS, type DialDiagnosis } from './dial-errors.ts';
import { DiscoveryDialer, discoveryServices, type DiscoveryOptions } from './discovery.ts';
import { silentLogger } from '../util/log.ts';
import { Envelope } from './pb/envelope.ts';
import { RefusalError, RefusalReason, MeshError, isBenign } from './errors.ts';
import { BlobStore, sha256 } from './blob-store.ts';
import { CountingProtector, type WireCounters } from './wire-counter.ts';
import { RequestResponseProtocol, type RequestHandler, type RequestOptions, type RequestResponseLimits } from './request-response.ts';
import { Membership, type Capabilities } from './membership.ts';
import { startGossipStreamRepair } from './gossip-repair.ts';
import { ephemeralIdentity, type Identity } from './identity.ts';
import {
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  DEFAULT_MEMBER_EXPIRY_MS,
  DEFAULT_DIAL_TIMEOUT_MS,
  MAX_INCOMING_PENDING_CONNECTIONS,
  DEFAULT_STREAM_NEGOTIATION_TIMEOUT_MS,
  DEFAULT_LISTEN,
  GOSSIP_RPC_LIMITS,
  TOPIC_INVALID_MESSAGE_DECAY,
  TOPIC_INVALID_MESSAGE_WEIGHT,
  MAX_CONCURRENT_BLOB_FETCHES,
  MAX_QUEUED_BLOB_FETCHES,
  MAX_BLOB_BYTES,
  MAX_CLOCK_SKEW_MS,
  MAX_ENVELOPE_BYTES,
  MAX_GOSSIP_RPC_BYTES,
  MEMBERSHIP_TOPIC,
  NAME_RE,
  REDIAL_BASE_MS,
  REDIAL_FACTOR,
  REDIAL_MAX_MS,
  STREAM_CUTOVER_BYTES,
  MIN_STREAM_CUTOVER_BYTES,
  SYNC_PROTOCOL,
  WIRE_VERSION,
  protocolId,
  topicId,
} from './constants.ts';

/** Options of `createMesh`. Every field has a documented default. */
export interface MeshOptions extends DiscoveryOptions {
  /** Federation name (1..64 chars of [a-zA-Z0-9._-]): namespaces every topic and protocol id. */
  federation: string;
  /** Node identity (default: a fresh ephemeral Ed25519 key). */
  identity?: Identity;
  /**
   * Listen multiaddrs (default `/ip4/127.0.0.1/tcp/0`). TCP and the in-process memory transport are both enabled:
   * `/memory/<name>` addresses connect nodes of one process without sockets (large simulations).
   */
  listen?: string[];
  /** Latency added to every buffer sent over the memory transport (default 0 ms). */
  memoryLatencyMs?: number;
  /** Peers to dial at start and redial with backoff when their connection drops; each must end in `/p2p/<id>`. */
  peers?: string[];
  /** Private-network swarm key (file bytes, see `parseSwarmKey`): peers without the same key cannot connect. */
  swarmKey?: Uint8Array;
  /** When set, only these PeerIds may connect (in or out); everyone else is refused by the connection gater. */
  allow?: string[];
  /**
   * The federation's members (PeerIds; default: `allow`). When set, every gossip message whose signer is not on it
   * is rejected (NOT_ALLOWED), whoever relays it, so the membership view, updates and aggregates hold roster
   * members only; without `allow`, the gater admits only roster members too. Absent with `allow` absent: an open
   * mesh, where any peer that can connect can join and lie (the mesh warns at start).
   */
  roster?: string[];
  /** Membership heartbeat interval (default 2000 ms). */
  heartbeatIntervalMs?: number;
  /** A member not heard from for this long leaves the view (default 10000 ms). */
  memberExpiryMs?: number;
  /** Gossipsub heartbeat (mesh maintenance) interval (default 1000 ms). */
  gossipHeartbeatMs?: number;
  /**
   * Interval of libp2p's connection monitor, which pings every connection on a fresh stream and aborts the connection
   * when a ping times out (default 10000 ms, libp2p's; 0 turns the monitor off). Membership expiry notices dead members
   * either way. In-process simulations turn it off: N meshes in one process ping N·(N-1) connection ends in one burst
   * every interval, and on a busy event loop pings time out and tear down healthy connections (issue 17).
   */
  connectionPingMs?: number;
  /** Capabilities advertised in heartbeats. */
  capabilities?: Partial<Capabilities>;
  /** Redial backoff of configured peers: first delay and cap (defaults 500 ms, 30000 ms). */
  redialBaseMs?: number;
  redialMaxMs?: number;
  /**
   * Gossipsub score weight per squared invalid message (P4) on every fmfl topic (default
   * TOPIC_INVALID_MESSAGE_WEIGHT = -1): a peer sending sustained rejected traffic falls below the graylist
   * threshold (-80) and is ignored.
   */
  invalidMessageWeight?: number;
  /** Deadline of one outbound dial including the connection upgrade, and of an inbound upgrade (default 10000 ms). */
  dialTimeoutMs?: number;
  /**
   * Deadline of one stream's protocol negotiation (multistream-select), inbound and outbound, on every protocol
   * (default DEFAULT_STREAM_NEGOTIATION_TIMEOUT_MS = 10000, libp2p's). In-process simulations raise it: on a loop lagging seconds a negotiation outlives
   * 10 s, and the stream (gossipsub's one outbound stream to a peer among them) is aborted (issue 17).
   */
  streamNegotiationTimeoutMs?: number;
  /**
   * Every this many ms, reopen gossipsub's outbound stream to each connected peer that has none (default 0: never).
   * Gossipsub opens that stream once per connection and gives up when it fails, so a peer whose stream timed out
   * never hears this node's messages or subscriptions until the connection is replaced (issue 17: 64 in-process
   * nodes' membership views stayed at 0..53 of 63). The reopening is gossipsub's own new-connection path.
   */
  gossipStreamRepairMs?: number;
  /**
   * Let the event loop turn at least every this many ms of inbound connection traffic (default 0: off); see
   * CountingProtector in wire-counter.ts. In-process simulations over the memory transport at latency 0 use it.
   */
  loopYieldMs?: number;
  /** Logger (default: silent). */
  logger?: Logger;
  /**
   * Register libp2p's own metrics (@libp2p/prometheus-metrics: libp2p_*, nodejs_*, process_*) in this prom-client
   * registry (default: none, no libp2p metrics). libp2p keeps metric objects per process: run one metered node per
   * process for exact numbers.
   */
  metricsRegistry?: Registry;
}

/** Metadata handed to topic validators and handlers with each payload. */
export interface MessageMeta {
  /** Short topic name (as given to `subscribe`). */
  topic: string;
  /** Author of the message (gossipsub StrictSign signer). */
  from: PeerId;
  /** The neighbour that forwarded it to us. */
  via: PeerId;
  /** Author's timestamp (ms since epoch). */
  timestampMs: number;
  /** Whether the payload was pulled over the sync stream (above STREAM_CUTOVER_BYTES). */
  viaStream: boolean;
}

/**
 * Application validator of a topic: return `undefined` to accept, or a refusal reason. Benign reasons
 * (`isBenign`) drop the message silently (gossipsub Ignore); others reject it (gossipsub Reject, the sender's
 * score drops). Must not throw; a throw counts as APPLICATION.
 */
export type PayloadValidator = (
  payload: Uint8Array,
  meta: MessageMeta,
) => RefusalReason | undefined | Promise<RefusalReason | undefined>;

/** Handler of accepted messages; errors are logged and swallowed. */
export type MessageHandler = (payload: Uint8Array, meta: MessageMeta) => void | Promise<void>;

/** Options of `Mesh.subscribe`. */
export interface SubscribeOptions {
  /** Application validator, run after the envelope checks. */
  validator?: PayloadValidator;
  /** Largest payload accepted on this topic (default and ceiling MAX_BLOB_BYTES). */
  maxPayloadBytes?: number;
  /** Refuse (STALE) messages whose author timestamp is older than this (default: no age bound). */
  maxAgeMs?: number;
  /**
   * Payloads above this many bytes are announced by SHA-256 and pulled once per hop over the sync stream instead of
   * travelling inline through every gossip duplicate (default and ceiling STREAM_CUTOVER_BYTES, floor
   * MIN_STREAM_CUTOVER_BYTES). Part of the topic's contract: every subscriber must use the same value.
   */
  streamCutoverBytes?: number;
}

/** Result of `Mesh.publish`. */
export interface PublishResult {
  /** Number of neighbours the message was sent to directly. */
  recipients: number;
  /** Whether the payload was announced and left to be pulled over streams. */
  viaStream: boolean;
}

/** One refusal of inbound data, as emitted in the `refused` event. */
export interface RefusalEvent {
  reason: RefusalReason;
  /** Topic name or stream protocol id. */
  where: string;
  peer?: string;
}

interface TopicEntry {
  name: string;
  handler: MessageHandler;
  opts: SubscribeOptions;
}

interface Redial {
  addr: Multiaddr;
  peerId: PeerId;
  attempt: number;
  timer?: NodeJS.Timeout;
  /** Dials tried since the last connection. */
  tries: number;
  /** The last dial failure, explained (cleared on connect). */
  last?: DialDiagnosis;
  connectedMs?: number;
}

/** A configured peer as `Mesh.dialStatus` reports it. */
export interface DialState {
  peer: string;
  addr: string;
  connected: boolean;
  /** Dials tried since the last connection. */
  attempts: number;
  /** Likely cause of the last failure, one line; null when none failed yet. */
  cause: string | null;
}

type MeshLibp2p = Libp2p<{ identify: Identify; pubsub: PubSub<GossipsubEvents> }>;

/** Parse and check a `--peers` entry: it must be a multiaddr ending in `/p2p/<PeerId>`. */
export function parsePeerAddr(s: string): { addr: Multiaddr; peerId: PeerId } {
  let addr: Multiaddr;
  try {
    addr = multiaddr(s);
  } catch (err) {
    throw new MeshError('BAD_PEER_ADDR', `"${s}" is not a multiaddr (${(err as Error).message})`, { cause: err });
  }
  const id = addr.getPeerId();
  if (id === null) {
    throw new MeshError('BAD_PEER_ADDR', `"${s}" has no /p2p/<PeerId> suffix: copy the full address the peer printed at start`);
  }
  let peerId: PeerId;
  try {
    peerId = peerIdFromString(id);
  } catch (err) {
    throw new MeshError('BAD_PEER_ADDR', `"${s}" carries an invalid PeerId`, { cause: err });
  }
  return { addr, peerId };
}

/**
 * A running fmfl mesh peer: libp2p (TCP, Noise, Yamux, optional pnet, allowlist gater), gossipsub with
 * StrictSign and per-topic validators, the `/fmfl/<federation>/sync/1.0.0` request/response stream, a
 * membership view from signed heartbeats, and large-payload cutover (gossip announces, streams carry).
 *
 * Built-in sync methods: `blob` (body: SHA-256 → cached large payload), `ping` (echoes the body).
 *
 * Events: `refused` (RefusalEvent), `peer:connect` / `peer:disconnect` (PeerId string).
 */
export class Mesh extends EventEmitter {
  /** The underlying libp2p node (for diagnostics and tests; prefer the Mesh methods). */
  readonly libp2p: MeshLibp2p;
  readonly federation: string;
  readonly peerId: PeerId;
  /** The membership view. */
  readonly membership: Membership;
  /** The sync request/response protocol (`/fmfl/<federation>/sync/1.0.0`). */
  readonly sync: RequestResponseProtocol;
  /** Raw transport bytes sent and received. */
  readonly wire: WireCounters;
  /** Count of refusals of inbound data by reason. */
  readonly refusals = new Map<RefusalReason, number>();
  /** The roster (sorted PeerIds, self included), or undefined for an open mesh. */
  readonly roster: readonly string[] | undefined;
  private readonly rosterSet: Set<string> | undefined;

  private readonly log: Logger;
  private readonly topics = new Map<string, TopicEntry>();
  private readonly payloads = new WeakMap<Message, { payload: Uint8Array; meta: MessageMeta }>();
  private readonly blobs = new BlobStore();
  private readonly protocols: RequestResponseProtocol[] = [];
  private readonly blocked: Set<string>;
  private readonly fetchSlots = new Semaphore(MAX_CONCURRENT_BLOB_FETCHES, MAX_QUEUED_BLOB_FETCHES);
  private readonly allow: Set<string> | undefined;
  private readonly redials = new Map<string, Redial>();
  private readonly redialBaseMs: number;
  private readonly redialMaxMs: number;
  private readonly loggedRefusals = new Set<string>();
  private readonly invalidMessageWeight: number;
  private readonly listenAddrs: string[];
  private running = false;
  private stopping = false;
  private stopGossipRepair?: () => void;
  private readonly gossipRepairMs: number;
  private readonly negotiationMs: number;
  /** Gossipsub outbound streams reopened by `gossipStreamRepairMs` (attempts). */
  readonly gossipRepairs = { attempts: 0 };
  private readonly identityKey: PrivateKey | undefined;
  private readonly privateNetwork: boolean;
  private readonly discovery: DiscoveryDialer;
  /** --mdns or bootstrap peers given: dial permitted peers that discovery finds. */
  private readonly discoveryConfigured: boolean;

  /** Use `createMesh`. */
  constructor(libp2p: MeshLibp2p, opts: MeshOptions, wire: WireCounters, allow: Set<string> | undefined, blocked: Set<string>, identityKey?: PrivateKey, roster?: Set<string>) {
    super();
    this.rosterSet = roster;
    this.roster = roster ? [...roster].sort() : undefined;
    this.libp2p = libp2p;
    this.identityKey = identityKey;
    this.privateNetwork = opts.swarmKey !== undefined;
    this.gossipRepairMs = opts.gossipStreamRepairMs ?? 0;
    this.negotiationMs = opts.streamNegotiationTimeoutMs ?? DEFAULT_STREAM_NEGOTIATION_TIMEOUT_MS;
    this.discoveryConfigured = opts.mdns === true || (opts.bootstrap?.length ?? 0) > 0;
    this.discovery = new DiscoveryDialer(libp2p, {
      permitted: (id) => this.isPermitted(id),
      managed: (id) => this.redials.has(id),
      privateNetwork: this.privateNetwork,
      log: opts.logger ?? silentLogger(),
      onFailure: (f) => this.emit('discovery:dial-failed', f),
    });
    this.federation = opts.federation;
    this.peerId = libp2p.peerId;
    this.wire = wire;
    this.allow = allow;
    this.blocked = blocked;
    this.log = opts.logger ?? silentLogger();
    this.redialBaseMs = opts.redialBaseMs ?? REDIAL_BASE_MS;
    this.redialMaxMs = opts.redialMaxMs ?? REDIAL_MAX_MS;
    this.invalidMessageWeight = opts.invalidMessageWeight ?? TOPIC_INVALID_MESSAGE_WEIGHT;
    this.listenAddrs = opts.listen ?? [DEFAULT_LISTEN];
    // Bootstrap peers (src/mesh/discovery.ts) are redialled with backoff like configured ones.
    for (const p of [...(opts.peers ?? []), ...(opts.bootstrap ?? [])]) {
      const { addr, peerId } = parsePeerAddr(p);
      if (!peerId.equals(this.peerId)) this.redials.set(peerId.toString(), { addr, peerId, attempt: 0, tries: 0 });
    }
    this.sync = this.createProtocol(SYNC_PROTOCOL);
    this.sync.handle('blob', (body) => {
      const data = this.blobs.get(body);
      if (data === undefined) throw new RefusalError(RefusalReason.UNAVAILABLE, 'blob not cached here');
      return data;
    });
    this.sync.handle('ping', (body) => body);
    this.membership = new Membership(this, {
      intervalMs: opts.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS,
      expiryMs: opts.memberExpiryMs ?? DEFAULT_MEMBER_EXPIRY_MS,
      capabilities: opts.capabilities ?? {},
      topic: MEMBERSHIP_TOPIC,
      logger: this.log,
    });
  }

  private get pubsub(): PubSub<GossipsubEvents> {
    return this.libp2p.services.pubsub;
  }

  /** Start libp2p, the stream protocols and membership, then dial the configured peers. */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    this.pubsub.addEventListener('gossipsub:message', this.onGossip);
    this.libp2p.addEventListener('peer:connect', this.onConnect);
    this.libp2p.addEventListener('peer:disconnect', this.onDisconnect);
    try {
      // Only a node configured for discovery dials what it discovers (libp2p also emits peer:discovery for peers
      // learnt through identify, which must not turn a chosen topology into a full mesh).
      if (this.discoveryConfigured) this.discovery.start();
      await this.libp2p.start();
      for (const p of this.protocols) await p.start();
      await this.membership.start();
      if (this.gossipRepairMs > 0) this.stopGossipRepair = startGossipStreamRepair(this.libp2p, this.pubsub, this.gossipRepairMs, this.negotiationMs, this.gossipRepairs);
    } catch (err) {
      this.running = false;
      try {
        await this.libp2p.stop();
      } catch {
        // already failed; the original error matters
      }
      const listen = this.listenAddrs.join(', ');
      const text = String((err as Error)?.message ?? err);
      const why = text.includes('EADDRINUSE') ? 'address already in use' : text.split('\n')[0];
      throw new MeshError(
        'START',
        `could not start the mesh node on ${listen}: ${why}; pick another --listen port (or port 0 for a random one)`,
        { cause: err },
      );
    }
    for (const r of this.redials.values()) void this.dialConfigured(r);
    if (this.roster === undefined) {
      this.log.warn(
        { federation: this.federation },
        'no roster (--allow or --roster): any peer that can connect can join this federation, vote in its quorum and lie; ' +
          'give every member the same roster for a real federation',
      );
    }
  }

  /** Whether `peerId` is a federation member: on the roster, or anyone when there is no roster. */
  onRoster(peerId: string): boolean {
    return this.rosterSet === undefined || this.rosterSet.has(peerId);
  }

  /**
   * Stop: announce departure (best effort), close every connection, stop libp2p. Idempotent; never throws on
   * network errors.
   */
  async stop(): Promise<void> {
    if (!this.running || this.stopping) return;
    this.stopping = true;
    for (const r of this.redials.values()) clearTimeout(r.timer);
    this.stopGossipRepair?.();
    // Still running here, so the goodbye heartbeat can be published.
    await this.membership.stop().catch((err: unknown) => this.log.debug({ err: String(err) }, 'membership stop'));
    this.running = false;
    this.stopping = false;
    for (const p of this.protocols) await p.stop();
    this.pubsub.removeEventListener('gossipsub:message', this.onGossip);
    this.libp2p.removeEventListener('peer:connect', this.onConnect);
    this.libp2p.removeEventListener('peer:disconnect', this.onDisconnect);
    this.discovery.stop();
    await this.libp2p.stop();
    this.blobs.clear();
  }

  /** This node's PeerId as a string. */
  get selfId(): string {
    return this.peerId.toString();
  }

  /** Whether `start` ran and `stop` did not. */
  get isRunning(): boolean {
    return this.running;
  }

  /** Full listen multiaddrs, each ending in `/p2p/<PeerId>`: what others pass to `--peers`. */
  multiaddrs(): string[] {
    return this.libp2p.getMultiaddrs().map((m) => m.toString());
  }

  /** PeerIds of currently connected neighbours. */
  connectedPeers(): string[] {
    return [...new Set(this.libp2p.getConnections().map((c) => c.remotePeer.toString()))];
  }

  /**
   * Add a configured peer at run time (multiaddr with `/p2p/<id>`): dialled now and redialled with backoff
   * whenever its connection drops, like the `peers` option.
   */
  addPeer(addr: string): void {
    const { addr: ma, peerId } = parsePeerAddr(addr);
    const id = peerId.toString();
    if (peerId.equals(this.peerId) || this.redials.has(id)) return;
    const r: Redial = { addr: ma, peerId, attempt: 0, tries: 0 };
    this.redials.set(id, r);
    if (this.running) void this.dialConfigured(r);
  }

  /** The configured peers (`peers` option, `addPeer`): connected or not, dials tried, likely cause of the last failure. */
  dialStatus(): DialState[] {
    return [...this.redials.values()].map((r) => ({
      peer: r.peerId.toString(),
      addr: r.addr.toString(),
      connected: this.libp2p.getConnections(r.peerId).length > 0,
      attempts: r.tries,
      cause: r.last?.hint ?? null,
    }));
  }

  /** Dial a peer by multiaddr (with `/p2p/<id>`) once, without redial. */
  async dial(addr: string): Promise<void> {
    const { addr: ma } = parsePeerAddr(addr);
    await this.libp2p.dial(ma);
  }

  /** Topic id of a short topic name in this federation. */
  topicId(name: string): string {
    return topicId(this.federation, name);
  }

  /**
   * Subscribe to `/fmfl/<federation>/<name>/1`. Each inbound message is size-capped, decoded, checked (version,
   * timestamp, inline or blob), large payloads are pulled over the sync stream and hash-checked, then
   * `opts.validator` runs; only accepted messages reach `handler` and are forwarded by gossipsub.
   */
  subscribe(name: string, handler: MessageHandler, opts: SubscribeOptions = {}): void {
    if (!NAME_RE.test(name)) throw new RangeError(`invalid topic name "${name}"`);
    const id = this.topicId(name);
    this.topics.set(id, { name, handler, opts });
    // Score only invalid deliveries (P4): rejected messages then cost their sender, and nothing else does.
    (this.pubsub as unknown as GossipSub).score.params.topics[id] = createTopicScoreParams({
      topicWeight: 1,
      timeInMeshWeight: 0,
      firstMessageDeliveriesWeight: 0,
      meshMessageDeliveriesWeight: 0,
      meshFailurePenaltyWeight: 0,
      invalidMessageDeliveriesWeight: this.invalidMessageWeight,
      invalidMessageDeliveriesDecay: TOPIC_INVALID_MESSAGE_DECAY,
    });
    this.pubsub.topicValidators.set(id, (peer, msg) => this.validateGossip(id, peer, msg));
    this.pubsub.subscribe(id);
  }

  private cutover(o: SubscribeOptions | undefined): number {
    return Math.max(MIN_STREAM_CUTOVER_BYTES, Math.min(STREAM_CUTOVER_BYTES, o?.streamCutoverBytes ?? STREAM_CUTOVER_BYTES));
  }

  /** Leave a topic. */
  unsubscribe(name: string): void {
    const id = this.topicId(name);
    this.topics.delete(id);
    this.pubsub.topicValidators.delete(id);
    this.pubsub.unsubscribe(id);
  }

  /** PeerIds of neighbours subscribed to a topic (the gossipsub view). */
  topicPeers(name: string): string[] {
    return this.pubsub.getSubscribers(this.topicId(name)).map((p) => p.toString());
  }

  /**
   * Publish `payload` on a topic. Payloads up to STREAM_CUTOVER_BYTES go inline in the gossip envelope; larger
   * ones (up to MAX_BLOB_BYTES) are cached here and announced by SHA-256, and each hop pulls them from its
   * forwarder over the sync stream before forwarding the announcement.
   */
  async publish(name: string, payload: Uint8Array): Promise<PublishResult> {
    if (!this.running) throw new MeshError('NOT_RUNNING', 'publish on a stopped mesh');
    if (payload.byteLength > MAX_BLOB_BYTES) {
      throw new MeshError('TOO_LARGE', `payload of ${payload.byteLength} bytes exceeds MAX_BLOB_BYTES (${MAX_BLOB_BYTES})`);
    }
    const viaStream = payload.byteLength > this.cutover(this.topics.get(this.topicId(name))?.opts);
    const env: Envelope = { version: WIRE_VERSION, timestampMs: BigInt(Date.now()) };
    if (viaStream) {
      const hash = this.blobs.put(payload);
      env.blob = { sha256: hash, size: BigInt(payload.byteLength) };
    } else {
      env.inline = payload;
    }
    const res = await this.pubsub.publish(this.topicId(name), Envelope.encode(env));
    return { recipients: res.recipients.length, viaStream };
  }

  /**
   * A further request/response protocol `/fmfl/<federation>/<name>/<semver>` with the same framing and limits as
   * sync (e.g. `infer`). Registered with libp2p at `start()`, or at once when the mesh already runs.
   */
  createProtocol(name: string, semver = '1.0.0', limits: RequestResponseLimits = {}): RequestResponseProtocol {
    if (!NAME_RE.test(name)) throw new RangeError(`invalid protocol name "${name}"`);
    const id = protocolId(this.federation, name, semver);
    const p = new RequestResponseProtocol(this.libp2p, id, limits, (reason, peer) => this.refuse(reason, id, peer?.toString()));
    this.protocols.push(p);
    if (this.running) void p.start().catch((err: unknown) => this.log.error({ err: String(err), protocol: id }, 'protocol start failed'));
    return p;
  }

  /**
   * Sign `data` with this node's libp2p identity key (Ed25519), e.g. to bind an application key to the PeerId;
   * peers verify with `peerIdFromString(id).publicKey.verify(data, sig)`.
   */
  async signWithIdentity(data: Uint8Array): Promise<Uint8Array> {
    if (this.identityKey === undefined) throw new MeshError('NO_IDENTITY_KEY', 'this mesh was built without its identity key');
    return this.identityKey.sign(data);
  }

  /** Shorthand: register a handler for `method` on the sync protocol. */
  handleRequest(method: string, handler: RequestHandler): void {
    this.sync.handle(method, (body, ctx) => {
      if (!this.onRoster(ctx.peer.toString())) throw new RefusalError(RefusalReason.NOT_ALLOWED, 'requester is not on the roster');
      return handler(body, ctx);
    });
  }

  /** Shorthand: send a request on the sync protocol. */
  async request(peer: PeerId | string, method: string, body: Uint8Array, opts?: RequestOptions): Promise<Uint8Array> {
    return this.sync.request(typeof peer === 'string' ? peerIdFromString(peer) : peer, method, body, opts);
  }

  /**
   * Refuse every connection to and from these peers and close the current ones (bans, fault injection).
   * Configured peers among them stop being redialled until `unblock`.
   */
  async block(peerIds: string[]): Promise<void> {
    for (const id of peerIds) this.blocked.add(id);
    await Promise.all(peerIds.map(async (id) => this.libp2p.hangUp(peerIdFromString(id)).catch(() => {})));
  }

  /** Lift a `block`; configured peers among them are redialled at once. */
  unblock(peerIds: string[]): void {
    for (const id of peerIds) {
      this.blocked.delete(id);
      const r = this.redials.get(id);
      if (r !== undefined && this.running) {
        clearTimeout(r.timer);
        r.attempt = 0;
        void this.dialConfigured(r);
      }
    }
  }

  /** Whether a peer may connect (allowlist and block list). */
  isPermitted(peerId: string): boolean {
    if (this.blocked.has(peerId)) return false;
    return this.allow === undefined || this.allow.has(peerId);
  }

  /** Record a refusal: counted, emitted, logged at warn once per (peer, reason, where) and at debug after (benign ones: debug). */
  refuse(reason: RefusalReason, where: string, peer?: string): void {
    this.refusals.set(reason, (this.refusals.get(reason) ?? 0) + 1);
    const key = `${peer ?? '?'}|${reason}|${where}`;
    const fields = { reason: RefusalReason[reason], where, peer };
    // Benign refusals (reordering, clock skew, not yet available) are routine in a running federation: debug only.
    if (!isBenign(reason) && !this.loggedRefusals.has(key) && this.loggedRefusals.size < 10_000) {
      this.loggedRefusals.add(key);
      this.log.warn(fields, 'refused inbound data');
    } else {
      this.log.debug(fields, 'refused inbound data');
    }
    this.emit('refused', { reason, where, peer } satisfies RefusalEvent);
  }

  /** This node's gossipsub score of a peer (negative after rejected messages; below -80 it is graylisted). */
  peerScore(peerId: PeerId | string): number {
    return (this.pubsub as unknown as GossipSub).getScore(peerId.toString());
  }

  /** Number of refusals recorded for `reason`. */
  refusalCount(reason: RefusalReason): number {
    return this.refusals.get(reason) ?? 0;
  }

  private async validateGossip(topic: string, via: PeerId, msg: Message): Promise<TopicValidatorResult> {
    const entry = this.topics.get(topic);
    if (entry === undefined) return TopicValidatorResult.Ignore;
    try {
      if (msg.type !== 'signed') throw new RefusalError(RefusalReason.BAD_SIGNATURE, 'unsigned message');
      // The signer, not the relaying neighbour, must be a member: a member relaying foreign keys gains nothing.
      if (!this.onRoster(msg.from.toString())) throw new RefusalError(RefusalReason.NOT_ALLOWED, 'signer is not on the roster');
      const { payload, meta } = await this.openEnvelope(entry, via, msg);
      let verdict: RefusalReason | undefined;
      try {
        verdict = await entry.opts.validator?.(payload, meta);
      } catch (err) {
        this.log.debug({ err: String(err), topic }, 'validator threw');
        verdict = RefusalReason.APPLICATION;
      }
      if (verdict !== undefined) throw new RefusalError(verdict, 'refused by the topic validator');
      this.payloads.set(msg, { payload, meta });
      return TopicValidatorResult.Accept;
    } catch (err) {
      const reason = err instanceof RefusalError ? err.reason : RefusalReason.MALFORMED;
      this.refuse(reason, entry.name, msg.type === 'signed' ? msg.from.toString() : via.toString());
      return isBenign(reason) ? TopicValidatorResult.Ignore : TopicValidatorResult.Reject;
    }
  }

  private async openEnvelope(
    entry: TopicEntry,
    via: PeerId,
    msg: Message & { type: 'signed' },
  ): Promise<{ payload: Uint8Array; meta: MessageMeta }> {
    if (msg.data.byteLength > MAX_ENVELOPE_BYTES) {
      throw new RefusalError(RefusalReason.OVERSIZED, `envelope of ${msg.data.byteLength} bytes`);
    }
    let env: Envelope;
    try {
      env = Envelope.decode(msg.data);
    } catch (err) {
      throw new RefusalError(RefusalReason.MALFORMED, 'envelope does not decode', { cause: err });
    }
    if (env.version !== WIRE_VERSION) throw new RefusalError(RefusalReason.UNSUPPORTED_VERSION, `envelope v${env.version}`);
    const now = Date.now();
    const ts = Number(env.timestampMs);
    if (ts > now + MAX_CLOCK_SKEW_MS) throw new RefusalError(RefusalReason.STALE, 'timestamp in the future');
    if (entry.opts.maxAgeMs !== undefined && now - ts > entry.opts.maxAgeMs) {
      throw new RefusalError(RefusalReason.STALE, 'message too old');
    }
    const maxPayload = Math.min(entry.opts.maxPayloadBytes ?? MAX_BLOB_BYTES, MAX_BLOB_BYTES);
    const meta: MessageMeta = { topic: entry.name, from: msg.from, via, timestampMs: ts, viaStream: false };
    if ((env.inline === undefined) === (env.blob === undefined)) {
      throw new RefusalError(RefusalReason.INVALID_FIELD, 'envelope needs exactly one of inline and blob');
    }
    const cutover = this.cutover(entry.opts);
    if (env.inline !== undefined) {
      if (env.inline.byteLength > Math.min(maxPayload, cutover)) {
        throw new RefusalError(RefusalReason.OVERSIZED, `inline payload of ${env.inline.byteLength} bytes`);
      }
      return { payload: env.inline, meta };
    }
    const blob = env.blob!;
    if (blob.sha256.byteLength !== 32) throw new RefusalError(RefusalReason.INVALID_FIELD, 'blob hash is not 32 bytes');
    if (blob.size <= BigInt(cutover)) {
      throw new RefusalError(RefusalReason.INVALID_FIELD, 'blob small enough to go inline');
    }
    if (blob.size > BigInt(maxPayload)) throw new RefusalError(RefusalReason.OVERSIZED, `blob of ${blob.size} bytes`);
    const size = Number(blob.size);
    meta.viaStream = true;
    let payload = this.blobs.get(blob.sha256);
    if (payload === undefined) {
      if (!(await this.fetchSlots.acquire())) {
        throw new RefusalError(RefusalReason.CAPACITY, 'too many large payloads being fetched');
      }
      let mismatch = false;
      try {
        payload = this.blobs.get(blob.sha256);
        const sources = via.equals(msg.from) ? [via] : [via, msg.from];
        for (const src of payload === undefined ? sources : []) {
          try {
            const got = await this.sync.request(src, 'blob', blob.sha256, { maxResponseBytes: size });
            if (got.byteLength !== size || !Buffer.from(sha256(got)).equals(Buffer.from(blob.sha256))) {
              mismatch = true;
              this.log.debug({ from: src.toString(), topic: entry.name }, 'blob does not match its announcement');
              continue;
            }
            payload = got;
            break;
          } catch (err) {
            this.log.debug({ err: String(err), from: src.toString() }, 'blob fetch failed');
          }
        }
      } finally {
        this.fetchSlots.release();
      }
      if (payload === undefined) {
        throw mismatch
          ? new RefusalError(RefusalReason.BLOB_MISMATCH, 'served blob does not match its announced hash or size')
          : new RefusalError(RefusalReason.UNAVAILABLE, 'announced blob could not be fetched');
      }
      this.blobs.put(payload, blob.sha256);
    }
    return { payload, meta };
  }

  private readonly onGossip = (evt: CustomEvent<GossipsubEvents['gossipsub:message']['detail']>): void => {
    const { msg } = evt.detail;
    const got = this.payloads.get(msg);
    if (got === undefined) return;
    this.payloads.delete(msg);
    const entry = this.topics.get(msg.topic);
    if (entry === undefined) return;
    try {
      const r = entry.handler(got.payload, got.meta);
      if (r instanceof Promise) r.catch((err: unknown) => this.log.error({ err: String(err), topic: entry.name }, 'handler failed'));
    } catch (err) {
      this.log.error({ err: String(err), topic: entry.name }, 'handler failed');
    }
  };

  private readonly onConnect = (evt: CustomEvent<PeerId>): void => {
    const id = evt.detail.toString();
    const r = this.redials.get(id);
    if (r !== undefined) {
      r.attempt = 0;
      r.tries = 0;
      r.connectedMs = Date.now();
      clearTimeout(r.timer);
      r.timer = undefined;
    }
    this.emit('peer:connect', id);
  };

  private readonly onDisconnect = (evt: CustomEvent<PeerId>): void => {
    const id = evt.detail.toString();
    this.emit('peer:disconnect', id);
    const r = this.redials.get(id);
    if (r !== undefined && this.running && !this.stopping) {
      if (r.connectedMs !== undefined && Date.now() - r.connectedMs < QUICK_CLOSE_MS) this.dialFailed(r, CLOSED_BY_PEER);
      r.connectedMs = undefined;
      this.scheduleRedial(r);
    }
  };

  /** Log a configured peer's dial failure at info once per distinct cause (repeats at debug). */
  private dialFailed(r: Redial, d: DialDiagnosis, err?: unknown): void {
    const fields = { peer: r.peerId.toString(), addr: r.addr.toString(), cause: d.hint };
    if (r.last?.cause !== d.cause) this.log.info(fields, 'cannot connect to a configured peer; will retry');
    else this.log.debug({ ...fields, err: err === undefined ? undefined : String(err) }, 'dial failed again');
    r.last = d;
  }

  private scheduleRedial(r: Redial): void {
    if (!this.running || this.stopping || r.timer !== undefined) return;
    const delay = Math.min(this.redialMaxMs, this.redialBaseMs * REDIAL_FACTOR ** r.attempt);
    r.attempt = Math.min(r.attempt + 1, 30);
    r.timer = setTimeout(() => {
      r.timer = undefined;
      void this.dialConfigured(r);
    }, delay);
    r.timer.unref();
  }

  private async dialConfigured(r: Redial): Promise<void> {
    if (!this.running) return;
    if (this.libp2p.getConnections(r.peerId).length > 0) return;
    if (this.blocked.has(r.peerId.toString())) {
      this.scheduleRedial(r);
      return;
    }
    r.tries++;
    try {
      await this.libp2p.dial(r.addr);
      this.log.debug({ peer: r.peerId.toString() }, 'dialled configured peer');
    } catch (err) {
      if (!this.running || this.stopping) return;
      this.dialFailed(r, classifyDialError(err, { swarmKey: this.privateNetwork }), err);
      this.scheduleRedial(r);
    }
  }
}

/** Counting semaphore with a bounded wait queue: `acquire` resolves false when the queue is full. */
class Semaphore {
  private free: number;
  private readonly waiters: Array<() => void> = [];
  constructor(
    slots: number,
    private readonly maxQueue: number,
  ) {
    this.free = slots;
  }
  async acquire(): Promise<boolean> {
    if (this.free > 0) {
      this.free--;
      return true;
    }
    if (this.waiters.length >= this.maxQueue) return false;
    await new Promise<void>((resolve) => this.waiters.push(resolve));
    return true;
  }
  release(): void {
    const next = this.waiters.shift();
    if (next !== undefined) next();
    else this.free++;
  }
}

let unkeyed = 0;
/** Gossipsub fast message id: author and sequence number (unique per message; messages lacking them never match). */
function fastMsgId(m: { from?: Uint8Array; seqno?: Uint8Array }): string {
  if (m.from === undefined || m.seqno === undefined) return `unkeyed:${unkeyed++}`;
  return `${Buffer.from(m.from.buffer, m.from.byteOffset, m.from.byteLength).toString('base64')}:${Buffer.from(m.seqno.buffer, m.seqno.byteOffset, m.seqno.byteLength).toString('base64')}`;
}

/**
 * Build (but do not start) a mesh peer from options. Validates names and peer addresses (throws `MeshError` /
 * `RangeError` with a message saying what to fix).
 */
export async function createMesh(opts: MeshOptions): Promise<Mesh> {
  if (!NAME_RE.test(opts.federation)) {
    throw new MeshError('BAD_FEDERATION', `federation name "${opts.federation}" must be 1..64 characters of [a-zA-Z0-9._-]`);
  }
  for (const p of [...(opts.peers ?? []), ...(opts.bootstrap ?? [])]) parsePeerAddr(p);
  const identity = opts.identity ?? (await ephemeralIdentity());
  const wire: WireCounters = { bytesIn: 0, bytesOut: 0 };
  const blocked = new Set<string>();
  const norm = (l: string[]): Set<string> => new Set([...l.map((a) => peerIdFromString(a).toString()), identity.peerId.toString()]);
  const allowList = opts.allow ?? opts.roster;
  const allow = allowList !== undefined ? norm(allowList) : undefined;
  const rosterList = opts.roster ?? opts.allow;
  const roster = rosterList !== undefined ? norm(rosterList) : undefined;
  let mesh: Mesh | undefined;
  const permitted = (p: PeerId): boolean => {
    const id = p.toString();
    const ok = !blocked.has(id) && (allow === undefined || allow.has(id));
    if (!ok) mesh?.refuse(RefusalReason.NOT_ALLOWED, 'connection-gater', id);
    return ok;
  };
  const gater: ConnectionGater = {
    denyDialPeer: (p) => !permitted(p),
    denyInboundEncryptedConnection: (p) => !permitted(p),
    denyOutboundEncryptedConnection: (p) => !permitted(p),
  };
  const swarmKey = opts.swarmKey;
  const libp2p = (await createLibp2p({
    privateKey: identity.privateKey,
    start: false,
    addresses: { listen: opts.listen ?? [DEFAULT_LISTEN] },
    transports: [tcp(), memory({ latency: opts.memoryLatencyMs ?? 0 })],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionProtector: (components) =>
      new CountingProtector(wire, swarmKey !== undefined ? preSharedKey({ psk: swarmKey })(components) : undefined, opts.loopYieldMs ?? 0),
    connectionGater: gater,
    peerDiscovery: discoveryServices(opts),
    ...(opts.metricsRegistry !== undefined ? { metrics: prometheusMetrics({ registry: opts.metricsRegistry }) } : {}),
    connectionMonitor: opts.connectionPingMs === 0 ? { enabled: false } : { pingInterval: opts.connectionPingMs ?? 10_000 },
    connectionManager: {
      dialTimeout: opts.dialTimeoutMs ?? DEFAULT_DIAL_TIMEOUT_MS,
      inboundUpgradeTimeout: opts.dialTimeoutMs ?? DEFAULT_DIAL_TIMEOUT_MS,
      maxIncomingPendingConnections: MAX_INCOMING_PENDING_CONNECTIONS,
      protocolNegotiationTimeout: opts.streamNegotiationTimeoutMs ?? DEFAULT_STREAM_NEGOTIATION_TIMEOUT_MS,
    },
    services: {
      identify: identify(),
      pubsub: gossipsub({
        globalSignaturePolicy: 'StrictSign',
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
        floodPublish: true,
        doPX: false,
        heartbeatInterval: opts.gossipHeartbeatMs ?? 1000,
        // Nodes of one federation often share an IP (a host, a NAT, a simulation): no IP-colocation penalty.
        scoreParams: { IPColocationFactorWeight: 0 },
        // Deduplicate by (author, seqno) before the signature check: gossipsub otherwise verifies every copy a node
        // receives (one per forwarding neighbour) before finding it in the seen cache. The key is what StrictSign's
        // message id hashes, and it is cached only once a copy passed validation, so a forged copy of an unseen message
        // is still checked and rejected; later copies of an accepted message are dropped as duplicates, as before.
        fastMsgIdFn: fastMsgId,
        maxInboundDataLength: MAX_GOSSIP_RPC_BYTES,
        decodeRpcLimits: { ...GOSSIP_RPC_LIMITS },
      }),
    },
  })) as unknown as MeshLibp2p;
  mesh = new Mesh(libp2p, opts, wire, allow, blocked, identity.privateKey, roster);
  return mesh;
}
