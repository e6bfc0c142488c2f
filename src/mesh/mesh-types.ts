/** Public option and event types of the mesh (src/mesh/mesh.ts). */
import type { PeerId } from '@libp2p/interface';
import type { Registry } from 'prom-client';
import type { Logger } from '../util/log.ts';
import type { DiscoveryOptions } from './discovery.ts';
import type { RefusalReason } from './errors.ts';
import type { Capabilities } from './membership.ts';
import type { Identity } from './identity.ts';

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
  /**
   * Latency added to every buffer received over the memory transport (default 0 ms), pipelined: buffers in flight on
   * one connection do not wait for each other (CountingProtector, src/mesh/wire-counter.ts).
   */
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
   * (default DEFAULT_STREAM_NEGOTIATION_TIMEOUT_MS = 10000, libp2p's). In-process simulations raise it: on a loop
   * lagging seconds a negotiation outlives 10 s, and the stream (gossipsub's one outbound stream to a peer among them)
   * is aborted (issue 17).
   */
  streamNegotiationTimeoutMs?: number;
  /**
   * Every this many ms, reopen gossipsub's outbound stream to each connected peer that has no usable one (default 0:
   * never). Gossipsub opens that stream once per connection and gives up when it fails, so a peer whose stream timed
   * out never hears this node's messages or subscriptions until the connection is replaced (issue 17: 64 in-process
   * nodes' membership views stayed at 0..62 of 63). See src/mesh/gossip-repair.ts.
   */
  gossipStreamRepairMs?: number;
  /**
   * Let the event loop turn at least every this many ms of inbound connection traffic (default 0: off); see
   * CountingProtector in wire-counter.ts.
   */
  loopYieldMs?: number;
  /**
   * Relay membership heartbeats (default true). false when every member connects to every other (a full mesh): the
   * author's flood publish reaches all of them and each relayed copy is a duplicate (three of every four heartbeat
   * deliveries with the gossipsub degree of 3). In any other topology members then miss each other's heartbeats.
   */
  relayHeartbeats?: boolean;
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
  /**
   * Whether this node wants an announced (above-cutover) payload at all, asked before it is pulled: false drops the
   * message unpulled (gossipsub Ignore, no penalty; not delivered, not forwarded). Default: every payload is wanted.
   * The round protocol's verifying committee uses it so that members off the committee never download updates.
   */
  wantPayload?: (meta: MessageMeta) => boolean;
  /**
   * Whether accepted messages are forwarded (default true). false: they reach the handler, but gossipsub neither
   * forwards them nor offers them in IHAVE gossip, so only the author's direct neighbours receive them (its flood
   * publish). Only for a full mesh, where every forward is a duplicate of what the author sent everyone.
   */
  relay?: boolean;
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

