/**
 * Wire side of the rotating-leader protocol (protocols/round.md): constants, the rendezvous leader order, signed
 * member updates and their validation. Pure functions of bytes and a small context; no protocol state.
 */
import { createHash } from 'node:crypto';
import { peerIdFromString } from '@libp2p/peer-id';
import { RefusalReason } from '../mesh/index.ts';
import { decodeUpdate, UpdateError, type ModelUpdate, type UpdateManifest } from '../update/index.ts';
import { GlobalUpdate, SignedUpdate } from './pb/round.ts';

import { ROUND_WIRE_VERSION } from './signals.ts';

export { ROUND_WIRE_VERSION };
/** Most contributors listed in a GlobalUpdate. */
export const MAX_CONTRIBUTORS = 1024;
/** Only the first this-many members of a round's leader order may publish its aggregate. */
export const MAX_LEADER_RANKS = 4;
/** Largest Ed25519 signature field accepted (an Ed25519 signature is 64 bytes). */
export const MAX_SIGNATURE_BYTES = 64;
/**
 * Signed updates above this size go over the `update` topic as announcements and are pulled once per hop over the
 * sync stream (mesh `streamCutoverBytes`): a ~4.5 KB update then crosses each link about once instead of once per
 * gossip duplicate (protocols/round.md "Wire bytes").
 */
export const UPDATE_STREAM_CUTOVER_BYTES = 1024;
/** Topics and stream methods. */
export const UPDATE_TOPIC = 'update';
export const GLOBAL_TOPIC = 'global';
export const ATTEST_TOPIC = 'attest';
export const STATE_METHOD = 'round.state';
export const UPDATE_METHOD = 'round.update';
export const INPUT_METHOD = 'round.input';
export const STEP_METHOD = 'round.step';
export const ATTEST_METHOD = 'round.attest';
/** The downlink residual a round's step left (downlink error feedback; protocols/round.md "Compressed downlink"). */
export const RESIDUAL_METHOD = 'round.residual';

/** Rendezvous (highest-random-weight) order of members for a round: every member computes the same list. */
export function leaderOrder(federation: string, round: number, members: readonly string[]): string[] {
  const score = (id: string): string => createHash('sha256').update(`${federation}|${round}|${id}`).digest('hex');
  return [...new Set(members)].map((id) => [score(id), id] as const).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).map((x) => x[1]);
}

export function sha256(b: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(b).digest());
}

/** What a member signs for its update: "fmfl-update/1|<federation>|" ‖ SHA-256(update). */
export function updateSigningBytes(federation: string, digest: Uint8Array): Uint8Array {
  return Buffer.concat([Buffer.from(`fmfl-update/1|${federation}|`), digest]);
}

/**
 * Seed of the downlink encoding of round `round`'s aggregate: a function of the federation and the round, so every
 * member that recomputes an aggregate also reproduces its encoded (quantized) delta bit for bit.
 */
export function downlinkSeed(federation: string, round: number): number {
  return createHash('sha256').update(`fmfl-downlink/1|${federation}|${round}`).digest().readUInt32LE(0);
}

/** Seed of the 8-bit encoding of round `round`'s downlink residual (error feedback), likewise the same on every member. */
export function residualSeed(federation: string, round: number): number {
  return createHash('sha256').update(`fmfl-downlink-residual/1|${federation}|${round}`).digest().readUInt32LE(0);
}

/** An update as received: decoded, with its encoded bytes' digest and the signed wrapper to relay. */
export interface ReceivedUpdate {
  update: ModelUpdate;
  /** SHA-256 of the encoded Update (what a GlobalUpdate lists). */
  digest: Uint8Array;
  /** The SignedUpdate bytes (served to members that verify an aggregate). */
  signed: Uint8Array;
}

/** Context of validation: the federation, the manifest and the roster check. */
export interface WireContext {
  federation: string;
  manifest: UpdateManifest;
  onRoster(peer: string): boolean;
}

/** Decode an fmfl Update: federation match and `sender` = `author` (when given). */
export function decodeModelUpdate(bytes: Uint8Array, ctx: WireContext, author?: string): ModelUpdate | RefusalReason {
  let u: ModelUpdate;
  try {
    u = decodeUpdate(bytes, ctx.manifest);
  } catch (err) {
    return err instanceof UpdateError ? RefusalReason.INVALID_FIELD : RefusalReason.MALFORMED;
  }
  if (u.federation !== ctx.federation) return RefusalReason.INVALID_FIELD;
  if (author !== undefined && u.sender !== author) return RefusalReason.PEER_MISMATCH;
  return u;
}

/**
 * Open a SignedUpdate: decodes strictly, checks the version, decodes the inner Update, checks that its sender is on
 * the roster (NOT_ALLOWED), equals `author` when given (the gossip signer; PEER_MISMATCH), and that the signature
 * verifies with the sender's key (BAD_SIGNATURE). Never throws.
 */
export async function openSignedUpdate(bytes: Uint8Array, ctx: WireContext, author?: string): Promise<ReceivedUpdate | RefusalReason> {
  let s: SignedUpdate;
  try {
    s = SignedUpdate.decode(bytes);
  } catch {
    return RefusalReason.MALFORMED;
  }
  if (s.version !== ROUND_WIRE_VERSION) return RefusalReason.UNSUPPORTED_VERSION;
  if (s.signature.byteLength === 0 || s.signature.byteLength > MAX_SIGNATURE_BYTES) return RefusalReason.INVALID_FIELD;
  const u = decodeModelUpdate(s.update, ctx, author);
  if (typeof u === 'number') return u;
  if (!ctx.onRoster(u.sender)) return RefusalReason.NOT_ALLOWED;
  const digest = sha256(s.update);
  try {
    const key = peerIdFromString(u.sender).publicKey;
    if (key === undefined || !(await key.verify(updateSigningBytes(ctx.federation, digest), s.signature))) return RefusalReason.BAD_SIGNATURE;
  } catch {
    return RefusalReason.BAD_SIGNATURE;
  }
  return { update: u, digest, signed: bytes };
}

/** A GlobalUpdate (a commitment: no delta) as received: the message and the publisher. */
export interface ReceivedGlobal {
  msg: GlobalUpdate;
  round: number;
  from: string;
  bytes: number;
}

/**
 * Decode and check a GlobalUpdate's shape: version, round, 32-byte hashes, rank < MAX_LEADER_RANKS, contributors
 * sorted, unique, on the roster and matched one-to-one by 32-byte digests. The publisher is `author` (the gossip
 * signer). Whether the publisher holds that rank, and whether the aggregate is right, is checked later.
 */
export function decodeGlobal(payload: Uint8Array, ctx: WireContext, author: string): ReceivedGlobal | RefusalReason {
  let msg: GlobalUpdate;
  try {
    msg = GlobalUpdate.decode(payload, { limits: { contributors: MAX_CONTRIBUTORS, contributorDigests: MAX_CONTRIBUTORS } });
  } catch {
    return RefusalReason.MALFORMED;
  }
  if (msg.version !== ROUND_WIRE_VERSION) return RefusalReason.UNSUPPORTED_VERSION;
  const round = Number(msg.round);
  if (!Number.isSafeInteger(round) || round < 1 || msg.baseHash.length !== 32 || msg.newHash.length !== 32 || msg.leaderRank >= MAX_LEADER_RANKS) {
    return RefusalReason.INVALID_FIELD;
  }
  const c = msg.contributors;
  if (c.length === 0 || c.length !== msg.contributorDigests.length || msg.contributorDigests.some((d) => d.length !== 32)) return RefusalReason.INVALID_FIELD;
  for (let i = 0; i < c.length; i++) {
    if (c[i].length === 0 || c[i].length > 256 || (i > 0 && c[i - 1] >= c[i])) return RefusalReason.INVALID_FIELD;
    if (!ctx.onRoster(c[i])) return RefusalReason.NOT_ALLOWED;
  }
  return { msg, round, from: author, bytes: payload.byteLength };
}
