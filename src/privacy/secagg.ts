import { createCipheriv, createHash, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, randomBytes, type KeyObject } from 'node:crypto';
import { FmflError } from '../util/errors.ts';
import type { Rng } from '../util/rng.ts';

/** Why a secure-aggregation step was refused. */
export const SecAggRefusal = {
  /** A member's X25519 key is not bound to its libp2p identity by a valid signature. */
  BAD_SIGNATURE: 'bad-signature',
  /** A public key is not a 32-byte X25519 key, or key agreement failed (low-order point). */
  BAD_KEY: 'bad-key',
  /** A member appears twice, or a member is both a survivor and dropped. */
  DUPLICATE_MEMBER: 'duplicate-member',
  /** Masked vectors differ in length from each other or from the expected length. */
  LENGTH_MISMATCH: 'length-mismatch',
  /** A pair seed needed to cancel a dropped member's masks was not revealed. */
  MISSING_SEED: 'missing-seed',
  /** A value lies outside [-clip, clip], so the fixed-point sum could wrap. */
  OUT_OF_RANGE: 'out-of-range',
  /** A parameter (clip, participant count, round, fixed point) is invalid or differs from the round's. */
  BAD_PARAMS: 'bad-params',
  /** A message is not well-formed protobuf, has an unknown version, or exceeds a size limit. */
  MALFORMED: 'malformed',
  /** A message belongs to another federation or round. */
  WRONG_ROUND: 'wrong-round',
} as const;
export type SecAggRefusal = (typeof SecAggRefusal)[keyof typeof SecAggRefusal];

export class SecAggError extends FmflError {
  readonly reason: SecAggRefusal;
  constructor(reason: SecAggRefusal, message: string) {
    super('SECAGG', `${reason}: ${message}`);
    this.reason = reason;
  }
}

/** What the keys and masks of one aggregation are bound to (a fresh X25519 key per round is recommended). */
export interface SecAggContext {
  federation: string;
  round: number;
}

export interface SecAggKeyPair {
  /** Raw 32-byte X25519 public key. */
  publicKey: Uint8Array;
  privateKey: KeyObject;
}

/** A member's signed X25519 key, as published to the other members. */
export interface SecAggAnnouncement {
  /** libp2p peer id string of the member. */
  peerId: string;
  publicKey: Uint8Array;
  /** Signature by the member's libp2p identity key over {@link bindingMessage}. */
  signature: Uint8Array;
}

/** Signs with the node's libp2p identity key (e.g. `(d) => privateKey.sign(d)` from @libp2p/crypto). */
export type Signer = (data: Uint8Array) => Uint8Array | Promise<Uint8Array>;
/** Verifies a signature by `peerId`'s identity key (e.g. `peerIdFromString(id).publicKey.verify(d, s)`). */
export type Verifier = (peerId: string, data: Uint8Array, signature: Uint8Array) => boolean | Promise<boolean>;

const DOMAIN = 'fmfl/secagg/v1';

export function generateSecAggKeyPair(): SecAggKeyPair {
  const { publicKey, privateKey } = generateKeyPairSync('x25519');
  const jwk = publicKey.export({ format: 'jwk' });
  return { publicKey: new Uint8Array(Buffer.from(jwk.x!, 'base64url')), privateKey };
}

function checkCtx(ctx: SecAggContext): void {
  if (!Number.isSafeInteger(ctx.round) || ctx.round < 0 || ctx.federation === '') {
    throw new SecAggError(SecAggRefusal.BAD_PARAMS, 'context needs a federation and a non-negative integer round');
  }
}

/** The bytes a member signs: domain ‖ federation ‖ round ‖ peer id ‖ X25519 key (length-prefixed). */
export function bindingMessage(ctx: SecAggContext, peerId: string, publicKey: Uint8Array): Uint8Array {
  checkCtx(ctx);
  const parts = [DOMAIN, ctx.federation, String(ctx.round), peerId].map((s) => Buffer.from(s, 'utf8'));
  const chunks: Buffer[] = [];
  for (const p of [...parts, Buffer.from(publicKey)]) {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(p.length);
    chunks.push(len, p);
  }
  return new Uint8Array(Buffer.concat(chunks));
}

/** Sign this member's X25519 key with its libp2p identity. */
export async function announce(ctx: SecAggContext, peerId: string, keys: SecAggKeyPair, sign: Signer): Promise<SecAggAnnouncement> {
  const signature = await sign(bindingMessage(ctx, peerId, keys.publicKey));
  return { peerId, publicKey: keys.publicKey, signature };
}

/** Check every announcement's binding; throws {@link SecAggError} BAD_SIGNATURE / BAD_KEY / DUPLICATE_MEMBER. */
export async function verifyAnnouncements(ctx: SecAggContext, anns: readonly SecAggAnnouncement[], verify: Verifier): Promise<void> {
  const seen = new Set<string>();
  for (const a of anns) {
    if (seen.has(a.peerId)) throw new SecAggError(SecAggRefusal.DUPLICATE_MEMBER, `${a.peerId} announced twice`);
    seen.add(a.peerId);
    if (a.publicKey.length !== 32) throw new SecAggError(SecAggRefusal.BAD_KEY, `${a.peerId}: X25519 key must be 32 bytes`);
    let ok = false;
    try {
      ok = await verify(a.peerId, bindingMessage(ctx, a.peerId, a.publicKey), a.signature);
    } catch {
      ok = false;
    }
    if (!ok) throw new SecAggError(SecAggRefusal.BAD_SIGNATURE, `${a.peerId}: X25519 key is not signed by its libp2p identity`);
  }
}

function x25519Public(raw: Uint8Array): KeyObject {
  return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(raw).toString('base64url') }, format: 'jwk' });
}

/**
 * Pair seeds with every other (verified) member: HKDF-SHA256 (RFC 5869) of the X25519 shared secret
 * (RFC 7748), salted with the hash of the context and labelled with both peer ids in sorted order, so both
 * ends derive the same 32 bytes and no seed is reused across rounds or federations.
 */
export function derivePairSeeds(ctx: SecAggContext, selfId: string, keys: SecAggKeyPair, members: readonly SecAggAnnouncement[]): Map<string, Uint8Array> {
  checkCtx(ctx);
  const salt = createHash('sha256').update(`${DOMAIN}\0${ctx.federation}\0${ctx.round}`).digest();
  const seeds = new Map<string, Uint8Array>();
  for (const m of members) {
    if (m.peerId === selfId) continue;
    if (seeds.has(m.peerId)) throw new SecAggError(SecAggRefusal.DUPLICATE_MEMBER, `${m.peerId} listed twice`);
    let shared: Buffer;
    try {
      shared = diffieHellman({ privateKey: keys.privateKey, publicKey: x25519Public(m.publicKey) });
    } catch {
      throw new SecAggError(SecAggRefusal.BAD_KEY, `${m.peerId}: X25519 key agreement failed`);
    }
    if (shared.every((b) => b === 0)) throw new SecAggError(SecAggRefusal.BAD_KEY, `${m.peerId}: low-order X25519 key`);
    const [a, b] = selfId < m.peerId ? [selfId, m.peerId] : [m.peerId, selfId];
    seeds.set(m.peerId, new Uint8Array(hkdfSync('sha256', shared, salt, `${DOMAIN}/pair\0${a}\0${b}`, 32)));
  }
  return seeds;
}

/** Expand a 32-byte seed into `length` uniform words mod 2^32 (AES-256-CTR keystream, zero IV; seeds are single-use). */
export function expandMask(seed: Uint8Array, length: number): Uint32Array {
  if (seed.length !== 32) throw new SecAggError(SecAggRefusal.BAD_KEY, 'pair seed must be 32 bytes');
  const cipher = createCipheriv('aes-256-ctr', seed, Buffer.alloc(16));
  const ks = cipher.update(Buffer.alloc(length * 4));
  const out = new Uint32Array(length);
  for (let i = 0; i < length; i++) out[i] = ks.readUInt32LE(i * 4);
  return out;
}

/** Fixed-point encoding: x ↦ round(x · 2^fracBits) mod 2^32, with |x| ≤ clip for every member. */
export interface FixedPoint {
  clip: number;
  fracBits: number;
}

/**
 * The finest fixed point for which the sum of `maxMembers` values in [-clip, clip] cannot leave int32:
 * maxMembers · (clip + 1) · 2^fracBits < 2^31 (the +1 absorbs rounding). Resolution 2^-fracBits; e.g. clip 1, 128 members → 23 bits.
 */
export function fixedPointFor(clip: number, maxMembers: number): FixedPoint {
  if (!(clip > 0) || !Number.isFinite(clip) || !Number.isInteger(maxMembers) || maxMembers < 1) {
    throw new SecAggError(SecAggRefusal.BAD_PARAMS, 'clip must be positive and maxMembers a positive integer');
  }
  const fracBits = Math.floor(Math.log2((2 ** 31 - 1) / (maxMembers * (clip + 1))));
  if (fracBits < 0) throw new SecAggError(SecAggRefusal.BAD_PARAMS, `clip ${clip} x ${maxMembers} members does not fit 32-bit fixed point`);
  return { clip, fracBits };
}

/** Encode values in fixed point mod 2^32; stochastic rounding (unbiased) when `rng` is given. */
export function toFixedPoint(values: ArrayLike<number>, fp: FixedPoint, rng?: Rng): Uint32Array {
  const scale = 2 ** fp.fracBits;
  const out = new Uint32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!(Math.abs(v) <= fp.clip)) throw new SecAggError(SecAggRefusal.OUT_OF_RANGE, `value ${v} at ${i} outside [-${fp.clip}, ${fp.clip}]; clip first`);
    const x = v * scale;
    out[i] = (rng ? Math.floor(x + rng.next()) : Math.round(x)) >>> 0;
  }
  return out;
}

/** Decode a fixed-point (sum) vector: words as signed int32, divided by 2^fracBits. */
export function fromFixedPoint(words: Uint32Array, fp: FixedPoint): Float64Array {
  const scale = 2 ** fp.fracBits;
  return Float64Array.from(words, (w) => (w | 0) / scale);
}

function addMask(acc: Uint32Array, seed: Uint8Array, sign: 1 | -1): void {
  const m = expandMask(seed, acc.length);
  for (let i = 0; i < acc.length; i++) acc[i] = (sign === 1 ? acc[i] + m[i] : acc[i] - m[i]) >>> 0;
}

/** A member's secrets for one round: pair seeds with every other member, and its own self-mask seed. */
export interface MaskSecrets {
  pairSeeds: ReadonlyMap<string, Uint8Array>;
  /** 32 random bytes from {@link newSelfMaskSeed}; revealed only if this member is declared a survivor. */
  selfSeed: Uint8Array;
}

/**
 * A fresh self-mask seed. Cryptographic secrets come from the OS CSPRNG (node:crypto), never from a seeded
 * `Rng`: reproducible secrets would be no secrets.
 */
export function newSelfMaskSeed(): Uint8Array {
  return new Uint8Array(randomBytes(32));
}

/**
 * This member's masked input, double-masked as in Bonawitz et al. ("Practical Secure Aggregation for
 * Privacy-Preserving Machine Learning", CCS 2017): fixed-point(values) + PRG(b_self) + Σ_{j > self} PRG(s_ij)
 * − Σ_{j < self} PRG(s_ij) mod 2^32 (peer ids ordered as strings). Pair masks cancel in the sum over all
 * members; the self mask is removed once the member, as a survivor, reveals b_self. A member declared dropped
 * never reveals b_self, so its input stays hidden even if it arrives late, after its pair seeds were revealed.
 */
export function maskInput(values: ArrayLike<number>, selfId: string, secrets: MaskSecrets, fp: FixedPoint, rng?: Rng): Uint32Array {
  const acc = toFixedPoint(values, fp, rng);
  addMask(acc, secrets.selfSeed, 1);
  for (const [peer, seed] of secrets.pairSeeds) {
    if (peer === selfId) throw new SecAggError(SecAggRefusal.DUPLICATE_MEMBER, 'a member has no pair seed with itself');
    addMask(acc, seed, selfId < peer ? 1 : -1);
  }
  return acc;
}

/** What a survivor reveals after the deadline: its self-mask seed and its pair seeds with the dropped members. */
export interface SecAggRevealData {
  selfSeed: Uint8Array;
  pairSeeds: Map<string, Uint8Array>;
}

/**
 * Build this member's reveal for the announced dropped set. Refuses (DUPLICATE_MEMBER) when the member itself
 * is listed as dropped: revealing its self seed then would expose its input to the aggregator.
 */
export function revealFor(selfId: string, secrets: MaskSecrets, dropped: readonly string[]): SecAggRevealData {
  if (dropped.includes(selfId)) throw new SecAggError(SecAggRefusal.DUPLICATE_MEMBER, 'declared dropped: never reveal the self-mask seed');
  const pairSeeds = new Map<string, Uint8Array>();
  for (const d of dropped) {
    const s = secrets.pairSeeds.get(d);
    if (s === undefined) throw new SecAggError(SecAggRefusal.MISSING_SEED, `no pair seed with ${d}`);
    pairSeeds.set(d, s);
  }
  return { selfSeed: secrets.selfSeed, pairSeeds };
}

/**
 * The aggregator's side: sum the survivors' masked inputs, remove each survivor's self mask and the pair masks
 * survivors share with dropped members, from the survivors' reveals. Returns the exact fixed-point sum of the
 * survivors' values, decoded. If a survivor fails to reveal, move it to `dropped`, drop its input and ask the
 * others for their seeds with it (its self mask keeps its input hidden).
 */
export function unmaskSum(
  masked: ReadonlyMap<string, Uint32Array>, dropped: readonly string[], reveals: ReadonlyMap<string, SecAggRevealData>, fp: FixedPoint, length: number,
): { sum: Float64Array; count: number } {
  const survivors = [...masked.keys()];
  for (const d of dropped) if (masked.has(d)) throw new SecAggError(SecAggRefusal.DUPLICATE_MEMBER, `${d} is both a survivor and dropped`);
  if (new Set(dropped).size !== dropped.length) throw new SecAggError(SecAggRefusal.DUPLICATE_MEMBER, 'dropped list has duplicates');
  const acc = new Uint32Array(length);
  for (const [peer, v] of masked) {
    if (v.length !== length) throw new SecAggError(SecAggRefusal.LENGTH_MISMATCH, `${peer}: ${v.length} words, expected ${length}`);
    for (let i = 0; i < length; i++) acc[i] = (acc[i] + v[i]) >>> 0;
  }
  for (const s of survivors) {
    const r = reveals.get(s);
    if (r === undefined) throw new SecAggError(SecAggRefusal.MISSING_SEED, `${s} did not reveal; move it to the dropped set`);
    addMask(acc, r.selfSeed, -1);
    for (const d of dropped) {
      const seed = r.pairSeeds.get(d);
      if (seed === undefined) throw new SecAggError(SecAggRefusal.MISSING_SEED, `${s} did not reveal its seed with dropped ${d}`);
      // s added +PRG if s < d, else −PRG: undo it.
      addMask(acc, seed, s < d ? -1 : 1);
    }
  }
  return { sum: fromFixedPoint(acc, fp), count: survivors.length };
}
