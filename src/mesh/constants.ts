/**
 * Every wire limit and protocol constant of the fmfl mesh, in one place. protocols/LIMITS.md lists the same
 * values; a unit test keeps the two in step.
 */

/** Version string advertised in heartbeats; bump the trailing number on any incompatible wire change. */
export const MESH_PROTOCOL_VERSION = 'fmfl-mesh/1';

/** Version field of Envelope, Heartbeat and StreamRequest frames. */
export const WIRE_VERSION = 1;

/**
 * Payloads up to this many bytes travel inline inside a gossip Envelope; larger ones are announced on gossip
 * by SHA-256 and pulled hop by hop over the sync stream (`/fmfl/<federation>/sync/1.0.0`, method `blob`).
 */
export const STREAM_CUTOVER_BYTES = 64 * 1024;
/**
 * Smallest per-topic cutover (`SubscribeOptions.streamCutoverBytes`): below it an announcement (~100 B of hash and
 * size plus the envelope) would not be much smaller than the payload.
 */
export const MIN_STREAM_CUTOVER_BYTES = 512;

/** Largest encoded Envelope accepted from gossip (inline payload + header). */
export const MAX_ENVELOPE_BYTES = STREAM_CUTOVER_BYTES + 1024;

/** Largest payload that can be published at all (announced blob pulled over the stream). */
export const MAX_BLOB_BYTES = 64 * 1024 * 1024;

/** Largest gossipsub RPC frame accepted from a peer (gossipsub `maxInboundDataLength`). */
export const MAX_GOSSIP_RPC_BYTES = 1024 * 1024;

/** Bounds on one decoded gossipsub RPC (gossipsub `decodeRpcLimits`; its defaults are unbounded). */
export const GOSSIP_RPC_LIMITS = {
  maxSubscriptions: 256,
  maxMessages: 256,
  maxIhaveMessageIDs: 5000,
  maxIwantMessageIDs: 5000,
  maxIdontwantMessageIDs: 5000,
  maxControlMessages: 256,
  maxPeerInfos: 64,
} as const;

/**
 * Gossipsub peer scoring on fmfl topics: only invalid deliveries count (P4, score += weight x count^2, count
 * decayed by this factor every second). With the default thresholds a peer is graylisted (its RPCs ignored) at
 * -80, i.e. after about 9 rejected messages in quick succession; the count halves about every 6.6 s, so an
 * isolated reject (score -1) is harmless and a graylisted flooder is heard again about a minute after it stops.
 */
export const TOPIC_INVALID_MESSAGE_WEIGHT = -1;
export const TOPIC_INVALID_MESSAGE_DECAY = 0.9;

/** Largest encoded Heartbeat. */
export const MAX_HEARTBEAT_BYTES = 4096;

/** Most listen addresses a heartbeat may carry. */
export const MAX_HEARTBEAT_ADDRS = 16;

/** Longest multiaddr string in a heartbeat. */
export const MAX_ADDR_CHARS = 256;

/** Most feature flags in a heartbeat's capabilities, and the longest flag or device string. */
export const MAX_FEATURES = 16;
export const MAX_SHORT_STRING_CHARS = 64;

/** Largest StreamRequest frame (method + body). */
export const MAX_REQUEST_BYTES = 1024 * 1024;

/** Size of each data frame of a streamed response body. */
export const RESPONSE_CHUNK_BYTES = 256 * 1024;

/** Largest single frame on a request/response stream (a data chunk plus framing slack). */
export const MAX_FRAME_BYTES = RESPONSE_CHUNK_BYTES + 1024;

/** Default cap on a response body; `request()` callers may lower it, never raise it above MAX_BLOB_BYTES. */
export const DEFAULT_MAX_RESPONSE_BYTES = MAX_BLOB_BYTES;

/** Longest refusal message in a StreamResponse. */
export const MAX_REFUSAL_MESSAGE_CHARS = 256;

/** A stream method name: 1..64 characters of [a-z0-9._-]. */
export const METHOD_NAME_RE = /^[a-z0-9._-]{1,64}$/;

/** A federation or topic name: 1..64 characters of [a-zA-Z0-9._-]. */
export const NAME_RE = /^[a-zA-Z0-9._-]{1,64}$/;

/** Default timeout of one whole request/response exchange. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

/** Default listen address: loopback, random port. */
export const DEFAULT_LISTEN = '/ip4/127.0.0.1/tcp/0';

/** Deadline of one dial (connect + pnet + Noise + Yamux) and of an inbound connection upgrade. */
export const DEFAULT_DIAL_TIMEOUT_MS = 10_000;

/** Deadline of one stream's protocol negotiation (libp2p's default); Mesh `streamNegotiationTimeoutMs`. */
export const DEFAULT_STREAM_NEGOTIATION_TIMEOUT_MS = 10_000;

/**
 * Inbound connections being upgraded (pnet + Noise + Yamux) at once; further ones are refused until one finishes.
 * libp2p's default is 10, fewer than the members that dial a node when a federation starts (issue 17: in a 64-node
 * full mesh, refused and timed-out upgrades left later nodes with no connection at all).
 */
export const MAX_INCOMING_PENDING_CONNECTIONS = 128;

/** Concurrent inbound / outbound streams per connection on each request/response protocol. */
export const MAX_STREAMS_PER_CONNECTION = 32;

/** Tolerated clock skew: envelopes or heartbeats timestamped further in the future are rejected. */
export const MAX_CLOCK_SKEW_MS = 30_000;

/** Default heartbeat interval and membership expiry (CLI); tests use far shorter values. */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 2_000;
export const DEFAULT_MEMBER_EXPIRY_MS = 10_000;

/**
 * Every HEARTBEAT_FULL_EVERY-th heartbeat (and the next one after a capability change, a new connection or a new
 * member in the view) is full: addresses, protocol version and capabilities. The others are light: identity,
 * sequence number and timestamp only (about half the bytes), which refresh a known member's liveness; a light
 * heartbeat of a sender not yet in the view is relayed but does not add it (protocols/membership.md).
 */
export const HEARTBEAT_FULL_EVERY = 5;

/**
 * Gossipsub mesh parameters for small federations (tens of members, often a full mesh). Messages are flood-published
 * to every subscribed neighbour, so in a full mesh each forward by a mesh peer is a duplicate: a mesh degree of 3
 * (instead of gossipsub's 6, 4..12) keeps forwarding for sparse topologies (a line, a ring, a 3-regular graph: every
 * neighbour is still in the mesh) while roughly halving the duplicates of every heartbeat, update announcement and
 * attestation in a full mesh; IHAVE gossip goes to at most one non-mesh peer per heartbeat (gossipsub: 6, or 25% of
 * the non-mesh peers). Trade-off: fewer redundant paths per message in a large sparse mesh.
 */
export const GOSSIP_MESH = {
  D: 3,
  Dlo: 2,
  Dhi: 4,
  Dscore: 1,
  Dout: 1,
  Dlazy: 1,
  gossipFactor: 0,
  fanoutTTL: 15_000,
} as const;

/** How long `stop()` waits after the goodbye heartbeat so it is flushed before connections close. */
export const LEAVE_FLUSH_MS = 500;

/** Most members a membership view holds; heartbeats from further new peers are ignored. */
export const MAX_MEMBERS = 1024;
/** Most PeerIds on a federation's roster (`--allow` / `--roster`). */
export const MAX_ROSTER_MEMBERS = 4096;
/** Largest roster file read at start. */
export const MAX_ROSTER_BYTES = 1024 * 1024;

/** Large payloads a node keeps for re-serving to its neighbours, by count and by total bytes. */
export const BLOB_CACHE_MAX_ENTRIES = 64;
export const BLOB_CACHE_MAX_BYTES = 256 * 1024 * 1024;
/** Large payloads fetched at once; further announcements wait in a queue of bounded length, then are ignored (CAPACITY). */
export const MAX_CONCURRENT_BLOB_FETCHES = 8;
export const MAX_QUEUED_BLOB_FETCHES = 256;
/** How long a cached blob stays available to neighbours. */
export const BLOB_CACHE_TTL_MS = 120_000;

/** Redial backoff for configured peers: first delay, cap and multiplier. */
export const REDIAL_BASE_MS = 500;
export const REDIAL_MAX_MS = 30_000;
export const REDIAL_FACTOR = 2;

/** Gossip topic id: `/fmfl/<federation>/<topic>/1`. */
export function topicId(federation: string, topic: string): string {
  return `/fmfl/${federation}/${topic}/1`;
}

/** Stream protocol id: `/fmfl/<federation>/<name>/<semver>`. */
export function protocolId(federation: string, name: string, semver = '1.0.0'): string {
  return `/fmfl/${federation}/${name}/${semver}`;
}

/** The membership topic name (inside a federation). */
export const MEMBERSHIP_TOPIC = 'membership';
/** The sync stream protocol name (inside a federation). */
export const SYNC_PROTOCOL = 'sync';
