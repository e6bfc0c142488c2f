/**
 * Producing and applying a round's step (protocols/round.md "The aggregate", "Verification", "Certified state"):
 * the leader computes the step from the updates it holds and publishes it; every member considers received globals
 * in order, recomputes each step from its listed inputs, applies it only if it reproduces the announced hash, and
 * attests what it applied. Refusals are counted and logged with their reason; a refused publisher is faulty for the
 * round, which opens the next rank's slot.
 */
import type { ModelUpdate } from '../update/index.ts';
import { Attestation, GlobalUpdate } from './pb/round.ts';
import { hex, sameHash, type GlobalState } from './state.ts';
import { GLOBAL_TOPIC, ATTEST_TOPIC, leaderOrder, MAX_LEADER_RANKS, ROUND_WIRE_VERSION, sha256, type ReceivedGlobal } from './leader-wire.ts';
import { makeAttestation } from './certificate.ts';
import { gatherInputs, pullResidual, pullStep, syncFrom } from './leader-sync.ts';
import type { LeaderCore } from './leader-core.ts';
import { computeGlobalStep, VerifyRefusal, type GlobalStep } from './verify.ts';
import type { RoundOutcome } from './types.ts';

export type Applied = Omit<RoundOutcome, 'bytesUp' | 'bytesDown'>;

/** The round's step from `inputs` with this node's options and server state (`sender` is written into the encoding). */
function stepOf(c: LeaderCore, round: number, base: GlobalState, inputs: readonly ModelUpdate[], sender: string): GlobalStep {
  return computeGlobalStep({
    federation: c.ctx.federation, manifest: c.ctx.manifest, round, base, updates: inputs, rule: c.opts.aggregator,
    options: { weighting: c.opts.dp ? 'uniform' : undefined, ...c.aggregatorOptionsFor(round) }, serverState: c.serverOpt,
    sender, loraRank: c.ctx.loraRank, downlinkBits: c.opts.compression.downlinkBits, keepPrototypes: c.secagg !== null,
    downlinkResidual: c.downlinkEf ? (c.residualOf() ?? noResidual()) : undefined,
  });
}

function noResidual(): never {
  throw new Error('the downlink residual of this state is unknown here (error feedback): cannot recompute');
}

/** Consider the received globals: apply the first verified one for the next round; hold those not yet decidable. */
export async function tryApplyGlobals(c: LeaderCore, round: number): Promise<Applied | null> {
  const held: ReceivedGlobal[] = [];
  try {
    while (c.globals.length) {
      const g = c.globals.shift()!;
      const r = g.round;
      if (r <= c.state.version) continue;
      const fields = { round: r, leader: g.from, rank: g.msg.leaderRank };
      if (c.isFaulty(r, g.from)) {
        c.refuse(VerifyRefusal.FAULTY_LEADER, fields, 'debug');
        continue;
      }
      if (r !== c.state.version + 1 || !sameHash(g.msg.baseHash, c.state.hash)) {
        // Behind or diverged: only a certified state moves this node (never the publisher's word). One try per
        // global; the periodic catch-up asks again later.
        if (await syncFrom(c, g.from)) {
          if (c.state.version >= round) return { round, via: 'synced', leader: g.from, leaderRank: g.msg.leaderRank, contributors: g.msg.contributors };
        }
        continue;
      }
      // Ranks over the roster: a leader that left this node's view (it exited, or its goodbye came first) keeps its rank.
      const order = leaderOrder(c.ctx.federation, r, c.ranked());
      const rank = order.indexOf(g.from);
      if (rank < 0 || rank >= MAX_LEADER_RANKS || rank !== g.msg.leaderRank) {
        c.refuse(VerifyRefusal.NOT_A_LEADER, { ...fields, actualRank: rank });
        c.markFaulty(r, g.from);
        continue;
      }
      // A roster majority's attestations are the federation's evidence that the slot was open: they override this
      // node's own slot clock (a late or restarted member), and they are what a node that attested another hash for
      // the round (its own aggregate) needs before it takes a competing one.
      // A non-committee member takes a committee majority's attestations as that evidence (round.md "Verifying committee").
      const certified = c.certificateOf(r, g.msg.newHash) !== null || (!c.verifies(r) && c.committeeAttested(r, g.msg.baseHash, g.msg.newHash));
      const mine = c.attested.get(r);
      if (mine && !sameHash(mine, g.msg.newHash) && !certified) {
        if (!c.noted.has(g)) {
          c.noted.add(g);
          c.refuse(VerifyRefusal.AWAITING_CERTIFICATE, fields, 'debug');
        }
        held.push(g);
        continue;
      }
      if (!certified && !c.slotOpen(r, rank, order)) {
        if (!c.noted.has(g)) {
          c.noted.add(g);
          c.refuse(VerifyRefusal.SLOT_NOT_OPEN, fields, 'debug');
        }
        held.push(g);
        continue;
      }
      const res = await verifyAndApply(c, g, rank);
      if (res === 'wait') held.push(g);
      else if (res === 'applied') {
        if (r >= round) return { round, via: 'applied', leader: g.from, leaderRank: rank, contributors: g.msg.contributors };
      }
    }
    return null;
  } finally {
    c.globals.unshift(...held);
  }
}

/** Verify a global for the next round by recomputation (or, when this node cannot recompute, by its certificate). */
async function verifyAndApply(c: LeaderCore, g: ReceivedGlobal, rank: number): Promise<'applied' | 'refused' | 'wait'> {
  const base = c.state;
  const r = g.round;
  const fields = { round: r, leader: g.from, rank };
  const need = c.need();
  if (g.msg.contributors.length < need) {
    c.refuse(VerifyRefusal.QUORUM_NOT_MET, { ...fields, contributors: g.msg.contributors.length, need });
    c.markFaulty(r, g.from);
    return 'refused';
  }
  const member = !c.verifies(r);
  if (!c.canRecompute() || member) {
    // Secure aggregation hides the inputs; after a state pull the server state is unknown; a member off the round's
    // verifying committee does not take the inputs. Pull the step (the commitment carries none) and apply it only
    // once a roster majority attested its result (secure aggregation: on its hash, see round.md), or, off the
    // committee with a known server state, once a majority of the committee attested (round, base, new hash).
    // (A member off the committee needs the server state, not the downlink residual: it does not recompute.)
    const known = member ? c.knowsServerState() : c.canRecompute();
    const evidence = c.secagg ? true : known ? c.committeeAttested(r, g.msg.baseHash, g.msg.newHash) : c.certificateOf(r, g.msg.newHash) !== null;
    if (!evidence) {
      if (!c.noted.has(g)) {
        c.noted.add(g);
        c.refuse(known ? VerifyRefusal.AWAITING_COMMITTEE : VerifyRefusal.UNVERIFIABLE, fields, 'debug');
      }
      return 'wait';
    }
    const pulled = await pullStep(c, g, base);
    if (c.state !== base) return 'refused';
    if (pulled === 'mismatch' || pulled === 'unavailable') {
      c.refuse(pulled === 'mismatch' ? VerifyRefusal.HASH_MISMATCH : VerifyRefusal.STEP_UNAVAILABLE, fields);
      c.markFaulty(r, g.from);
      return 'refused';
    }
    c.adopt(pulled.next, pulled.deltas, undefined, pulled.bytes);
    afterApply(c, r, base, pulled.next, g.msg.contributors);
    // Downlink error feedback: a member that verifies the next round needs the residual this step left.
    if (c.downlinkEf && !c.secagg && c.verifies(r + 1)) await pullResidual(c, g.from);
    return 'applied';
  }
  const inputs = await gatherInputs(c, g);
  if (c.state !== base) return 'refused';
  if (!inputs) {
    c.refuse(VerifyRefusal.INPUT_UNAVAILABLE, fields);
    c.markFaulty(r, g.from);
    return 'refused';
  }
  let step;
  try {
    // A pulled downlink residual is one a committee majority vouched for (pullResidual): no retrying other residuals
    // until one reproduces the announced hash, which would let a leader and one residual server agree on a forgery.
    step = stepOf(c, r, base, inputs, g.from);
  } catch (err) {
    c.refuse(VerifyRefusal.AGGREGATE_FAILED, { ...fields, err: (err as Error).message });
    c.markFaulty(r, g.from);
    return 'refused';
  }
  if (c.state !== base) return 'refused';
  if (!sameHash(step.next.hash, g.msg.newHash)) {
    c.refuse(VerifyRefusal.AGGREGATE_MISMATCH, { ...fields, announced: hex(g.msg.newHash).slice(0, 12), recomputed: hex(step.next.hash).slice(0, 12) });
    c.markFaulty(r, g.from);
    return 'refused';
  }
  c.adopt(step.next, step.applied, step.agg.state, step.bytes, step.residual);
  afterApply(c, r, base, step.next, g.msg.contributors);
  c.ctx.logger.debug({ ...fields, contributors: inputs.length }, 'verified and applied global');
  return 'applied';
}

function afterApply(c: LeaderCore, round: number, base: GlobalState, next: GlobalState, contributors: readonly string[]): void {
  c.withheld.record(round, c.ctx.members(), contributors);
  // A member that computed the step's residual (it recomputed the round) vouches for it: what a member joining the next
  // committee checks a pulled residual against (round.md "Compressed downlink").
  const own = c.downRes && c.downRes.version === round && !c.downRes.pulled && sameHash(next.hash, c.state.hash) ? sha256(c.downRes.residual.bytes) : undefined;
  void attest(c, round, base.hash, next.hash, own);
}

/**
 * Sign and gossip this node's attestation of the step it just verified and applied (or led). One hash per round,
 * except a hash a roster majority already certified (a node that attested its own aggregate, then took the
 * federation's): such a second attestation cannot make a certificate that did not exist, it only says "I hold it".
 */
export async function attest(c: LeaderCore, round: number, baseHash: Uint8Array, newHash: Uint8Array, residualDigest?: Uint8Array): Promise<void> {
  const prev = c.attested.get(round);
  if (prev && (sameHash(prev, newHash) || !c.certificateOf(round, newHash))) return;
  c.attested.set(round, newHash);
  try {
    const a = await makeAttestation((d) => c.ctx.mesh.signWithIdentity(d), c.ctx.federation, c.ctx.selfId, round, baseHash, newHash, residualDigest);
    c.attestations.add(a);
    c.refreshCertified();
    await c.ctx.mesh.publish(ATTEST_TOPIC, Attestation.encode(a));
  } catch (err) {
    c.ctx.logger.debug({ err: (err as Error).message }, 'publishing an attestation failed');
  }
}

/**
 * Lead round `round` at rank `rank`: aggregate the updates held, publish the global, attest it, and hold it as
 * `c.pending`: it becomes this node's state only with a certificate (adoptPending). False if it cannot lead.
 */
export async function lead(c: LeaderCore, round: number, rank: number, members: readonly string[]): Promise<boolean> {
  const base = c.state;
  let inputs: ModelUpdate[];
  let contributors: string[];
  let digests: Uint8Array[];
  if (c.secagg) {
    // Secure aggregation: only the mean of the survivors' deltas (uniform weights; sample counts would leak).
    const agg = await c.secagg.aggregate(round, base);
    if (!agg || c.state !== base) return false;
    contributors = agg.contributors;
    digests = contributors.map(() => new Uint8Array(32));
    inputs = [{
      federation: c.ctx.federation, round, baseVersion: base.version, sender: c.ctx.selfId, sampleCount: contributors.length,
      loraRank: c.ctx.loraRank, deltas: agg.mean, prototypes: [],
    }];
  } else {
    const received = [...(c.updates.get(round)?.values() ?? [])].filter((r) => r.update.baseVersion === base.version);
    if (received.length < c.need()) return false;
    received.sort((a, b) => (a.update.sender < b.update.sender ? -1 : 1));
    inputs = received.map((r) => r.update);
    contributors = inputs.map((u) => u.sender);
    digests = received.map((r) => r.digest);
  }
  let step;
  try {
    step = stepOf(c, round, base, inputs, c.ctx.selfId);
  } catch (err) {
    c.ctx.logger.error({ round, err: (err as Error).message }, 'aggregation failed');
    return false;
  }
  const bytes = GlobalUpdate.encode({
    version: ROUND_WIRE_VERSION, round: BigInt(round), baseHash: base.hash, newHash: step.next.hash, contributors, leaderRank: rank,
    contributorDigests: digests,
  });
  if (c.state !== base || c.attested.has(round)) return false; // a global arrived meanwhile, or this node attested one
  c.pending = { round, rank, base, step, contributors, members, bytesUp: bytes.byteLength };
  // The step is servable at once (round.step): members that cannot recompute pull it before they attest.
  c.steps.set(round, { hash: step.next.hash, bytes: step.bytes });
  if (step.residual) c.residuals.set(round, { hash: step.next.hash, bytes: step.residual.bytes });
  try {
    await c.ctx.mesh.publish(GLOBAL_TOPIC, bytes);
  } catch (err) {
    c.ctx.logger.warn({ err: (err as Error).message }, 'publishing the global update failed; peers will pull the state');
  }
  await attest(c, round, base.hash, step.next.hash, step.residual ? sha256(step.residual.bytes) : undefined);
  c.ctx.logger.debug({ round, rank, contributors: contributors.length, serverStep: step.agg.serverStep, hash: hex(step.next.hash).slice(0, 12) }, 'led round; adopting it once a roster majority attests it');
  c.events.emit('change');
  return true;
}

/** This node's own aggregate of round `round` once a roster majority attested it: adopt it. Null until then. */
export function adoptPending(c: LeaderCore, round: number): Omit<RoundOutcome, 'bytesDown'> | null {
  const p = c.pending;
  if (!p || p.round !== round || c.state !== p.base || !c.certificateOf(round, p.step.next.hash)) return null;
  c.pending = null;
  c.adopt(p.step.next, p.step.applied, p.step.agg.state, p.step.bytes, p.step.residual);
  c.withheld.record(round, p.members, p.contributors);
  c.ctx.logger.debug({ round, rank: p.rank }, 'own aggregate certified: adopted');
  return { round, via: 'led', leader: c.ctx.selfId, leaderRank: p.rank, contributors: p.contributors, bytesUp: p.bytesUp };
}
