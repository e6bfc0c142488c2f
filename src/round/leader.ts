/**
 * Rotating round-leader protocol (protocols/round.md). The leader of round r is the first member in the
 * rendezvous order of (federation, r, PeerId) over the roster (a down member is skipped, never re-ranked), so every
 * member computes it without election messages. Members publish their signed, compressed update on `update`; the leader aggregates once every
 * member still contributing has sent (or its adaptive deadline passes) and a majority of the roster contributed, and
 * publishes the aggregate on `global`, naming each contributor and its update's digest. Every member recomputes the
 * aggregate from those updates (pulling any it lacks) and applies the step only if it gives the announced state
 * hash; then it signs an attestation (one hash per round). The leader adopts its own aggregate only once a roster
 * majority attested it. A mismatch marks the leader faulty for the round and the next rank takes over
 * at once. A node that is behind adopts a pulled state only with a certificate (a roster majority's attestations).
 * Versions only move forward, so no round is applied twice.
 */
import { privatizeUpdate } from '../privacy/index.ts';
import { decodeUpdate, encodeUpdate, encodeWithErrorFeedback, type ModelUpdate, type TensorMap } from '../update/index.ts';
import { nextChange, RoundStoppedError } from './signals.ts';
import { Attestation, SignedUpdate } from './pb/round.ts';
import { SECAGG_ANNOUNCE_INTERVAL_MS, type SecAggRound } from './secagg-round.ts';
import { budgetDelta } from '../aggregate/index.ts';
import type { GlobalState } from './state.ts';
import {
  ATTEST_METHOD, ATTEST_TOPIC, GLOBAL_TOPIC, INPUT_METHOD, leaderOrder, MAX_LEADER_RANKS, RESIDUAL_METHOD, ROUND_WIRE_VERSION, sha256, STATE_METHOD, STEP_METHOD, UPDATE_METHOD, UPDATE_STREAM_CUTOVER_BYTES, UPDATE_TOPIC,
  updateSigningBytes,
} from './leader-wire.ts';
import { LeaderCore } from './leader-core.ts';
import { onAttestation, onGlobal, onUpdate, storeUpdate, validateAttestation, validateGlobal, validateUpdate } from './leader-inbox.ts';
import { catchUp, pullAttestations, pullCertifiedAhead, pullMissing, pullMissingAttestations, replacementOf, replaceUncertified, retryResidual, serveAttestations, serveInput, serveResidual, serveState, serveStep, serveUpdate } from './leader-sync.ts';
import { adoptPending, attest, lead, tryApplyGlobals } from './leader-apply.ts';
import { waitingRanks } from './leader-schedule.ts';
import type { VerifyRefusal } from './verify.ts';
import type { LocalContribution, ProtocolSnapshot, RoundContext, RoundOptions, RoundOutcome, RoundProtocol } from './types.ts';

export { leaderOrder, MAX_CONTRIBUTORS, MAX_LEADER_RANKS, ROUND_WIRE_VERSION, UPDATE_TOPIC, GLOBAL_TOPIC, ATTEST_TOPIC, STATE_METHOD, INPUT_METHOD, STEP_METHOD } from './leader-wire.ts';
export { CATCH_UP_PARALLEL } from './leader-sync.ts';
export { RoundStoppedError };

/**
 * Longest a node keeps serving its certified final state (`round.state`, `round.step`, `round.input`) after its last
 * round, so that members one round behind still get the final global (protocols/round.md "The end of a run"). It
 * stops earlier once every live roster member attested the final state.
 */
export const FINAL_SERVE_GRACE_MS = 60_000;

export class LeaderProtocol implements RoundProtocol {
  readonly name = 'leader' as const;
  readonly topics: readonly string[];
  /** The node's round state, shared by the protocol's parts (leader-inbox, leader-sync, leader-apply). */
  private readonly core: LeaderCore;

  constructor(ctx: RoundContext, opts: RoundOptions, initial: GlobalState, restore?: ProtocolSnapshot) {
    this.core = new LeaderCore(ctx, opts, initial, restore);
    this.topics = this.core.secagg ? [GLOBAL_TOPIC, ATTEST_TOPIC, ...this.core.secagg.topics] : [UPDATE_TOPIC, GLOBAL_TOPIC, ATTEST_TOPIC];
  }

  /** Secure aggregation (RoundOptions.secagg): members publish masked deltas, the leader unmasks only their sum. */
  get secagg(): SecAggRound | null {
    return this.core.secagg;
  }

  /** Refusals of received aggregates and states, by reason (also logged). */
  get refusals(): ReadonlyMap<VerifyRefusal, number> {
    return this.core.refusals;
  }

  /** Rounds this node led and what closed them: every contributing member in (`all-in`), the deadline, or a takeover. */
  get closedBy(): ReadonlyMap<number, 'all-in' | 'deadline' | 'takeover'> {
    return this.core.closedBy;
  }

  get round(): number {
    return this.core.state.version;
  }

  globalState(): GlobalState {
    return this.core.state;
  }

  trainingStart(): TensorMap {
    return this.core.state.tensors;
  }

  model(): TensorMap {
    return this.core.state.tensors;
  }

  prototypes() {
    return this.core.state.prototypes;
  }

  /** Refusals counted for `reason`. */
  refusalCount(reason: VerifyRefusal): number {
    return this.core.refusals.get(reason) ?? 0;
  }

  /** Cleartext updates held for rounds not yet applied (none with secure aggregation). */
  /** Downlink error feedback: the residual this node holds, for which state version, and whether it was pulled; null when unknown or off. */
  downlinkResidual(): { version: number; bytes: Uint8Array; pulled: boolean } | null {
    const d = this.core.downRes;
    return d ? { version: d.version, bytes: d.residual.bytes, pulled: d.pulled } : null;
  }

  heldUpdateCount(): number {
    let n = 0;
    for (const m of this.core.updates.values()) n += m.size;
    return n;
  }

  snapshot(): ProtocolSnapshot {
    const c = this.core;
    const cert = c.certified && c.certified.state === c.state ? c.certified.cert : c.attestations.certificate(c.state.version, c.state.hash, c.certNeed());
    return {
      protocol: 'leader', state: c.state, residual: c.ef.snapshot(), serverOpt: c.serverOpt, serverKnown: c.serverKnown,
      certificate: cert ? cert.map((a) => Attestation.encode(a)) : undefined,
    };
  }

  async start(): Promise<void> {
    const c = this.core;
    const { mesh } = c.ctx;
    c.running = true;
    // With secure aggregation no member publishes its cleartext update: the `update` topic is not joined.
    if (!c.secagg) {
      mesh.subscribe(UPDATE_TOPIC, (p) => onUpdate(c, p), {
        validator: (p, m) => validateUpdate(c, p, m), streamCutoverBytes: UPDATE_STREAM_CUTOVER_BYTES,
        // Off the next round's verifying committee a member does not download other members' updates (round.md).
        wantPayload: (m) => c.wantsUpdateFrom(m.from.toString()),
      });
    }
    mesh.subscribe(GLOBAL_TOPIC, (p, m) => onGlobal(c, p, m), { validator: (p, m) => validateGlobal(c, p, m) });
    mesh.subscribe(ATTEST_TOPIC, (p) => onAttestation(c, p), { validator: (p, m) => validateAttestation(c, p, m), maxPayloadBytes: 1024 });
    mesh.handleRequest(STATE_METHOD, (body) => serveState(c, body));
    mesh.handleRequest(UPDATE_METHOD, (body) => serveUpdate(c, body));
    mesh.handleRequest(INPUT_METHOD, (body) => serveInput(c, body));
    mesh.handleRequest(STEP_METHOD, (body) => serveStep(c, body));
    mesh.handleRequest(ATTEST_METHOD, (body) => serveAttestations(c, body));
    if (c.downlinkEf) mesh.handleRequest(RESIDUAL_METHOD, (body) => serveResidual(c, body));
    await c.secagg?.start();
  }

  async stop(): Promise<void> {
    const c = this.core;
    c.running = false;
    c.events.emit('change');
    c.secagg?.stop();
    try {
      if (!c.secagg) c.ctx.mesh.unsubscribe(UPDATE_TOPIC);
      c.ctx.mesh.unsubscribe(GLOBAL_TOPIC);
      c.ctx.mesh.unsubscribe(ATTEST_TOPIC);
    } catch {
      // mesh already stopped
    }
  }

  /** Ask members for a newer certified state (restart / late join / after a partition). True if the state advanced. */
  catchUp(): Promise<boolean> {
    return catchUp(this.core);
  }

  /**
   * After the last round: keep serving the certified final state until every live roster member attested it, for at
   * most `graceMs` (FINAL_SERVE_GRACE_MS), so that stragglers still get it. True when it replaced this node's
   * uncertified final state with the certified one (the caller then reports and serves that). A node that reached the final state by a
   * certified pull attests it first (it is already final; the attestation tells the servers this node has it).
   */
  async finish(graceMs = FINAL_SERVE_GRACE_MS): Promise<boolean> {
    const c = this.core;
    const v = c.state.version;
    if (!c.running || v === 0) return false;
    let replaced = false;
    await attestCertified(c);
    const end = Date.now() + graceMs;
    let logged = false;
    // A lost attestation of the final state would hold this node for the whole grace: ask the members it still
    // waits for what they hold, one leader timeout after the grace starts and then every leader timeout.
    let nextPull = Date.now() + c.opts.leaderTimeoutMs;
    while (c.running && c.state.version === v && Date.now() < end) {
      // A final state the federation did not certify (two leaders' globals split the members) is replaced by the
      // certified one; then this node serves and attests that.
      if (replacementOf(c) && (await replaceAndAttest(c))) {
        replaced = true;
        continue;
      }
      const done = new Set(c.attestations.for(v, c.state.hash).map((a) => a.signer));
      const alive = c.aliveCheck();
      const waiting = c.ranked().filter((p) => p !== c.ctx.selfId && alive(p) && !done.has(p));
      if (waiting.length === 0) return replaced;
      if (!logged) {
        logged = true;
        c.ctx.logger.info({ version: v, waiting: waiting.length, graceS: Math.round(graceMs / 1000) }, 'serving the certified final state until every live member has it');
      }
      pullMissingAttestations(c);
      if (Date.now() >= nextPull && !c.attestPulling) {
        nextPull = Date.now() + c.opts.leaderTimeoutMs;
        c.attestPulling = true;
        void pullAttestations(c, v, c.state.hash, waiting, true).finally(() => { c.attestPulling = false; });
      }
      await nextChange(c.events, 500);
    }
    return replaced;
  }

  // ------------------------------------------------------------------------------------------------------
  // One round

  async exchange(local: LocalContribution): Promise<RoundOutcome> {
    const c = this.core;
    if (!c.running) throw new RoundStoppedError();
    const round = c.state.version + 1;
    const base = c.state;

    // 1. Publish this node's compressed update for the round (masked, with secure aggregation).
    if (c.secagg) {
      await c.secagg.waitForKeys(Math.max(c.opts.leaderTimeoutMs, 3 * SECAGG_ANNOUNCE_INTERVAL_MS));
      const n = await c.secagg.publish(round, base, local.tensors, c.opts.dp, c.rng);
      c.current = { round, publishedAt: Date.now() };
      return this.follow(round, n, c.current.publishedAt);
    }
    const budget = { globalRank: c.ctx.loraRank, rank: local.budget?.rank ?? c.ctx.loraRank, trained: local.budget?.trained };
    let deltas = budgetDelta(local.tensors, base.tensors, c.ctx.manifest, budget);
    if (c.opts.dp) deltas = privatizeUpdate(deltas, c.opts.dp, c.rng.fork()).deltas;
    const update: ModelUpdate = {
      federation: c.ctx.federation, round, baseVersion: base.version, sender: c.ctx.selfId,
      sampleCount: local.sampleCount, loraRank: budget.rank, deltas, prototypes: local.prototypes, partial: budget.trained !== undefined || undefined,
    };
    const comp = c.opts.compression;
    const encOpts = { topk: comp.topk < 1 ? { fraction: comp.topk, scope: comp.topkScope ?? 'global' } : undefined, bits: comp.bits, brotli: comp.brotli, seed: c.rng.nextU32(), prototypeBits: 32 as const };
    const enc = comp.errorFeedback ? encodeWithErrorFeedback(update, c.ctx.manifest, c.ef, encOpts) : encodeUpdate(update, c.ctx.manifest, encOpts);
    const signed = await this.sign(enc.bytes);
    // Aggregate what peers decode from the wire, exactly as they will when they verify.
    storeUpdate(c, { update: decodeUpdate(enc.bytes, c.ctx.manifest), digest: sha256(enc.bytes), signed }, 0);
    c.myUpdate = { round, bytes: signed };
    c.current = { round, publishedAt: Date.now() };
    try {
      await c.ctx.mesh.publish(UPDATE_TOPIC, signed);
    } catch (err) {
      c.ctx.logger.warn({ err: (err as Error).message }, 'publishing the update failed; the round goes on');
    }
    return this.follow(round, signed.byteLength, c.current.publishedAt);
  }

  private async sign(updateBytes: Uint8Array): Promise<Uint8Array> {
    const signature = await this.core.ctx.mesh.signWithIdentity(updateSigningBytes(this.core.ctx.federation, sha256(updateBytes)));
    return SignedUpdate.encode({ version: ROUND_WIRE_VERSION, update: updateBytes, signature });
  }

  /** After publishing this node's update (`updateBytes`) at `publishedAt`: wait for, or produce, the round's model. */
  private async follow(round: number, updateBytes: number, publishedAt: number): Promise<RoundOutcome> {
    const c = this.core;
    const bytesUp = updateBytes;
    // Lost messages: the leader pulls missing updates at 1/4 of its deadline; anyone still without the round's
    // model after the deadline plus one leader timeout asks members for their certified state, then periodically.
    let pulled = false;
    let nextCatchUp = publishedAt + c.opts.roundTimeoutMs + c.opts.leaderTimeoutMs;

    // 2. Wait until this node holds version >= round: apply a verified global, sync a certified state, or lead.
    for (;;) {
      if (!c.running) throw new RoundStoppedError();
      if (c.state.version >= round) {
        return { round, via: 'synced', contributors: [], bytesUp, updateBytes, bytesDown: c.down.take(round) };
      }
      // This node's own aggregate, once a roster majority attested it (never before: a late leader could be alone).
      const own = adoptPending(c, round);
      if (own) return { ...own, bytesUp: bytesUp + own.bytesUp, updateBytes, bytesDown: c.down.take(round) };
      retryResidual(c);
      const applied = await tryApplyGlobals(c, round);
      if (applied) return { ...applied, bytesUp, updateBytes, bytesDown: c.down.take(round) };
      if (await pullCertifiedAhead(c)) continue;
      if (replacementOf(c)) await replaceAndAttest(c);

      const members = c.ctx.members();
      // Ranks over the roster; lower ranks that are down (or faulty) are skipped: `ahead` counts those still waited for.
      const order = leaderOrder(c.ctx.federation, round, c.ranked());
      const rank = order.indexOf(c.ctx.selfId);
      const ahead = rank < 0 ? -1 : waitingRanks(round, rank, order, { isFaulty: (r, p) => c.isFaulty(r, p), isAlive: c.aliveCheck() });
      const mine = c.updates.get(round);
      const have = c.secagg ? c.secagg.count(round) : (mine?.size ?? 0);
      // Everyone still contributing has sent: members that withheld in the last rounds do not hold the round open.
      const allIn = c.secagg ? have >= members.length : members.every((p) => mine?.has(p) || c.withheld.excused(p, round));
      const need = c.need();
      const now = Date.now();
      const deadline = publishedAt + c.deadlineMs();
      const verifies = c.verifies(round);
      if (ahead === 0 && verifies && !pulled && !c.secagg && !allIn && now >= publishedAt + c.deadlineMs() / 4) {
        pulled = true;
        await pullMissing(c, round);
        continue;
      }
      if (now >= nextCatchUp) {
        nextCatchUp = now + c.opts.leaderTimeoutMs;
        if (await catchUp(c, true)) continue;
      }
      const slot = rank >= 0 && rank < MAX_LEADER_RANKS && (ahead === 0 ? allIn || now >= deadline : c.slotOpen(round, rank, order));
      if (slot && verifies && have < need && now >= deadline && now - c.pausedLogged > 10_000) {
        c.pausedLogged = now;
        c.ctx.logger.warn({ round, have, need, roster: c.rosterSize(), live: members.length },
          'round paused: fewer contributions than the quorum (a majority of the roster by default); a minority partition waits for the heal');
      }
      // A node that cannot recompute the federation's step (server state unknown after a pull), or that is off the
      // round's verifying committee, lets its slot pass.
      if (slot && verifies && have >= need && !c.attested.has(round) && (c.secagg !== null || c.canRecompute())) {
        if (await lead(c, round, rank, members)) {
          c.closedBy.set(round, rank > 0 ? 'takeover' : allIn ? 'all-in' : 'deadline');
          continue;
        }
      }
      // Attestations lost on gossip: pull those of the states this node waits on a certificate for.
      pullMissingAttestations(c);
      await nextChange(c.events, ahead === 0 ? 100 : 250);
    }
  }
}

/**
 * Replace an uncertified state with the certified one of its version (replaceUncertified), then attest it: the
 * replaced node holds and serves the federation's state, and says so like every member that holds it.
 */
async function replaceAndAttest(c: LeaderCore): Promise<boolean> {
  if (!(await replaceUncertified(c))) return false;
  await attestCertified(c);
  return true;
}

/** Attest this node's current state when it holds its certificate (a state it pulled or took in place of its own). */
async function attestCertified(c: LeaderCore): Promise<void> {
  const cert = c.certified?.state === c.state ? c.certified.cert : null;
  if (cert && cert.length > 0) await attest(c, c.state.version, cert[0].baseHash, c.state.hash);
}
