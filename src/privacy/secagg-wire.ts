import * as pb from '../update/pb/update.ts';
import { SecAggError, SecAggRefusal, type SecAggAnnouncement, type SecAggContext, type SecAggRevealData } from './secagg.ts';

/** Wire format version of the secure-aggregation messages. */
export const SECAGG_FORMAT_VERSION = 1;

/** Limits on secure-aggregation messages from peers (documented in protocols/LIMITS.md). */
export interface SecAggLimits {
  /** Bytes of one message, checked before parsing. Default 64 MiB + 1 KiB. */
  maxMessageBytes: number;
  /** Words of a masked vector. Default 2^24. */
  maxWords: number;
  /** Seeds in one reveal (members of a round). Default 1024. */
  maxSeeds: number;
  /** Length of a peer id or federation string. Default 256. */
  maxIdLength: number;
}

export const DEFAULT_SECAGG_LIMITS: Readonly<SecAggLimits> = Object.freeze({
  maxMessageBytes: 64 * 1024 * 1024 + 1024,
  maxWords: 2 ** 24,
  maxSeeds: 1024,
  maxIdLength: 256,
});

function parse<T>(what: string, bytes: Uint8Array, lim: SecAggLimits, decode: (b: Uint8Array) => T): T {
  if (bytes.length > lim.maxMessageBytes) throw new SecAggError(SecAggRefusal.MALFORMED, `${what}: ${bytes.length} bytes > ${lim.maxMessageBytes}`);
  try {
    return decode(bytes);
  } catch (err) {
    throw new SecAggError(SecAggRefusal.MALFORMED, `${what}: ${(err as Error).message}`);
  }
}

interface Header { formatVersion: number; federation: string; round: bigint; peerId: string }

/** Checks version, context and sender id length; returns the sender. */
function header(what: string, h: Header, ctx: SecAggContext, lim: SecAggLimits): string {
  if (h.formatVersion !== SECAGG_FORMAT_VERSION) throw new SecAggError(SecAggRefusal.MALFORMED, `${what}: format version ${h.formatVersion}`);
  if (h.federation !== ctx.federation || h.round !== BigInt(ctx.round)) {
    throw new SecAggError(SecAggRefusal.WRONG_ROUND, `${what}: for ${h.federation} round ${h.round}, expected ${ctx.federation} round ${ctx.round}`);
  }
  if (h.peerId.length === 0 || h.peerId.length > lim.maxIdLength) throw new SecAggError(SecAggRefusal.MALFORMED, `${what}: peer id empty or too long`);
  return h.peerId;
}

function base(ctx: SecAggContext, peerId: string): Header {
  return { formatVersion: SECAGG_FORMAT_VERSION, federation: ctx.federation, round: BigInt(ctx.round), peerId };
}

export function encodeAnnounce(ctx: SecAggContext, a: SecAggAnnouncement): Uint8Array {
  return pb.SecAggAnnounce.encode({ ...base(ctx, a.peerId), x25519PublicKey: a.publicKey, signature: a.signature });
}

/** Decode an announcement (the signature is checked by `verifyAnnouncements`). */
export function decodeAnnounce(bytes: Uint8Array, ctx: SecAggContext, limits: Partial<SecAggLimits> = {}): SecAggAnnouncement {
  const lim = { ...DEFAULT_SECAGG_LIMITS, ...limits };
  const m = parse('announce', bytes, lim, (b) => pb.SecAggAnnounce.decode(b));
  const peerId = header('announce', m, ctx, lim);
  if (m.x25519PublicKey.length !== 32) throw new SecAggError(SecAggRefusal.BAD_KEY, 'announce: X25519 key must be 32 bytes');
  if (m.signature.length === 0 || m.signature.length > 1024) throw new SecAggError(SecAggRefusal.BAD_SIGNATURE, 'announce: signature missing or too long');
  return { peerId, publicKey: m.x25519PublicKey, signature: m.signature };
}

export function encodeMasked(ctx: SecAggContext, peerId: string, fracBits: number, words: Uint32Array): Uint8Array {
  const bytes = new Uint8Array(words.length * 4);
  const dv = new DataView(bytes.buffer);
  for (let i = 0; i < words.length; i++) dv.setUint32(4 * i, words[i], true);
  return pb.SecAggMasked.encode({ ...base(ctx, peerId), fracBits, words: bytes });
}

/** Decode a masked input; `expected` pins the vector length and fixed point the round agreed on. */
export function decodeMasked(
  bytes: Uint8Array, ctx: SecAggContext, expected: { length: number; fracBits: number }, limits: Partial<SecAggLimits> = {},
): { peerId: string; words: Uint32Array } {
  const lim = { ...DEFAULT_SECAGG_LIMITS, ...limits };
  const m = parse('masked', bytes, lim, (b) => pb.SecAggMasked.decode(b));
  const peerId = header('masked', m, ctx, lim);
  if (m.fracBits !== expected.fracBits) throw new SecAggError(SecAggRefusal.BAD_PARAMS, `masked: frac_bits ${m.fracBits}, round uses ${expected.fracBits}`);
  if (m.words.length % 4 !== 0 || m.words.length / 4 !== expected.length || expected.length > lim.maxWords) {
    throw new SecAggError(SecAggRefusal.LENGTH_MISMATCH, `masked: ${m.words.length} bytes for ${expected.length} words`);
  }
  const dv = new DataView(m.words.buffer, m.words.byteOffset, m.words.byteLength);
  const words = new Uint32Array(expected.length);
  for (let i = 0; i < words.length; i++) words[i] = dv.getUint32(4 * i, true);
  return { peerId, words };
}

export function encodeReveal(ctx: SecAggContext, peerId: string, reveal: SecAggRevealData): Uint8Array {
  return pb.SecAggReveal.encode({
    ...base(ctx, peerId), seeds: [...reveal.pairSeeds].map(([p, seed]) => ({ peerId: p, seed })), selfMaskSeed: reveal.selfSeed,
  });
}

export function decodeReveal(bytes: Uint8Array, ctx: SecAggContext, limits: Partial<SecAggLimits> = {}): { peerId: string; reveal: SecAggRevealData } {
  const lim = { ...DEFAULT_SECAGG_LIMITS, ...limits };
  const m = parse('reveal', bytes, lim, (b) => pb.SecAggReveal.decode(b, { limits: { seeds: lim.maxSeeds } }));
  const peerId = header('reveal', m, ctx, lim);
  const seeds = new Map<string, Uint8Array>();
  for (const s of m.seeds) {
    if (s.seed.length !== 32) throw new SecAggError(SecAggRefusal.BAD_KEY, 'reveal: pair seed must be 32 bytes');
    if (s.peerId.length === 0 || s.peerId.length > lim.maxIdLength) throw new SecAggError(SecAggRefusal.MALFORMED, 'reveal: peer id empty or too long');
    if (seeds.has(s.peerId)) throw new SecAggError(SecAggRefusal.DUPLICATE_MEMBER, `reveal: ${s.peerId} twice`);
    seeds.set(s.peerId, s.seed);
  }
  if (m.selfMaskSeed.length !== 32) throw new SecAggError(SecAggRefusal.BAD_KEY, 'reveal: self-mask seed must be 32 bytes');
  return { peerId, reveal: { selfSeed: m.selfMaskSeed, pairSeeds: seeds } };
}
