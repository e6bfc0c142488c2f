import { EventEmitter } from 'node:events';
import { peerIdFromString } from '@libp2p/peer-id';
import { TopicValidatorResult } from '@libp2p/interface';
import type { Message, PeerId, PrivateKey, PubSub, ConnectionGater } from '@libp2p/interface';
import type { GossipSub, GossipsubEvents } from '@chainsafe/libp2p-gossipsub';
import type { Logger } from '../util/log.ts';
import { DiscoveryDialer } from './discovery.ts';
import { silentLogger } from '../util/log.ts';
import { RefusalError, RefusalReason, MeshError, isBenign } from './errors.ts';
import type { WireCounters } from './wire-counter.ts';
import { RequestResponseProtocol, type RequestHandler, type RequestOptions, type RequestResponseLimits } from './request-response.ts';
import { Membership } from './membership.ts';
import { startGossipStreamRepair } from './gossip-repair.ts';
import { ephemeralIdentity } from './identity.ts';
import { StreamCutover } from './cutover.ts';
import { Redialer, parsePeerAddr } from './redial.ts';
import { buildLibp2p, topicScoreParams, type MeshLibp2p } from './libp2p-config.ts';
import type { DialState, MeshOptions, MessageHandler, MessageMeta, PublishResult, RefusalEvent, SubscribeOptions } from './mesh-types.ts';
import {
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  DEFAULT_STREAM_NEGOTIATION_TIMEOUT_MS,
  DEFAULT_MEMBER_EXPIRY_MS,
  DEFAULT_LISTEN,
  TOPIC_INVALID_MESSAGE_WEIGHT,
  MAX_BLOB_BYTES,
  MEMBERSHIP_TOPIC,
  NAME_RE,
  REDIAL_BASE_MS,
  REDIAL_MAX_MS,
  SYNC_PROTOCOL,
  protocolId,
  topicId,
} from './constants.ts';

export type { DialState, MeshOptions, MessageHandler, MessageMeta, PayloadValidator, PublishResult, RefusalEvent, SubscribeOptions } from './mesh-types.ts';
export { parsePeerAddr } from './redial.ts';

interface TopicEntry {
  name: string;
  handler: MessageHandler;
  opts: SubscribeOptions;
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
  /**
   * Gossip messages received per topic: first copies that reached validation (gossipsub drops later copies of a
   * message as duplicates before that). For diagnosing large simulations (issue 17: heartbeat traffic per second).
   */
  readonly received = new Map<string, number>();
  /** The roster (sorted PeerIds, self included), or undefined for an open mesh. */
  readonly roster: readonly string[] | undefined;
  private readonly rosterSet: Set<string> | undefined;

  private readonly log: Logger;
  private readonly topics = new Map<string, TopicEntry>();
  private readonly payloads = new WeakMap<Message, { payload: Uint8Array; meta: MessageMeta }>();
  private readonly protocols: RequestResponseProtocol[] = [];
  private readonly blocked: Set<string>;
  private readonly allow: Set<string> | undefined;
  private readonly redials: Redialer;
  private readonly cutover: StreamCutover;
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
    this.redials = new Redialer(libp2p, {
      baseMs: opts.redialBaseMs ?? REDIAL_BASE_MS,
      maxMs: opts.redialMaxMs ?? REDIAL_MAX_MS,
      privateNetwork: this.privateNetwork,
      blocked,
      log: this.log,
      active: () => this.running && !this.stopping,
    });
    this.invalidMessageWeight = opts.invalidMessageWeight ?? TOPIC_INVALID_MESSAGE_WEIGHT;
    this.listenAddrs = opts.listen ?? [DEFAULT_LISTEN];
    // Bootstrap peers (src/mesh/discovery.ts) are redialled with backoff like configured ones.
    for (const p of [...(opts.peers ?? []), ...(opts.bootstrap ?? [])]) {
      const { addr, peerId } = parsePeerAddr(p);
      if (!peerId.equals(this.peerId)) this.redials.add(addr, peerId);
    }
    this.sync = this.createProtocol(SYNC_PROTOCOL);
    this.cutover = new StreamCutover(this.sync, this.log);
    this.sync.handle('ping', (body) => body);
    this.membership = new Membership(this, {
      intervalMs: opts.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS,
      expiryMs: opts.memberExpiryMs ?? DEFAULT_MEMBER_EXPIRY_MS,
      capabilities: opts.capabilities ?? {},
      topic: MEMBERSHIP_TOPIC,
      relay: opts.relayHeartbeats ?? true,
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
    this.redials.dialAll();
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
    this.redials.stop();
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
    this.cutover.clear();
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
    if (peerId.equals(this.peerId) || !this.redials.add(ma, peerId)) return;
    if (this.running) this.redials.dial(id);
  }

  /** The configured peers (`peers` option, `addPeer`): connected or not, dials tried, likely cause of the last failure. */
  dialStatus(): DialState[] {
    return this.redials.status();
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
    (this.pubsub as unknown as GossipSub).score.params.topics[id] = topicScoreParams(this.invalidMessageWeight);
    this.pubsub.topicValidators.set(id, (peer, msg) => this.validateGossip(id, peer, msg));
    this.pubsub.subscribe(id);
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
    const { envelope, viaStream } = this.cutover.seal(payload, this.topics.get(this.topicId(name))?.opts);
    const res = await this.pubsub.publish(this.topicId(name), envelope);
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
      this.redials.unblocked(id);
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
    this.received.set(entry.name, (this.received.get(entry.name) ?? 0) + 1);
    try {
      if (msg.type !== 'signed') throw new RefusalError(RefusalReason.BAD_SIGNATURE, 'unsigned message');
      // The signer, not the relaying neighbour, must be a member: a member relaying foreign keys gains nothing.
      if (!this.onRoster(msg.from.toString())) throw new RefusalError(RefusalReason.NOT_ALLOWED, 'signer is not on the roster');
      const { payload, meta } = await this.cutover.open(entry.name, entry.opts, via, msg);
      let verdict: RefusalReason | undefined;
      try {
        verdict = await entry.opts.validator?.(payload, meta);
      } catch (err) {
        this.log.debug({ err: String(err), topic }, 'validator threw');
        verdict = RefusalReason.APPLICATION;
      }
      if (verdict !== undefined) throw new RefusalError(verdict, 'refused by the topic validator');
      if (entry.opts.relay === false) {
        // Delivered here; Ignore keeps gossipsub from forwarding it (no score penalty; duplicates still deduplicated).
        this.deliver(entry, payload, meta);
        return TopicValidatorResult.Ignore;
      }
      this.payloads.set(msg, { payload, meta });
      return TopicValidatorResult.Accept;
    } catch (err) {
      const reason = err instanceof RefusalError ? err.reason : RefusalReason.MALFORMED;
      this.refuse(reason, entry.name, msg.type === 'signed' ? msg.from.toString() : via.toString());
      return isBenign(reason) ? TopicValidatorResult.Ignore : TopicValidatorResult.Reject;
    }
  }

  private readonly onGossip = (evt: CustomEvent<GossipsubEvents['gossipsub:message']['detail']>): void => {
    const { msg } = evt.detail;
    const got = this.payloads.get(msg);
    if (got === undefined) return;
    this.payloads.delete(msg);
    const entry = this.topics.get(msg.topic);
    if (entry === undefined) return;
    this.deliver(entry, got.payload, got.meta);
  };

  private deliver(entry: TopicEntry, payload: Uint8Array, meta: MessageMeta): void {
    try {
      const r = entry.handler(payload, meta);
      if (r instanceof Promise) r.catch((err: unknown) => this.log.error({ err: String(err), topic: entry.name }, 'handler failed'));
    } catch (err) {
      this.log.error({ err: String(err), topic: entry.name }, 'handler failed');
    }
  }

  private readonly onConnect = (evt: CustomEvent<PeerId>): void => {
    const id = evt.detail.toString();
    this.redials.connected(id);
    this.emit('peer:connect', id);
  };

  private readonly onDisconnect = (evt: CustomEvent<PeerId>): void => {
    const id = evt.detail.toString();
    this.emit('peer:disconnect', id);
    this.redials.disconnected(id);
  };

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
  const libp2p = await buildLibp2p(opts, identity.privateKey, wire, gater);
  mesh = new Mesh(libp2p, opts, wire, allow, blocked, identity.privateKey, roster);
  return mesh;
}
