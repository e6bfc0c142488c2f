/**
 * Finite limits applied when decoding an update from a peer. Every one is checked before the memory it guards is
 * allocated. Defaults are sized for LoRA / exit-head updates of models up to ~10^7 trainable parameters.
 */
export interface DecodeLimits {
  /** Wire bytes (envelope), checked before parsing. Default 64 MiB. */
  maxMessageBytes: number;
  /** Encoded Update bytes after decompression (`body_length`). Default 128 MiB. */
  maxBodyBytes: number;
  /** Tensors per update. Default 4096. */
  maxTensors: number;
  /** Prototype tables (exits) per update. Default 64. */
  maxPrototypeTables: number;
  /** Classes per prototype table. Default 100000. */
  maxClasses: number;
  /** Elements of one tensor. Default 2^26. */
  maxTensorElements: number;
  /** Elements over all tensors and prototype sums. Default 2^26. */
  maxTotalElements: number;
  /** Rank of a tensor shape. Default 8. */
  maxDims: number;
  /** UTF-16 length of a tensor name. Default 256. */
  maxNameLength: number;
  /** Length of federation and sender strings. Default 256. */
  maxIdLength: number;
  /** LoRA rank. Default 1024. */
  maxLoraRank: number;
  /** Sample count and per-class counts. Default 2^48. */
  maxSampleCount: number;
  /** Round and base version. Default 2^53 - 1. */
  maxRound: number;
}

/** The default decode limits (documented in protocols/update.md and protocols/LIMITS.md). */
export const DEFAULT_DECODE_LIMITS: Readonly<DecodeLimits> = Object.freeze({
  maxMessageBytes: 64 * 1024 * 1024,
  maxBodyBytes: 128 * 1024 * 1024,
  maxTensors: 4096,
  maxPrototypeTables: 64,
  maxClasses: 100_000,
  maxTensorElements: 2 ** 26,
  maxTotalElements: 2 ** 26,
  maxDims: 8,
  maxNameLength: 256,
  maxIdLength: 256,
  maxLoraRank: 1024,
  maxSampleCount: 2 ** 48,
  maxRound: Number.MAX_SAFE_INTEGER,
});

/** Update format version written and accepted by this build. */
export const UPDATE_FORMAT_VERSION = 2;
