/**
 * Attestations and state certificates (protocols/round.md, "Certified state"). After verifying (recomputing) and
 * applying a round's step, a member signs (round, base hash, new hash[, residual digest]) with its libp2p key and gossips it on
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
/**
 * Most attestations kept per signer, over all rounds: an honest member attests at most two hashes a round (its own
 * aggregate as leader, and the certified state), and the store keeps ATTESTATION_KEEP_ROUNDS rounds below the current
 * version plus the rounds a lagging node hears ahead of it. A signer over the cap loses its oldest entries, so one
 * member flooding made-up hashes or far-future rounds displaces only its own attestations (memory: roster × this).
 */
export const MAX_ATTESTATIONS_PER_SIGNER = 16;
/** Most distinct hashes one signer may attest for one round (an honest member attests at most two). */
export const MAX_HASHES_PER_SIGNER_ROUND = 2;

/** Smallest majority of `n` members: more than half. */
export function majority(n: number): number {
  return Math.floor(n / 2) + 1;
}

/**
 * What an attestation signs: "fmfl-attest/1|<federation>|<round>|" ‖ base hash ‖ new hash ‖ residual digest (empty,
 * or the 32-byte SHA-256 of the downlink residual the step left: the fixed lengths keep the two forms apart).
 */
export function attestationBytes(federation: string, round: number, baseHash: Uint8Array, newHash: Uint8Array, residualDigest: Uint8Array = new Uint8Array(0)): Uint8Array {
  return Buffer.concat([Buffer.from(`fmfl-attest/1|${federation}|${round}|`), baseHash, newHash, residualDigest]);
}

/** Build this node's attestation (signed with its identity key); `residualDigest` when it computed the step's residual. */
export async function makeAttestation(
  sign: (data: Uint8Array) => Promise<Uint8Array>, federation: string, signer: string, round: number, baseHash: Uint8Array, newHash: Uint8Array,
  residualDigest: Uint8Array = new Uint8Array(0),
): Promise<Attestation> {
  const signature = await sign(attestationBytes(federation, round, baseHash, newHash, residualDigest));
  return { version: ROUND_WIRE_VERSION, round: BigInt(round), baseHash, newHash, signer, signature, residualDigest };
}

/** Check one attestation's fields, roster membership and signature; never throws. */
export async function checkAttestation(a: Attestation, federation: string, onRoster: (p: string) => boolean): Promise<RefusalReason | undefined> {
  if (a.version !== ROUND_WIRE_VERSION) return RefusalReason.UNSUPPORTED_VERSION;
  const round = Number(a.round);
  if (!Number.isSafeInteger(round) || round < 1 || a.baseHash.length !== 32 || a.newHash.length !== 32 || (a.residualDigest.length !== 0 && a.residualDigest.length !== 32)) return RefusalReason.INVALID_FIELD;
  if (a.signature.length === 0 || a.signature.length > MAX_SIGNATURE_BYTES || a.signer.length === 0 || a.signer.length > 256) return RefusalReason.INVALID_FIELD;
  if (!onRoster(a.signer)) return RefusalReason.NOT_ALLOWED;
  try {
    const key = peerIdFromString(a.signer).publicKey;
    if (key === undefined || !(await key.verify(attestationBytes(federation, round, a.baseHash, a.newHash, a.residualDigest), a.signature))) return RefusalReason.BAD_SIGNATURE;
  } catch {
    return RefusalReason.BAD_SIGNATURE;
  }
  return undefined;
}

/**
 * The attestations of `cert` that certify the state of version `round` with hash `hash`: at least `need` of distinct
 * roster members, each for (round, hash) and correctly signed; null when there are fewer. Entries for anything else,
 * repeated signers and bad signatures are left out (each signer's signature is checked at most once). Never throws.
 */
export async function certifyingSubset(
  cert: readonly Attestation[], round: number, hash: Uint8Array, need: number, federation: string, onRoster: (p: string) => boolean,
): Promise<Attestation[] | null> {
  if (cert.length > MAX_CERTIFICATE_ENTRIES || need < 1) return null;
  const want = hex(hash);
  const tried = new Set<string>();
  const good: Attestation[] = [];
  for (const a of cert) {
    if (Number(a.round) !== round || hex(a.newHash) !== want || tried.has(a.signer)) continue;
    tried.add(a.signer);
    if ((await checkAttestation(a, federation, onRoster)) !== undefined) continue;
    good.push(a);
    if (good.length >= need) return good;
  }
  return null;
}

/** Whether `cert` certifies the state of version `round` with hash `hash` (certifyingSubset). Never throws. */
export async function checkCertificate(
  cert: readonly Attestation[], round: number, hash: Uint8Array, need: number, federation: string, onRoster: (p: string) => boolean,
): Promise<boolean> {
  return (await certifyingSubset(cert, round, hash, need, federation, onRoster)) !== null;
}

/** Verified attestations by round and new-state hash, bounded per signer (MAX_ATTESTATIONS_PER_SIGNER). */
export class AttestationStore {
  private readonly byRound = new Map<number, Map<string, Map<string, Attestation>>>();
  /** Each signer's entries, oldest first, as `round|hash`. */
  private readonly bySigner = new Map<string, string[]>();

  /** Add a verified attestation; false when it was already known or the signer attested enough hashes this round. */
  add(a: Attestation): boolean {
    const round = Number(a.round);
    const h = hex(a.newHash);
    const mine = this.bySigner.get(a.signer) ?? [];
    if (mine.includes(`${round}|${h}`)) return false;
    if (mine.filter((k) => k.startsWith(`${round}|`)).length >= MAX_HASHES_PER_SIGNER_ROUND) return false;
    let hashes = this.byRound.get(round);
    if (!hashes) this.byRound.set(round, (hashes = new Map()));
    let signers = hashes.get(h);
    if (!signers) hashes.set(h, (signers = new Map()));
    signers.set(a.signer, a);
    mine.push(`${round}|${h}`);
    while (mine.length > MAX_ATTESTATIONS_PER_SIGNER) this.drop(a.signer, mine.shift()!);
    this.bySigner.set(a.signer, mine);
    return true;
  }

  private drop(signer: string, key: string): void {
    const [r, h] = key.split('|');
    const hashes = this.byRound.get(Number(r));
    const signers = hashes?.get(h);
    signers?.delete(signer);
    if (signers?.size === 0) hashes!.delete(h);
    if (hashes?.size === 0) this.byRound.delete(Number(r));
  }

  /** Attestations held, over every round and hash. */
  get size(): number {
    let n = 0;
    for (const keys of this.bySigner.values()) n += keys.length;
    return n;
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

  /** Hashes of `round` other than `not` that at least `need` distinct members attested, with their attestations. */
  certifiedOthers(round: number, not: Uint8Array, need: number): { hash: Uint8Array; attestations: Attestation[] }[] {
    const out: { hash: Uint8Array; attestations: Attestation[] }[] = [];
    const skip = hex(not);
    for (const [h, signers] of this.byRound.get(round) ?? []) {
      if (h === skip || need < 1 || signers.size < need) continue;
      const attestations = [...signers.values()];
      out.push({ hash: attestations[0].newHash, attestations });
    }
    return out;
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
    for (const [signer, keys] of this.bySigner) {
      const kept = keys.filter((k) => Number(k.split('|')[0]) >= round - ATTESTATION_KEEP_ROUNDS);
      if (kept.length === 0) this.bySigner.delete(signer);
      else this.bySigner.set(signer, kept);
    }
  }
}
