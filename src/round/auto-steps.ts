/**
 * `--local-steps-auto`: slow members train fewer local steps instead of stalling every round (the "slow
 * members are given fewer local steps by measured speed"; FedNova, Wang et al. 2020, shows FedAvg tolerates
 * heterogeneous local step counts, and the sample-weighted mean still applies).
 *
 * Rule: a node of measured training throughput s (samples/s, measured at start, src/node/capabilities.ts) trains
 * round(E · s / s_max) steps, where E is `--local-steps` and s_max the largest throughput among itself and the
 * members it sees, bounded to [ceil(E · AUTO_STEPS_MIN_FRACTION), E]. So every member's local training takes about
 * as long as the fastest member's E steps. Peers may lie: an advertised throughput is capped at
 * AUTO_STEPS_MAX_THROUGHPUT, non-finite or non-positive values are ignored, and a lie can only lower this node's steps
 * to the floor. A node that has not measured itself (throughput 0, e.g. in-process simulations) trains E.
 */

/** The fewest local steps `--local-steps-auto` gives, as a fraction of `--local-steps`. */
export const AUTO_STEPS_MIN_FRACTION = 0.25;
/** Advertised throughputs above this (samples/s) count as this much. */
export const AUTO_STEPS_MAX_THROUGHPUT = 1e7;

const usable = (x: number): boolean => Number.isFinite(x) && x > 0;

/** Local steps of this round for a node of throughput `self` among members advertising `others` (see the module note). */
export function autoLocalSteps(localSteps: number, self: number, others: readonly number[]): number {
  if (!usable(self)) return localSteps;
  const cap = (x: number): number => Math.min(x, AUTO_STEPS_MAX_THROUGHPUT);
  const max = Math.max(cap(self), ...others.filter(usable).map(cap));
  const floor = Math.max(1, Math.ceil(localSteps * AUTO_STEPS_MIN_FRACTION));
  return Math.min(localSteps, Math.max(floor, Math.round((localSteps * cap(self)) / max)));
}
