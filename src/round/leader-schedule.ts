/**
 * Rotating-leader scheduling (protocols/round.md "One round"): who may aggregate a round, when each rank's slot opens,
 * the adaptive deadline, the quorum, and the decayed server learning rate. Pure functions of their arguments (the
 * clock is passed in), shared by the leader and every verifying member.
 */
import { lrAt } from '../train/schedule.ts';
import type { AggregateOptions } from '../aggregate/index.ts';
import { majority } from './certificate.ts';
import { leaderOrder, MAX_LEADER_RANKS } from './leader-wire.ts';
import type { ArrivalTracker } from './verify.ts';
import type { RoundOptions } from './types.ts';

/** Rules whose server state carries over rounds (must be replicated for an aggregate to be recomputable). */
export const STATEFUL_RULES: readonly string[] = ['fedavgm', 'fedadam', 'fedyogi', 'fedadagrad'];

/** Fewest contributions a round closes with: a roster majority by default, ceil(quorum × roster) when set. */
export function roundNeed(rosterSize: number, quorum: number | undefined): number {
  return quorum === undefined ? majority(rosterSize) : Math.max(1, Math.ceil(quorum * rosterSize));
}

/**
 * Attestations that certify a state: a majority of the roster. In an open mesh (no roster) a majority of the other
 * live members: the live view grows with nodes that are behind (they cannot attest what they do not hold).
 */
export function certificateNeed(roster: readonly string[] | undefined, liveMembers: number): number {
  return roster !== undefined ? majority(roster.length) : majority(Math.max(1, liveMembers - 1));
}

/**
 * Who is ranked for leading: the roster when there is one (the same list at every honest member, whoever is alive),
 * else the live view (an open mesh has nothing else). Liveness never changes a rank; it only lets a slot skip
 * lower ranks that are down (slotOpen).
 */
export function rankedMembers(roster: readonly string[] | undefined, live: readonly string[]): readonly string[] {
  return roster ?? live;
}

/**
 * Whether `peer` is among the first MAX_LEADER_RANKS of round `round`'s leader order over `ranked` (rankedMembers:
 * the roster). Never over ranked ∪ {peer}: a peer outside it has no rank.
 */
export function mayAggregate(federation: string, round: number, ranked: readonly string[], peer: string): boolean {
  const rank = leaderOrder(federation, round, ranked).indexOf(peer);
  return rank >= 0 && rank < MAX_LEADER_RANKS;
}

/** The adaptive round deadline: p90 of measured arrival delays × slack, within the configured bounds. */
export function roundDeadlineMs(arrivals: ArrivalTracker, opts: Pick<RoundOptions, 'roundTimeoutMs' | 'minRoundTimeoutMs'>): number {
  const max = opts.roundTimeoutMs;
  return arrivals.deadlineMs(Math.min(max, opts.minRoundTimeoutMs ?? 2000), max);
}

/** What decides whether a rank's slot is open on one node. */
export interface SlotClock {
  /** The round this node is in and when it published its update, if any. */
  current: { round: number; publishedAt: number } | null;
  /** The adaptive deadline (ms). */
  deadlineMs: number;
  leaderTimeoutMs: number;
  now: number;
  isFaulty(round: number, peer: string): boolean;
  /** Whether `peer` is in this node's live view (a lower rank that is down is skipped). */
  isAlive(peer: string): boolean;
}

/**
 * Lower ranks (over the roster) that rank `rank`'s slot of round `round` still waits for: those that are alive on
 * this node and not found faulty in the round. Ranks are the roster's; liveness only decides who is skipped.
 */
export function waitingRanks(round: number, rank: number, order: readonly string[], c: Pick<SlotClock, 'isFaulty' | 'isAlive'>): number {
  return order.slice(0, rank).filter((p) => c.isAlive(p) && !c.isFaulty(round, p)).length;
}

/**
 * Whether rank `rank`'s slot of round `round` is open: rank 0 always; rank k once the deadline plus j leader
 * timeouts passed since this node published its update, j = the lower ranks it still waits for (waitingRanks), or
 * at once when it waits for none (every lower rank faulty or down).
 */
export function slotOpen(round: number, rank: number, order: readonly string[], c: SlotClock): boolean {
  if (rank === 0) return true;
  const j = waitingRanks(round, rank, order, c);
  if (j === 0) return true;
  if (c.current?.round !== round) return false;
  return c.now >= c.current.publishedAt + c.deadlineMs + j * c.leaderTimeoutMs;
}

/** The aggregator options of round `round`, with the decayed server learning rate when serverLrDecay is set. */
export function aggregatorOptionsFor(opts: Pick<RoundOptions, 'aggregatorOptions' | 'serverLrDecay'>, round: number): AggregateOptions {
  const o = opts.aggregatorOptions ?? {};
  const d = opts.serverLrDecay;
  if (!d || o.serverLr === undefined) return o;
  const step = Math.min(d.rounds - 1, Math.max(0, round - 1));
  return { ...o, serverLr: 1 + (o.serverLr - 1) * lrAt('cosine', 1, step, d.rounds) };
}

/** Whether a node can recompute the federation's next step (cleartext inputs, and the replicated server state). */
export function canRecompute(secagg: boolean, serverKnown: boolean, aggregator: string): boolean {
  return !secagg && (serverKnown || !STATEFUL_RULES.includes(aggregator));
}

/**
 * The verifying committee of round `round` (RoundOptions.committee = c): the first c members of the round's leader
 * order over `ranked` (the roster), skipping members that are down in this node's view, as slots skip them
 * (waitingRanks); never re-ranked. Null when there is no committee (c = 0): every member verifies. With every member
 * alive every honest node computes the same committee; a member that is down on some views moves the next rank in.
 */
export function committeeOf(federation: string, round: number, ranked: readonly string[], c: number | undefined, isAlive: (peer: string) => boolean): readonly string[] | null {
  if (!c || c <= 0) return null;
  return leaderOrder(federation, round, ranked).filter(isAlive).slice(0, c);
}
