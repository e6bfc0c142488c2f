/**
 * The leader protocol's sync stream (protocols/round.md "Certified state", "One round"): serving `round.state`,
 * `round.update` and `round.input`, and pulling from peers: missing updates (the leader), the listed inputs of a
 * global (a verifying member), and certified state (a node that is behind). Everything pulled is validated like
 * gossip; bad requests are refused with a typed `RefusalError`.
 */
import { RefusalError, RefusalReason } from '../mesh/index.ts';
import type { ModelUpdate } from '../update/index.ts';
import { type Attestation, AttestRequest, AttestResponse, InputRequest, StateRequest, StateResponse, StepRequest, UpdateRequest } from './pb/round.ts';
import { applyDelta, decodeState, encodeState, hex, sameHash, type GlobalState } from './state.ts';
import { ATTEST_METHOD, decodeModelUpdate, INPUT_METHOD, openSignedUpdate, RESIDUAL_METHOD, ROUND_WIRE_VERSION, sha256, STATE_METHOD, STEP_METHOD, UPDATE_METHOD, type ReceivedGlobal } from './leader-wire.ts';
import { certifyingSubset, checkAttestation, majority, MAX_CERTIFICATE_ENTRIES } from './certificate.ts';
import { storeUpdate } from './leader-inbox.ts';
import type { LeaderCore } from './leader-core.ts';
import { VerifyRefusal } from './verify.ts';
import { decodeRequest } from './signals.ts';

/** State requests a catch-up keeps in flight at once. */
export const CATCH_UP_PARALLEL = 8;
/** Deadline of pulling one missing input or update over the sync stream. */
const PULL_TIMEOUT_MS = 10_000;
/** Deadline of pulling a state. */
const STATE_PULL_TIMEOUT_MS = 15_000;
/** Largest update or state pulled over the sync stream. */
const MAX_PULL_BYTES = 64 * 1024 * 1024;
/** Most members asked for a round's step besides its publisher (those that attested its hash). */
const STEP_SOURCES = 3;
/** Largest `round.attest` response (MAX_CERTIFICATE_ENTRIES attestations of ~200 B). */
const MAX_ATTEST_RESPONSE_BYTES = 1024 * 1024;

export function serveState(c: LeaderCore, body: Uint8Array): Uint8Array {
  const req = decodeRequest(StateRequest, body, 'StateRequest');
  c.refreshCertified();
  const cs = c.certified;
  if (!cs || req.haveVersion >= BigInt(cs.state.version)) throw new RefusalError(RefusalReason.UNAVAILABLE, 'no certified state ahead of the requester');
  // Every attestation held for the state (each checked when it arrived), not only the first majority: a requester
  // whose majority is larger (an open mesh counts its own view), or that checks residual digests, may need more.
  const held = c.attestations.for(cs.state.version, cs.state.hash);
  return StateResponse.encode({
    version: ROUND_WIRE_VERSION,
    globalVersion: BigInt(cs.state.version),
    hash: cs.state.hash,
    state: encodeState(cs.state, c.ctx.manifest, c.ctx.federation, c.ctx.selfId, c.ctx.loraRank),
    certificate: (held.length > cs.cert.length ? held : cs.cert).slice(0, MAX_CERTIFICATE_ENTRIES),
  });
}

export function serveUpdate(c: LeaderCore, body: Uint8Array): Uint8Array {
  const req = decodeRequest(UpdateRequest, body, 'UpdateRequest');
  if (!c.myUpdate || BigInt(c.myUpdate.round) !== req.round) throw new RefusalError(RefusalReason.UNAVAILABLE, 'no update for that round');
  return c.myUpdate.bytes;
}

export function serveInput(c: LeaderCore, body: Uint8Array): Uint8Array {
  const req = decodeRequest(InputRequest, body, 'InputRequest');
  if (req.digest.length !== 32) throw new RefusalError(RefusalReason.INVALID_FIELD, 'digest is not 32 bytes');
  const r = c.byDigest.get(Number(req.round))?.get(hex(req.digest));
  if (!r || r.update.sender !== req.sender) throw new RefusalError(RefusalReason.UNAVAILABLE, 'no such input here');
  return r.signed;
}

/** What `steps` or `residuals` holds for a StepRequest's (round, new_hash), or UNAVAILABLE naming `what`. */
function servedByRoundHash(held: ReadonlyMap<number, { hash: Uint8Array; bytes: Uint8Array }>, body: Uint8Array, what: string): Uint8Array {
  const req = decodeRequest(StepRequest, body, 'StepRequest');
  if (req.newHash.length !== 32) throw new RefusalError(RefusalReason.INVALID_FIELD, 'new_hash is not 32 bytes');
  const s = held.get(Number(req.round));
  if (!s || !sameHash(s.hash, req.newHash)) throw new RefusalError(RefusalReason.UNAVAILABLE, `no such ${what} here`);
  return s.bytes;
}

export function serveStep(c: LeaderCore, body: Uint8Array): Uint8Array {
  return servedByRoundHash(c.steps, body, 'step');
}

/** The downlink residual the step of (round, new_hash) left (downlink error feedback), as its 8-bit Update encoding. */
export function serveResidual(c: LeaderCore, body: Uint8Array): Uint8Array {
  return servedByRoundHash(c.residuals, body, 'residual');
}

/**
 * Downlink error feedback: pull the residual the step that made this node's current state left (`round.residual`,
 * StepRequest{round = version, new_hash = state hash}) from `first` (the step's publisher), then from up to
 * STEP_SOURCES members of that round's committee that attested the state (those whose attestation carries the
 * vouched digest first). A response is taken only when a committee majority vouches for its SHA-256
 * (vouchedDigest); then decoded strictly (an fmfl Update of the round, no prototypes) and kept as this node's
 * residual (`pulled`). False when no source served a vouched one: retryResidual tries again as attestations arrive.
 */
export async function pullResidual(c: LeaderCore, first: string | undefined): Promise<boolean> {
  const st = c.state;
  const body = StepRequest.encode({ version: ROUND_WIRE_VERSION, round: BigInt(st.version), newHash: st.hash });
  const com = c.committee(st.version) ?? c.ranked();
  const vouched = vouchedDigest(c, st.version, st.hash);
  const held = c.attestations.for(st.version, st.hash).filter((a) => a.signer !== first && com.includes(a.signer));
  const vouches = (a: Attestation): number => (vouched && sameHash(a.residualDigest, vouched) ? 1 : 0);
  const attesters = held.sort((a, b) => vouches(b) - vouches(a)).map((a) => a.signer);
  const sources = [...(first ? [first] : []), ...attesters].filter((p) => p !== c.ctx.selfId).slice(0, 1 + STEP_SOURCES);
  for (const src of sources) {
    let bytes: Uint8Array;
    try {
      bytes = await c.ctx.mesh.request(src, RESIDUAL_METHOD, body, { timeoutMs: PULL_TIMEOUT_MS, maxResponseBytes: MAX_PULL_BYTES });
    } catch (err) {
      c.ctx.logger.debug({ src, round: st.version, err: (err as Error).message }, 'pulling a downlink residual failed');
      continue;
    }
    if (c.state !== st) return false;
    const vouchedNow = vouchedDigest(c, st.version, st.hash);
    if (!vouchedNow || !sameHash(vouchedNow, sha256(bytes))) {
      c.refuse(VerifyRefusal.RESIDUAL_UNVOUCHED, { round: st.version, src });
      continue;
    }
    const u = decodeModelUpdate(bytes, c.wire);
    if (typeof u === 'number' || u.round !== st.version || u.baseVersion !== st.version - 1 || u.prototypes.length > 0) continue;
    c.down.add(st.version, bytes.byteLength);
    c.downRes = { version: st.version, residual: { tensors: u.deltas, bytes }, pulled: true };
    c.residuals.set(st.version, { hash: st.hash, bytes });
    return true;
  }
  c.ctx.logger.debug({ round: st.version }, 'no member served the downlink residual: this node takes the next step on a certificate');
  return false;
}

/**
 * The residual digest of the state (round, hash): the one attested (Attestation residual_digest) by a majority of the
 * round's committee, or without a committee by a roster majority (the certificate's count), else null. Members that
 * recomputed the round computed the residual bit for bit, so an honest majority vouches for exactly one digest; one
 * member serving another residual is not enough, whoever it is.
 */
export function vouchedDigest(c: LeaderCore, round: number, hash: Uint8Array): Uint8Array | null {
  const com = c.committee(round);
  const need = com ? majority(com.length) : c.certNeed();
  if (need < 1) return null;
  const count = new Map<string, { digest: Uint8Array; n: number }>();
  for (const a of c.attestations.for(round, hash)) {
    if (a.residualDigest.length !== 32 || (com && !com.includes(a.signer))) continue;
    const k = hex(a.residualDigest);
    const e = count.get(k) ?? { digest: a.residualDigest, n: 0 };
    e.n++;
    count.set(k, e);
  }
  for (const e of count.values()) if (e.n >= need) return e.digest;
  return null;
}

/**
 * Downlink error feedback: a member on the next round's committee that holds no residual for its state pulls it again
 * once the attestations it holds vouch for one. A pull refused for want of vouchers (a committee member that attested
 * without a digest, or whose attestation had not arrived yet) would otherwise leave it unable to recompute or lead
 * until its next applied step, and enough such joiners would leave the next committee without a majority. At most
 * one pull at a time and one per leader timeout; the round loop calls it on every change.
 */
export function retryResidual(c: LeaderCore): void {
  const st = c.state;
  if (!c.downlinkEf || c.secagg || st.version === 0 || c.downRes?.version === st.version || c.residualPulling) return;
  if (!c.knowsServerState() || !c.verifies(st.version + 1)) return;
  if (Date.now() - c.residualRetryAt < c.opts.leaderTimeoutMs || vouchedDigest(c, st.version, st.hash) === null) return;
  c.residualRetryAt = Date.now();
  c.residualPulling = true;
  void pullResidual(c, undefined).finally(() => {
    c.residualPulling = false;
    c.events.emit('change');
  });
}

/** The attestations this node holds for (round, new_hash): what a member lacking that state's certificate pulls. */
export function serveAttestations(c: LeaderCore, body: Uint8Array): Uint8Array {
  const req = decodeRequest(AttestRequest, body, 'AttestRequest');
  const round = Number(req.round);
  if (!Number.isSafeInteger(round) || round < 1 || req.newHash.length !== 32) throw new RefusalError(RefusalReason.INVALID_FIELD, 'round or new_hash out of range');
  const held = c.attestations.for(round, req.newHash);
  if (held.length === 0) throw new RefusalError(RefusalReason.UNAVAILABLE, 'no attestations of that state here');
  return AttestResponse.encode({ version: ROUND_WIRE_VERSION, attestations: held.slice(0, MAX_CERTIFICATE_ENTRIES) });
}

/** Why a step pull did not give a state: nobody served it, or the publisher served one that misses the hash. */
export type StepPull = { next: GlobalState; bytes: Uint8Array; deltas: Map<string, Float32Array> } | 'unavailable' | 'mismatch';

/**
 * Member side, when it cannot recompute: pull the step of `g` from its publisher, then from up to STEP_SOURCES
 * members that attested its hash. A response is decoded strictly (an fmfl Update for the round, sender = the
 * publisher) and accepted only if applying it to `base` gives `new_hash`. 'mismatch' only when the publisher itself
 * served a wrong step (evidence against it); a wrong step from anyone else is skipped.
 */
export async function pullStep(c: LeaderCore, g: ReceivedGlobal, base: GlobalState): Promise<StepPull> {
  const body = StepRequest.encode({ version: ROUND_WIRE_VERSION, round: BigInt(g.round), newHash: g.msg.newHash });
  const attesters = c.attestations.for(g.round, g.msg.newHash).map((a) => a.signer).filter((p) => p !== g.from && p !== c.ctx.selfId);
  let result: StepPull = 'unavailable';
  for (const src of [g.from, ...attesters.slice(0, STEP_SOURCES)]) {
    if (src === c.ctx.selfId) continue;
    let bytes: Uint8Array;
    try {
      bytes = await c.ctx.mesh.request(src, STEP_METHOD, body, { timeoutMs: PULL_TIMEOUT_MS, maxResponseBytes: MAX_PULL_BYTES });
    } catch (err) {
      c.ctx.logger.debug({ src, round: g.round, err: (err as Error).message }, 'pulling a step failed');
      continue;
    }
    const u = decodeModelUpdate(bytes, c.wire, g.from);
    let next: GlobalState | null = null;
    try {
      next = typeof u === 'number' || u.round !== g.round || u.baseVersion !== g.round - 1 ? null : applyDelta(base, u.deltas, u.prototypes, c.ctx.manifest);
    } catch {
      next = null;
    }
    if (next && typeof u !== 'number' && sameHash(next.hash, g.msg.newHash)) {
      c.down.add(g.round, bytes.byteLength);
      return { next, bytes, deltas: u.deltas };
    }
    if (src === g.from) result = 'mismatch';
  }
  return result;
}

/** Leader side: pull the updates of members that have not arrived by gossip (validated like gossip). */
export async function pullMissing(c: LeaderCore, round: number): Promise<void> {
  const have = c.updates.get(round) ?? new Map();
  const missing = c.ctx.members().filter((p) => p !== c.ctx.selfId && !have.has(p) && !c.withheld.excused(p, round));
  const body = UpdateRequest.encode({ version: ROUND_WIRE_VERSION, round: BigInt(round) });
  await Promise.all(missing.map(async (peer) => {
    try {
      const bytes = await c.ctx.mesh.request(peer, UPDATE_METHOD, body, { timeoutMs: PULL_TIMEOUT_MS, maxResponseBytes: MAX_PULL_BYTES });
      const r = await openSignedUpdate(bytes, c.wire, peer);
      if (typeof r !== 'number' && r.update.round === round && r.update.baseVersion === round - 1) storeUpdate(c, r, bytes.byteLength);
    } catch (err) {
      c.ctx.logger.debug({ peer, err: (err as Error).message }, 'pulling a missing update failed');
    }
  }));
}

/** Member side: the listed inputs of a global, pulling those it lacks from the publisher, then the contributor. */
export async function gatherInputs(c: LeaderCore, g: ReceivedGlobal): Promise<ModelUpdate[] | null> {
  const round = g.round;
  const wanted = g.msg.contributors.map((s, i) => ({ sender: s, digest: g.msg.contributorDigests[i] }));
  const got = await Promise.all(wanted.map(async ({ sender, digest }) => {
    const have = c.byDigest.get(round)?.get(hex(digest));
    if (have && have.update.sender === sender) return have.update;
    const body = InputRequest.encode({ version: ROUND_WIRE_VERSION, round: BigInt(round), sender, digest });
    for (const src of new Set([g.from, sender])) {
      if (src === c.ctx.selfId) continue;
      try {
        const bytes = await c.ctx.mesh.request(src, INPUT_METHOD, body, { timeoutMs: PULL_TIMEOUT_MS, maxResponseBytes: MAX_PULL_BYTES });
        const r = await openSignedUpdate(bytes, c.wire, sender);
        if (typeof r === 'number' || !sameHash(r.digest, digest) || r.update.round !== round || r.update.baseVersion !== round - 1) continue;
        storeUpdate(c, r, bytes.byteLength);
        return r.update;
      } catch (err) {
        c.ctx.logger.debug({ src, sender, err: (err as Error).message }, 'pulling an aggregate input failed');
      }
    }
    return null;
  }));
  return got.every((u) => u !== null) ? (got as ModelUpdate[]) : null;
}

/**
 * Pull `peer`'s certified state if it is ahead; true if adopted. Refused: no valid certificate (a majority of
 * distinct roster attestations over its hash), past the last round, or not ahead.
 */
export async function syncFrom(c: LeaderCore, peer: string, replace?: Uint8Array): Promise<boolean> {
  try {
    // With `replace` (replaceUncertified): this node's own version is also taken, but only with exactly that hash.
    const have = replace ? c.state.version - 1 : c.state.version;
    // Checked against the live state after every await: catch-up pulls from several members at once, and a slower
    // answer must not replace a newer state another pull adopted meanwhile (nor adopt the same replacement twice).
    const ahead = (version: number, hash: Uint8Array): boolean => version > c.state.version
      || (replace !== undefined && version === c.state.version && sameHash(hash, replace) && !sameHash(c.state.hash, replace));
    const body = StateRequest.encode({ version: ROUND_WIRE_VERSION, haveVersion: BigInt(have) });
    const res = StateResponse.decode(await c.ctx.mesh.request(peer, STATE_METHOD, body, { timeoutMs: STATE_PULL_TIMEOUT_MS, maxResponseBytes: MAX_PULL_BYTES }), {
      limits: { certificate: MAX_CERTIFICATE_ENTRIES },
    });
    if (res.version !== ROUND_WIRE_VERSION || res.hash.length !== 32) return false;
    const version = Number(res.globalVersion);
    if (!Number.isSafeInteger(version) || !ahead(version, res.hash)) return false;
    if (c.opts.maxRounds !== undefined && version > c.opts.maxRounds) {
      c.refuse(VerifyRefusal.PAST_LAST_ROUND, { from: peer, version, maxRounds: c.opts.maxRounds });
      return false;
    }
    const cert = await certifyingSubset(res.certificate, version, res.hash, c.certNeed(), c.ctx.federation, (p) => c.isMember(p));
    if (cert === null) {
      c.refuse(VerifyRefusal.UNCERTIFIED_STATE, { from: peer, version, attestations: res.certificate.length, need: c.certNeed() });
      return false;
    }
    const st = decodeState(res.state, c.ctx.manifest, res.hash, c.ctx.federation);
    if (st.version !== version || !ahead(version, res.hash)) return false;
    c.down.add(c.state.version + 1, res.state.byteLength);
    c.ctx.logger.info({ from: peer, version: st.version, certifiedBy: res.certificate.length }, 'pulled certified global state');
    // Only the checked entries: anything else a responder put in its certificate (other rounds, other hashes, bad
    // signatures) would otherwise sit in the store as if verified, and count as committee attestations.
    for (const a of cert) c.attestations.add(a);
    c.adopt(st);
    c.certified = { state: st, cert };
    return true;
  } catch (err) {
    c.ctx.logger.debug({ peer, err: (err as Error).message }, 'state sync failed');
    return false;
  }
}

/**
 * Ask members for a newer certified state (restart / late join / after a partition). True if the state advanced.
 * With `batch`, only the next CATCH_UP_PARALLEL members (rotating, so repeated calls cover every member): the periodic
 * pull of a node still waiting in a round. Asking all N-1 members every leader timeout was N·(N-1) requests per
 * timeout in the federation, nearly all answered "not ahead" (issue 17: UNAVAILABLE refusals by the thousand at 64
 * in-process nodes while round 1 was slow).
 */
export async function catchUp(c: LeaderCore, batch = false): Promise<boolean> {
  let advanced = false;
  let peers = c.ctx.members().filter((p) => p !== c.ctx.selfId);
  if (batch && peers.length > CATCH_UP_PARALLEL) {
    const k = (c.catchUpOffset++ * CATCH_UP_PARALLEL) % peers.length;
    peers = [...peers.slice(k), ...peers.slice(0, k)].slice(0, CATCH_UP_PARALLEL);
  }
  // CATCH_UP_PARALLEL requests at a time: one after another, N-1 round trips made every node of a fresh
  // N-node federation wait minutes before round 1 at N = 32 in one process (issue 17).
  for (let i = 0; i < peers.length; i += CATCH_UP_PARALLEL) {
    const got = await Promise.all(peers.slice(i, i + CATCH_UP_PARALLEL).map(async (p) => syncFrom(c, p)));
    if (got.some(Boolean)) advanced = true;
  }
  return advanced;
}

/**
 * A straggler's pull: when the attestations this node holds certify a version ahead of it, pull that certified state
 * from its signers (they hold it). For the next version only once this node's deadline plus one leader timeout
 * passed in that round, and never while it holds that round's certified global or its own certified aggregate
 * (applied instead, keeping the server state). At most once per version and leader timeout. True if adopted.
 */
export async function pullCertifiedAhead(c: LeaderCore): Promise<boolean> {
  const ahead = c.attestations.newestCertified(c.state.version, c.certNeed());
  if (!ahead || (c.opts.maxRounds !== undefined && ahead.round > c.opts.maxRounds)) return false;
  const hash = ahead.attestations[0].newHash;
  const now = Date.now();
  if (ahead.round === c.state.version + 1) {
    // The next version: this node's own certified aggregate (adoptPending), or a held global, is applied instead; a
    // pull loses the replicated server state, so it waits until the round's slots have passed on its own clock.
    if (c.pending?.round === ahead.round && sameHash(c.pending.step.next.hash, hash)) return false;
    if (c.globals.some((g) => g.round === ahead.round && sameHash(g.msg.newHash, hash))) return false;
    if (c.current?.round === ahead.round && now < c.current.publishedAt + c.deadlineMs() + c.opts.leaderTimeoutMs) return false;
  }
  if (now - (c.aheadTried.get(ahead.round) ?? -Infinity) < c.opts.leaderTimeoutMs) return false;
  c.aheadTried.set(ahead.round, now);
  c.ctx.logger.info({ version: c.state.version, certified: ahead.round, signers: ahead.attestations.length }, 'a version ahead is certified: pulling it');
  for (const a of ahead.attestations) {
    if (a.signer !== c.ctx.selfId && (await syncFrom(c, a.signer))) return true;
  }
  return false;
}

/**
 * A fork of this node's own version: it applied a verified global that the federation did not certify, and a roster
 * majority certified another hash of that version. Under load two leaders' slots open at different times on
 * different members' clocks (rank 0 late, rank 1 already leading): each global verifies, members split between them,
 * and only one can gather a majority (measured at 64 in-process nodes: 19 of 64 ended round 3 on the other hash).
 * The certified one is the federation's state: pull it from its signers (its certificate is checked again, like any
 * state pull). In the middle of a run the next round's certified state would also move this node; after the last
 * round nothing else would. At most once per version and leader timeout. True if replaced.
 */
export async function replaceUncertified(c: LeaderCore): Promise<boolean> {
  const other = replacementOf(c);
  if (!other) return false;
  const v = c.state.version;
  c.replaceTried.set(v, Date.now());
  c.ctx.logger.warn({ version: v, mine: hex(c.state.hash).slice(0, 12), certified: hex(other.hash).slice(0, 12), signers: other.attestations.length },
    'this node applied a global the federation did not certify; a roster majority certified another state of this version: pulling it');
  for (const a of other.attestations) {
    if (a.signer !== c.ctx.selfId && (await syncFrom(c, a.signer, other.hash))) return true;
  }
  return false;
}

/**
 * The certified other state replaceUncertified would pull now, or null; synchronous, so that the round loop awaits
 * nothing (and misses no change event) in the usual case where there is none.
 */
export function replacementOf(c: LeaderCore): { hash: Uint8Array; attestations: Attestation[] } | null {
  const v = c.state.version;
  if (v === 0 || c.certificateOf(v, c.state.hash)) return null;
  if (Date.now() - (c.replaceTried.get(v) ?? -Infinity) < c.opts.leaderTimeoutMs) return null;
  return c.attestations.certifiedOthers(v, c.state.hash, c.certNeed())[0] ?? null;
}

/**
 * Pull the attestations members hold for (round, hash) over `round.attest`, CATCH_UP_PARALLEL members at a time,
 * until this node holds the state's certificate (or, with `all`, from every one of `peers`). Each returned
 * attestation is checked like gossip on `attest` (round and hash as asked, signer a member, signature) before it is
 * stored; the certificate still needs a majority of distinct members' signatures, so no responder can make one up.
 * True once the certificate is held.
 */
export async function pullAttestations(c: LeaderCore, round: number, hash: Uint8Array, peers: readonly string[], all = false): Promise<boolean> {
  const body = AttestRequest.encode({ version: ROUND_WIRE_VERSION, round: BigInt(round), newHash: hash });
  let added = 0;
  for (let i = 0; i < peers.length; i += CATCH_UP_PARALLEL) {
    if (!c.running || (!all && c.certificateOf(round, hash))) break;
    await Promise.all(peers.slice(i, i + CATCH_UP_PARALLEL).map(async (peer) => {
      try {
        const res = AttestResponse.decode(await c.ctx.mesh.request(peer, ATTEST_METHOD, body, { timeoutMs: PULL_TIMEOUT_MS, maxResponseBytes: MAX_ATTEST_RESPONSE_BYTES }), {
          limits: { attestations: MAX_CERTIFICATE_ENTRIES },
        });
        if (res.version !== ROUND_WIRE_VERSION) return;
        // One signature check per signer and reply: a responder repeating a signer with bad signatures costs one.
        const tried = new Set<string>();
        for (const a of res.attestations) {
          if (Number(a.round) !== round || !sameHash(a.newHash, hash) || tried.has(a.signer) || c.attestations.has(round, hash, a.signer)) continue;
          tried.add(a.signer);
          if ((await checkAttestation(a, c.ctx.federation, (p) => c.isMember(p))) !== undefined) continue;
          if (c.attestations.add(a)) added++;
        }
      } catch (err) {
        c.ctx.logger.debug({ peer, round, err: (err as Error).message }, 'pulling attestations failed');
      }
    }));
  }
  if (added > 0) {
    c.refreshCertified();
    c.events.emit('change');
  }
  return c.certificateOf(round, hash) !== null;
}

/**
 * The states this node waits on a certificate for: its own pending aggregate, its current state, and a held global
 * of the next round it may take only once certified (it attested its own aggregate, or it cannot recompute).
 */
function uncertified(c: LeaderCore): { round: number; hash: Uint8Array }[] {
  const out: { round: number; hash: Uint8Array }[] = [];
  const want = (round: number, hash: Uint8Array): void => {
    if (round >= 1 && !c.certificateOf(round, hash) && !out.some((w) => w.round === round && sameHash(w.hash, hash))) out.push({ round, hash });
  };
  if (c.pending) want(c.pending.round, c.pending.step.next.hash);
  if (c.certified?.state !== c.state) want(c.state.version, c.state.hash);
  const next = c.state.version + 1;
  const mine = c.attested.get(next);
  for (const g of c.globals) {
    if (g.round === next && ((mine && !sameHash(mine, g.msg.newHash)) || (!c.secagg && (!c.canRecompute() || !c.verifies(next))))) want(next, g.msg.newHash);
  }
  return out;
}

/**
 * Certification under message loss (protocols/round.md "Certified state"): attestations travel once on gossip, and
 * a lost one is never sent again, so for each state this node waits on a certificate for (uncertified) it pulls
 * the attestations members hold from CATCH_UP_PARALLEL of them (the next ones each time), at most once per
 * leaderTimeoutMs per state and the first time one leaderTimeoutMs after it attested (gossip usually delivers
 * first). Runs in the background, one pull at a time.
 */
export function pullMissingAttestations(c: LeaderCore): void {
  if (c.attestPulling || !c.running) return;
  const now = Date.now();
  const due = uncertified(c).filter((w) => {
    const key = `${w.round}:${hex(w.hash)}`;
    const at = c.attestPullAt.get(key);
    if (at === undefined) {
      c.attestPullAt.set(key, { round: w.round, at: now + c.opts.leaderTimeoutMs });
      return false;
    }
    if (now < at.at) return false;
    at.at = now + c.opts.leaderTimeoutMs;
    return true;
  });
  if (due.length === 0) return;
  // One batch of members per try, the next batch the next time: any one member holding the certificate completes it,
  // and the load stays at CATCH_UP_PARALLEL requests per node and leaderTimeoutMs (N nodes in one process).
  const members = c.ctx.members().filter((p) => p !== c.ctx.selfId);
  const k = members.length ? (c.attestPullOffset * CATCH_UP_PARALLEL) % members.length : 0;
  c.attestPullOffset++;
  const peers = [...members.slice(k), ...members.slice(0, k)].slice(0, CATCH_UP_PARALLEL);
  c.attestPulling = true;
  void (async () => {
    try {
      for (const w of due) {
        if (await pullAttestations(c, w.round, w.hash, peers)) c.ctx.logger.debug({ round: w.round, hash: hex(w.hash).slice(0, 12) }, 'certificate completed by pulled attestations');
      }
    } finally {
      c.attestPulling = false;
    }
  })();
}
