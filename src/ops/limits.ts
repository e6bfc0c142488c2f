/**
 * Limits of the operations surface (status server, dashboard, peer status polling). All finite; listed in
 * protocols/LIMITS.md ("Operations"), which a unit test keeps in sync with this file.
 */

/** Sync method a node answers with its own round, phase and neighbours (protocols/sync.md). */
export const PEER_STATUS_METHOD = 'ops.status';
/** Version field of a peer status answer. */
export const PEER_STATUS_VERSION = 1;
/** Largest peer status answer read from a peer (bytes). */
export const MAX_PEER_STATUS_BYTES = 16384;
/** Most neighbour PeerIds in one peer status answer (a node lists at most this many of its connections). */
export const MAX_PEER_STATUS_NEIGHBOURS = 128;
/**
 * Deadline of one peer status or RTT ping request (ms). Generous: a member busy with a training step answers late
 * (RTTs of 1-2 s were measured on 2 shared cores during local training).
 */
export const PEER_STATUS_TIMEOUT_MS = 10_000;
/** How long `GET /status` waits for a member poll in progress before answering with what it has (ms). */
export const STATUS_POLL_WAIT_MS = 1500;
/** A member's polled status (round, neighbours, RTT) is refreshed at most this often (ms). */
export const PEER_POLL_INTERVAL_MS = 3000;
/** Most members polled for their status in one refresh. */
export const MAX_POLLED_PEERS = 64;
/** Completed rounds kept for /status and the dashboard's timeline and charts (oldest dropped). */
export const MAX_ROUND_HISTORY = 500;
/** Recent refusals kept for /status (oldest dropped); the per-reason counts are kept in full. */
export const MAX_RECENT_REFUSALS = 100;
/** Members listed in /status (the membership view itself holds at most MAX_MEMBERS). */
export const MAX_STATUS_MEMBERS = 1024;
/** Server-sent-event clients of /events at once; beyond it 503. */
export const MAX_SSE_CLIENTS = 16;
/** Period of the status snapshot pushed to /events clients (ms). */
export const SSE_INTERVAL_MS = 1000;
/** Largest /status answer `fmfl-node status` reads (bytes). */
export const MAX_STATUS_RESPONSE_BYTES = 4 * 1024 * 1024;
/** Deadline of `fmfl-node status` fetching /status (ms). */
export const STATUS_FETCH_TIMEOUT_MS = 5000;
