import { FmflError } from '../util/errors.ts';

/** Why an update (or one of its parts) was refused. Stable strings: they appear in logs and peer-score reasons. */
export const UpdateRefusal = {
  /** The message is larger than `limits.maxMessageBytes` (checked before any parsing). */
  TOO_LARGE: 'too-large',
  /** The bytes are not a well-formed protobuf message of the expected type. */
  MALFORMED: 'malformed',
  /** `format_version` is not one this build understands. */
  UNSUPPORTED_VERSION: 'unsupported-version',
  /** Compression id unknown, or the compressed body does not inflate to exactly `body_length` bytes. */
  BAD_COMPRESSION: 'bad-compression',
  /** A value / index codec id is unknown or unspecified. */
  UNKNOWN_CODEC: 'unknown-codec',
  /** A codec parameter (block size, nnz, ...) is outside its documented range. */
  BAD_CODEC_PARAMS: 'bad-codec-params',
  /** A coded byte string has the wrong length for its codec and element count. */
  BAD_LENGTH: 'bad-length',
  /** An index is out of range, repeated, or a varint is overlong / truncated. */
  BAD_INDEX: 'bad-index',
  /** A decoded value is NaN or infinite, or a quantized code lies outside its symmetric range. */
  NON_FINITE: 'non-finite',
  /** The sender references tensors by manifest index but its manifest digest differs from ours. */
  MANIFEST_MISMATCH: 'manifest-mismatch',
  /** A tensor is not in the manifest, is listed twice, or its shape differs from the manifest. */
  BAD_SHAPE: 'bad-shape',
  /** A header field (federation, round, sender, sample count, rank) is missing or out of range. */
  BAD_HEADER: 'bad-header',
  /** Prototype tables are inconsistent: duplicate exit, wrong class count / dim, sum without count. */
  BAD_PROTOTYPES: 'bad-prototypes',
  /** A count limit (tensors, elements, name length, ...) from `DecodeLimits` is exceeded. */
  LIMIT_EXCEEDED: 'limit-exceeded',
  /** The caller passed an invalid argument to an encoder (not peer input). */
  INVALID_ARGUMENT: 'invalid-argument',
} as const;
export type UpdateRefusal = (typeof UpdateRefusal)[keyof typeof UpdateRefusal];

/** The only error the update decoder throws on hostile bytes. `reason` says why; `code` is always `UPDATE`. */
export class UpdateError extends FmflError {
  readonly reason: UpdateRefusal;
  constructor(reason: UpdateRefusal, message: string, options?: { cause?: unknown }) {
    super('UPDATE', `${reason}: ${message}`, options);
    this.reason = reason;
  }
}

/** Throw an {@link UpdateError} unless `cond` holds. */
export function check(cond: boolean, reason: UpdateRefusal, message: string | (() => string)): asserts cond {
  if (!cond) throw new UpdateError(reason, typeof message === 'string' ? message : message());
}
