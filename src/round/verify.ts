/**
 * Verified aggregates (protocols/round.md, "Verification"): the one function that turns a round's inputs into its
 * global step, used alike by the leader that publishes it and by every member that recomputes it before applying;
 * the refusal reasons; the adaptive deadline and the withholding record that keep one member from holding rounds open.
 */
import { aggregateRound, type AggregateOptions, type RoundAggregate, type RoundFailures, type ServerOptimizerState } from '../aggregate/index.ts';
import { decodeUpdate, encodeUpdate, type ModelUpdate, type TensorMap, type UpdateManifest } from '../update/index.ts';
import { downlinkSeed, residualSeed } from './leader-wire.ts';
import { applyDelta, type GlobalState } from './state.ts';

/** Why a member did not apply a received aggregate (logged with the round and the publisher). */
export enum VerifyRefusal {
  /** The publisher is not among the round's first MAX_LEADER_RANKS over the roster, or claims another rank. */
  NOT_A_LEADER = 1,
  /** The publisher's slot had not opened yet when it arrived (kept until it opens, considered only then). */
  SLOT_NOT_OPEN = 2,
  /** Fewer contributors than the round's minimum (a majority of the roster by default). */
  QUORUM_NOT_MET = 3,
  /** A listed contributor's update with the listed digest could be obtained from neither the publisher nor the contributor. */
  INPUT_UNAVAILABLE = 4,
  /** Recomputing the aggregate from the listed updates does not give the announced new state hash: evidence. */
  AGGREGATE_MISMATCH = 5,
  /** The aggregate's rule failed on the listed updates (e.g. non-finite values): evidence. */
  AGGREGATE_FAILED = 6,
  /** The publisher was already found faulty in this round; later aggregates from it are ignored. */
  FAULTY_LEADER = 7,
  /** This node cannot recompute (its server-optimizer state is unknown after a state pull, or secure aggregation). */
  UNVERIFIABLE = 8,
  /** A pulled state came without a valid certificate (a majority of distinct roster attestations over its hash). */
  UNCERTIFIED_STATE = 9,
  /** A pulled state is past the federation's last round (`--rounds`). */
  PAST_LAST_ROUND = 10,
  /** The step pulled from the publisher (`round.step`) applied to the base does not give the announced new state hash. */
  HASH_MISMATCH = 11,
  /** This node cannot recompute and no one (publisher, attesting members) served the round's step (`round.step`). */
  STEP_UNAVAILABLE = 12,
  /**
   * This node attested another hash for the round (its own aggregate): a competing aggregate is applied only once a
   * roster majority attested it (held until then).
   */
  AWAITING_CERTIFICATE = 13,
  /**
   * Verifying committee (RoundOptions.committee): this node is not on the round's committee and holds the
   * attestations of no committee majority (nor a roster-majority certificate) for the aggregate yet (held until then).
   */
  AWAITING_COMMITTEE = 14,
  /**
   * Downlink error feedback: a residual pulled over `round.residual` whose SHA-256 a majority of the state's committee
   * (without a committee, a roster majority) did not attest (Attestation.residual_digest): not taken, whoever served it.
   */
  RESIDUAL_UNVOUCHED = 15,
}

/** Everything that determines a round's global step. */
export interface StepInputs {
  federation: string;
  manifest: UpdateManifest;
  round: number;
  base: GlobalState;
  /** The round's updates (decoded from their wire bytes, so every member sees the same values). */
  updates: readonly ModelUpdate[];
  rule: string;
  options: AggregateOptions;
  serverState: ServerOptimizerState | undefined;
  failures?: RoundFailures;
  /** Publisher and LoRA rank written into the encoded global (they do not change the state). */
  sender: string;
  loraRank: number;
  downlinkBits: 32 | 16 | 8 | 4 | 1;
  /**
   * Downlink error feedback (protocols/round.md "Compressed downlink"): the residual the base state carries (what
   * the encodings of earlier steps dropped; empty = zeros, the residual of version 0). Absent: no error feedback.
   */
  downlinkResidual?: TensorMap;
  /** Keep the base's prototypes instead of merging the updates' (secure aggregation). */
  keepPrototypes?: boolean;
}

/** The downlink residual a step leaves (error feedback), as replicated server state: its tensors and their encoding. */
export interface DownlinkResidual {
  tensors: TensorMap;
  /** The residual as an fmfl Update (8-bit, the round's residual seed): what `round.residual` serves, byte-identical on every member. */
  bytes: Uint8Array;
}

/** A round's global step: the aggregate, the encoded delta, the decoded delta every member applies, the new state. */
export interface GlobalStep {
  agg: RoundAggregate;
  bytes: Uint8Array;
  applied: TensorMap;
  next: GlobalState;
  /** With downlink error feedback: the residual after this step (the next step's input). */
  residual?: DownlinkResidual;
}

/** Bits of the stored downlink residual (8-bit stochastic block quantization, seeded per round). */
export const RESIDUAL_BITS = 8;

/**
 * Aggregate (aggregateRound), encode the delta for the downlink with the round's deterministic seed, and apply the
 * decoded delta to the base. Deterministic: every member that computes it from the same inputs gets the same
 * `next.hash`, which is how an aggregate is verified. Throws only what the rule throws (AggregateError).
 */
export function computeGlobalStep(p: StepInputs): GlobalStep {
  const agg = aggregateRound(
    { rule: p.rule, options: { ...p.options, manifest: p.manifest, base: p.base.tensors }, updates: p.updates, mergePrototypes: !p.keepPrototypes, keepPrototypes: p.base.prototypes },
    p.failures,
    p.serverState,
  );
  const global: ModelUpdate = {
    federation: p.federation, round: p.round, baseVersion: p.base.version, sender: p.sender,
    sampleCount: Math.max(1, Math.round(agg.sampleCount)), loraRank: p.loraRank, deltas: agg.deltas, prototypes: agg.prototypes,
  };
  const ef = p.downlinkResidual;
  const corrected = ef ? withResidual(agg.deltas, ef) : agg.deltas;
  const enc = encodeUpdate({ ...global, deltas: corrected }, p.manifest, { bits: p.downlinkBits, prototypeBits: 32, seed: downlinkSeed(p.federation, p.round) });
  const next = applyDelta(p.base, enc.reconstruction, agg.prototypes, p.manifest);
  const residual = ef ? nextResidual(p, corrected, enc.reconstruction) : undefined;
  return { agg, bytes: enc.bytes, applied: enc.reconstruction, next, ...(residual ? { residual } : {}) };
}

/** step + residual, tensor by tensor, in float32 (every member computes the same bits). */
function withResidual(step: TensorMap, residual: TensorMap): TensorMap {
  const out: TensorMap = new Map();
  for (const [name, d] of step) {
    const r = residual.get(name);
    out.set(name, r && r.length === d.length ? Float32Array.from(d, (x, i) => x + r[i]) : d);
  }
  for (const [name, r] of residual) if (!out.has(name)) out.set(name, r);
  return out;
}

/**
 * The residual after a step: corrected − sent, itself stored as its seeded 8-bit encoding (so the residual a member
 * pulls, `round.residual`, decodes to exactly the bits every committee member holds).
 */
function nextResidual(p: StepInputs, corrected: TensorMap, sent: TensorMap): DownlinkResidual {
  const raw: TensorMap = new Map();
  for (const [name, c] of corrected) {
    const s = sent.get(name);
    raw.set(name, s ? Float32Array.from(c, (x, i) => x - s[i]) : c);
  }
  const u: ModelUpdate = {
    federation: p.federation, round: p.round, baseVersion: p.base.version, sender: p.sender, sampleCount: 1, loraRank: p.loraRank, deltas: raw, prototypes: [],
  };
  const enc = encodeUpdate(u, p.manifest, { bits: RESIDUAL_BITS, prototypeBits: 32, seed: residualSeed(p.federation, p.round) });
  // Its decoded form (every manifest tensor, zeros where none was sent): exactly what a member that pulls it holds.
  return { tensors: decodeUpdate(enc.bytes, p.manifest).deltas, bytes: enc.bytes };
}

/** Adaptive round deadline: percentile of measured update arrival delays times a slack, within bounds. */
export const ARRIVAL_PERCENTILE = 0.9;
export const ARRIVAL_SLACK = 2;
/** Arrival delays remembered (the most recent ones). */
export const ARRIVAL_WINDOW = 64;
/** Fewest measured delays before the deadline adapts (before: the configured maximum). */
export const ARRIVAL_MIN_SAMPLES = 3;
/** Rounds a member that withheld its update stops holding rounds open for. */
export const WITHHOLD_ROUNDS = 3;

/**
 * Measured delays between this node publishing its own update and each other member's update arriving (ms), and
 * the deadline they imply: clamp(p90 × slack, minMs, maxMs).
 */
export class ArrivalTracker {
  private readonly delays: number[] = [];

  record(ms: number): void {
    this.delays.push(Math.max(0, ms));
    if (this.delays.length > ARRIVAL_WINDOW) this.delays.shift();
  }

  deadlineMs(minMs: number, maxMs: number): number {
    if (this.delays.length < ARRIVAL_MIN_SAMPLES) return maxMs;
    const s = [...this.delays].sort((a, b) => a - b);
    const p = s[Math.min(s.length - 1, Math.ceil(ARRIVAL_PERCENTILE * s.length) - 1)];
    return Math.min(maxMs, Math.max(minMs, Math.ceil(p * ARRIVAL_SLACK)));
  }
}

/** Which members withheld their update in recent rounds (alive when the round closed, not among its contributors). */
export class WithholdRecord {
  private readonly lastMissed = new Map<string, number>();

  /** Record round `round`'s contributors against the members that were alive. */
  record(round: number, alive: readonly string[], contributors: readonly string[]): void {
    const c = new Set(contributors);
    for (const p of alive) if (!c.has(p)) this.lastMissed.set(p, round);
    if (this.lastMissed.size > 4096) this.lastMissed.clear();
  }

  /** Whether `peer` withheld in one of the WITHHOLD_ROUNDS rounds before `round`: the round does not wait for it. */
  excused(peer: string, round: number): boolean {
    const r = this.lastMissed.get(peer);
    return r !== undefined && round - r <= WITHHOLD_ROUNDS;
  }
}
