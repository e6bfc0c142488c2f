/**
 * Limits of collaborative prediction (protocols/infer.md, protocols/LIMITS.md). All finite.
 */

/** Protocol name: `/fmfl/<federation>/infer/1.0.0`. */
export const INFER_PROTOCOL = 'infer';
/** Protocol semver. */
export const INFER_SEMVER = '1.0.0';
/** The one method of the protocol. */
export const INFER_METHOD = 'predict';
/** InferRequest / InferResponse message version. */
export const INFER_VERSION = 1;
/** Most images in one InferRequest. */
export const MAX_INFER_IMAGES = 16;
/** Largest image in an InferRequest, bytes (3 x 128 x 128: models with larger inputs serve locally only). */
export const MAX_INFER_IMAGE_BYTES = 3 * 128 * 128;
/** Largest InferRequest body: the pixels plus the small fields. */
export const MAX_INFER_REQUEST_BYTES = MAX_INFER_IMAGES * MAX_INFER_IMAGE_BYTES + 512;
/** Largest InferResponse body accepted by a requester (16 images x 1000 classes x 5 bytes, plus fields). */
export const MAX_INFER_RESPONSE_BYTES = 96 * 1024;
/** Most classes an answer may claim. */
export const MAX_INFER_CLASSES = 1000;
/** Shortest deadline a request may carry, ms. */
export const MIN_DEADLINE_MS = 5;
/** Longest deadline a request may carry, ms. */
export const MAX_DEADLINE_MS = 30_000;
/** Deadline of a collaborative prediction when none is given, ms. */
export const DEFAULT_DEADLINE_MS = 2_000;
/** Share of the deadline a responder spends computing (the rest is left for transport). */
export const RESPONDER_BUDGET_SHARE = 0.5;
/** Concurrent inbound predictions a node serves before answering BUSY. */
export const DEFAULT_MAX_CONCURRENT = 4;
/** Sustained inbound requests per second per peer (token bucket refill rate). */
export const DEFAULT_RATE_PER_SEC = 20;
/** Token bucket capacity per peer (burst). */
export const DEFAULT_RATE_BURST = 40;
/** Peers with a token bucket kept at once (oldest evicted beyond). */
export const MAX_RATE_BUCKETS = 4096;
/** Most peers one collaborative prediction asks. */
export const MAX_PEERS_K = 16;
/** Length of request ids and model version strings. */
export const MAX_ID_CHARS = 64;
/** Longest refusal message. */
export const MAX_INFER_MESSAGE_CHARS = 256;
/** Request ids: 1..64 chars of [A-Za-z0-9._-]. */
export const REQUEST_ID_RE = /^[A-Za-z0-9._-]{1,64}$/;
/** Capability feature flag of a node serving predictions. */
export const INFER_FEATURE = 'infer';
