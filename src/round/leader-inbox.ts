/**
 * Inbound gossip of the leader protocol (protocols/round.md "Validation"): topic validators and handlers of
 * `update`, `global` and `attest`, and the per-round store of validated updates. A validator returns a refusal
 * reason (gossipsub Reject / Ignore) and never throws; handlers only record what the validator accepted.
 */
import { RefusalReason, type MessageMeta } from '../mesh/index.ts';
import { Attestation } from './pb/round.ts';
import { hex } from './state.ts';
import { decodeGlobal, openSignedUpdate, type ReceivedUpdate } from './leader-wire.ts';
import { checkAttestation } from './certificate.ts';
import type { LeaderCore } from './leader-core.ts';

/** Most digests kept servable per round (`round.input`). */
const MAX_DIGESTS_PER_ROUND = 4 * 1024;
/** Most received globals held for consideration. */
const MAX_HELD_GLOBALS = 64;

export async function validateUpdate(c: LeaderCore, payload: Uint8Array, meta: MessageMeta): Promise<RefusalReason | undefined> {
  const r = await openSignedUpdate(payload, c.wire, meta.from.toString());
  if (typeof r === 'number') return r;
  const u = r.update;
  if (u.round !== u.baseVersion + 1) return RefusalReason.INVALID_FIELD;
  if (u.round <= c.state.version - 1) return RefusalReason.REPLAYED; // old round: ignore, no penalty
  if (c.updates.get(u.round)?.has(u.sender)) return RefusalReason.REPLAYED;
  c.opened.set(payload, r);
  return undefined;
}

export function onUpdate(c: LeaderCore, payload: Uint8Array): void {
  const r = c.opened.get(payload);
  if (r) storeUpdate(c, r, payload.byteLength);
}

/** Keep a validated update of a round not yet applied (first one per sender counts; every digest is servable). */
export function storeUpdate(c: LeaderCore, r: ReceivedUpdate, bytes: number): boolean {
  const u = r.update;
  if (u.round < c.state.version) return false;
  let d = c.byDigest.get(u.round);
  if (!d) c.byDigest.set(u.round, (d = new Map()));
  if (d.size < MAX_DIGESTS_PER_ROUND) d.set(hex(r.digest), r);
  if (u.round <= c.state.version) return false;
  let m = c.updates.get(u.round);
  if (!m) c.updates.set(u.round, (m = new Map()));
  if (m.has(u.sender)) return false;
  m.set(u.sender, r);
  c.down.add(u.round, bytes);
  if (c.current?.round === u.round && u.sender !== c.ctx.selfId) c.arrivals.record(Date.now() - c.current.publishedAt);
  c.events.emit('change');
  return true;
}

export function validateGlobal(c: LeaderCore, payload: Uint8Array, meta: MessageMeta): RefusalReason | undefined {
  const g = decodeGlobal(payload, c.wire, meta.from.toString());
  if (typeof g === 'number') return g;
  if (g.round < c.state.version) return RefusalReason.REPLAYED;
  // Only the round's first MAX_LEADER_RANKS members over the roster may publish its aggregate (in the view or not).
  if (!c.mayAggregate(g.from, g.round)) return RefusalReason.APPLICATION;
  return undefined;
}

export function onGlobal(c: LeaderCore, payload: Uint8Array, meta: MessageMeta): void {
  const g = decodeGlobal(payload, c.wire, meta.from.toString());
  if (typeof g === 'number' || g.round <= c.state.version) return;
  if (c.globals.length >= MAX_HELD_GLOBALS) c.globals.shift();
  c.down.add(g.round, g.bytes);
  c.globals.push(g);
  c.events.emit('change');
}

export async function validateAttestation(c: LeaderCore, payload: Uint8Array, meta: MessageMeta): Promise<RefusalReason | undefined> {
  let a: Attestation;
  try {
    a = Attestation.decode(payload);
  } catch {
    return RefusalReason.MALFORMED;
  }
  if (a.signer !== meta.from.toString()) return RefusalReason.PEER_MISMATCH;
  if (Number(a.round) < c.state.version - 2) return RefusalReason.REPLAYED;
  return checkAttestation(a, c.ctx.federation, (p) => c.isMember(p));
}

export function onAttestation(c: LeaderCore, payload: Uint8Array): void {
  let a: Attestation;
  try {
    a = Attestation.decode(payload);
  } catch {
    return;
  }
  if (c.attestations.add(a)) {
    c.refreshCertified();
    c.events.emit('change');
  }
}
