/**
 * Attestations and state certificates (protocols/round.md, "Certified state"). After verifying (recomputing) and
 * applying a round's step, a member signs (round, base hash, new hash) with its libp2p key and gossips it on
 * `attest`. A state is final once a majority of the roster has attested its hash; those attestations are its
 * certificate, which is what justifies adopting a pulled state, never one peer's word.
 */
import { peerIdFromString } from '@libp2p/peer-id';
import { RefusalReason } from '../mesh/index.ts';
import { Attestation } from './pb/round.ts';
import { MAX_SIGNATURE_BYTES, ROUND_WIRE_VERSION } from './leader-wire.ts';
import { hex } from './state.ts';

/** Most attestations in one certificate (the roster cap). */
export const MAX_CERTIFICATE_ENTRIES = 4096;
/** Rounds of attestations kept below the current version (older ones are dropped). */
export const ATTESTATION_KEEP_ROUNDS = 4;
/** Most distinct new-state hashes tracked per round (equivocating leaders cannot grow memory further). */
export const MAX_HASHES_PER_ROUND = 16;

/** Smallest majority of `n` members: more than half. */
export function majority(n: number): number {
  return Math.floor(n / 2) + 1;
}

/** What an attestation signs: "fmfl-attest/1|<federation>|<round>|" ‖ base hash ‖ new hash. */
export function attestationBytes(federation: string, round: number, baseHash: Uint8Array, newHash: Uint8Array): Uint8Array {
  return Buffer.concat([Buffer.from(`fmfl-attest/1|${federation}|${round}|`), baseHash, newHash]);
}

/** Build this node's attestation (signed with its identity key). */
export async function makeAttestation(
  sign: (data: Uint8Array) => Promise<Uint8Array>, federation: string, signer: string, round: number, baseHash: Uint8Array, newHash: Uint8Array,
): Promise<Attestation> {
  const signature = await sign(attestationBytes(federation, round, baseHash, newHash));
  return { version: ROUND_WIRE_VERSION, round: BigInt(round), baseHash, newHash, signer, signature };
}

/** Check one attestation's fields, roster membership and signature; never throws. */
export async function checkAttestation(a: Attestation, federation: string, onRoster: (p: string) => boolean): Promise<RefusalReason | undefined> {
  if (a.version !== ROUND_WIRE_VERSION) return RefusalReason.UNSUPPORTED_VERSION;
  const round = Number(a.round);
  if (!Number.isSafeInteger(round) || round < 1 || a.baseHash.length !== 32 || a.newHash.length !== 32) return RefusalReason.INVALID_FIELD;
  if (a.signature.length === 0 || a.signature.length > MAX_SIGNATURE_BYTES || a.signer.length === 0 || a.signer.length > 256) return RefusalReason.INVALID_FIELD;
  if (!onRoster(a.signer)) return RefusalReason.NOT_ALLOWED;
  try {
    const key = peerIdFromString(a.signer).publicKey;
    if (key === undefined || !(await key.verify(attestationBytes(federation, round, a.baseHash, a.newHash), a.signature))) return RefusalReason.BAD_SIGNATURE;
  } catch {
    return RefusalReason.BAD_SIGNATURE;
  }
  return undefined;
}

/**
 * Whether `cert` certifies the state of version `round` with hash `hash`: at least `need` attestations of distinct
 * roster members, each for (round, hash) and correctly signed. Never throws.
 */
export async function checkCertificate(
  cert: readonly Attestation[], round: number, hash: Uint8Array, need: number, federation: string, onRoster: (p: string) => boolean,
): Promise<boolean> {
  if (cert.length > MAX_CERTIFICATE_ENTRIES || need < 1) return false;
  const want = hex(hash);
  const signers = new Set<string>();
  for (const a of cert) {
    if (Number(a.round) !== round || hex(a.newHash) !== want || signers.has(a.signer)) continue;
    if ((await checkAttestation(a, federation, onRoster)) !== undefined) continue;
    signers.add(a.signer);
    if (signers.size >= need) return true;
  }
  return false;
}

/** Verified attestations by round and new-state hash, bounded. */
export class AttestationStore {
  private readonly byRound = new Map<number, Map<string, Map<string, Attestation>>>();

  /** Add a verified attestation; false when it was already known or the round is full. */
  add(a: Attestation): boolean {
    const round = Number(a.round);
    let hashes = this.byRound.get(round);
    if (!hashes) this.byRound.set(round, (hashes = new Map()));
    const h = hex(a.newHash);
    let signers = hashes.get(h);
    if (!signers) {
      if (hashes.size >= MAX_HASHES_PER_ROUND) return false;
      hashes.set(h, (signers = new Map()));
    }
    if (signers.has(a.signer) || signers.size >= MAX_CERTIFICATE_ENTRIES) return false;
    signers.set(a.signer, a);
    return true;
  }

  /** Whether `signer` already attested something for `round`. */
  has(round: number, hash: Uint8Array, signer: string): boolean {
    return this.byRound.get(round)?.get(hex(hash))?.has(signer) ?? false;
  }

  /** Attestations for (round, hash) by distinct signers. */
  for(round: number, hash: Uint8Array): Attestation[] {
    return [...(this.byRound.get(round)?.get(hex(hash))?.values() ?? [])];
  }

  /** The certificate of (round, hash) when at least `need` distinct members attested it, else null. */
  certificate(round: number, hash: Uint8Array, need: number): Attestation[] | null {
    const a = this.for(round, hash);
    return a.length >= need ? a : null;
  }

  /** The newest round above `above` with a certified hash (at least `need` distinct signers), or null. */
  newestCertified(above: number, need: number): { round: number; attestations: Attestation[] } | null {
    let best: { round: number; attestations: Attestation[] } | null = null;
    for (const [round, hashes] of this.byRound) {
      if (round <= above || (best && round <= best.round)) continue;
      for (const signers of hashes.values()) if (signers.size >= need && need >= 1) best = { round, attestations: [...signers.values()] };
    }
    return best;
  }

  /** Forget rounds older than `round - ATTESTATION_KEEP_ROUNDS`. */
  prune(round: number): void {
    for (const r of this.byRound.keys()) if (r < round - ATTESTATION_KEEP_ROUNDS) this.byRound.delete(r);
  }
}
