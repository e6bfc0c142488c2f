import { FmflError } from '../util/errors.ts';

/**
 * Why an inbound message or stream request was refused. Gossip refusals map to gossipsub Reject (or Ignore
 * for the benign ones, see `isBenign`); stream refusals are sent back as `StreamResponse.status`.
 * Numeric values are part of the wire format (sync.md): never renumber, only append.
 */
export enum RefusalReason {
  /** The bytes exceed the documented size limit for this message. */
  OVERSIZED = 1,
  /** The bytes do not decode as the expected protobuf message. */
  MALFORMED = 2,
  /** The message carries a version this node does not speak. */
  UNSUPPORTED_VERSION = 3,
  /** A field is out of range, too long, non-finite or otherwise invalid. */
  INVALID_FIELD = 4,
  /** The payload claims to come from a peer other than its signer. */
  PEER_MISMATCH = 5,
  /** The timestamp is too old, or too far in the future. */
  STALE = 6,
  /** The sequence number is not newer than the last one seen from this sender (replay or reordering). */
  REPLAYED = 7,
  /** The message is unsigned or its signature does not verify. */
  BAD_SIGNATURE = 8,
  /** No handler is registered for this stream method. */
  UNKNOWN_METHOD = 9,
  /** The handler failed or the requested item is not available. */
  UNAVAILABLE = 10,
  /** The exchange did not complete within its deadline. */
  TIMEOUT = 11,
  /** The application-level validator refused the payload. */
  APPLICATION = 12,
  /** A large payload could not be fetched or did not match its announced hash or size. */
  BLOB_MISMATCH = 13,
  /** The membership view is full. */
  CAPACITY = 14,
  /** The peer is not on the allowlist or blocked (connection gater), or a message's signer is not on the roster. */
  NOT_ALLOWED = 15,
  /** The peer trains another model (backbone, input spec, label set or update shape): not of this federation. */
  MODEL_MISMATCH = 16,
}

/**
 * Refusals that are not evidence of misbehaviour (mapped to gossipsub Ignore rather than Reject): reordering,
 * clock skew, a full view, a payload not (yet) fetchable, a peer set up for another model. Everything else costs the sender score.
 */
export function isBenign(reason: RefusalReason): boolean {
  return (
    reason === RefusalReason.REPLAYED ||
    reason === RefusalReason.STALE ||
    reason === RefusalReason.CAPACITY ||
    reason === RefusalReason.UNAVAILABLE ||
    reason === RefusalReason.MODEL_MISMATCH
  );
}

/** Thrown by decoders and stream helpers: the input from a peer was refused for `reason`. */
export class RefusalError extends FmflError {
  readonly reason: RefusalReason;
  constructor(reason: RefusalReason, message: string, options?: { cause?: unknown }) {
    super(`REFUSED_${RefusalReason[reason]}`, message, options);
    this.reason = reason;
  }
}

/** A mesh operation (start, dial, publish, request) failed. */
export class MeshError extends FmflError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(`MESH_${code}`, message, options);
  }
}
