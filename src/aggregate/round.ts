import type { ModelUpdate, PrototypeTable, TensorMap } from '../update/index.ts';
import { aggregatePrototypes } from './prototypes.ts';
import { DEFAULT_AGGREGATOR, getAggregator } from './registry.ts';
import type { AggregateOptions, AggregateResult, ServerOptimizerState } from './types.ts';

/** What one round aggregates: the rule, its options, and the round's decoded, validated updates. */
export interface RoundInputs {
  /** Rule name (`--aggregator`, default {@link DEFAULT_AGGREGATOR}). */
  rule?: string;
  /** Rule options (manifest, base tensors, weighting, server learning rate, ...); `state` is ignored. */
  options?: AggregateOptions;
  /** The round's updates, one per sender (any order: they are aggregated in sorted sender order). */
  updates: readonly ModelUpdate[];
  /** Merge the updates' prototype statistics (default true); false keeps `keepPrototypes`. */
  mergePrototypes?: boolean;
  /** Prototypes of the result when `mergePrototypes` is false (e.g. the base state's, with secure aggregation). */
  keepPrototypes?: PrototypeTable[];
}

/** Members the round expected but did not aggregate, and why: passed in explicitly, reported back, never thrown. */
export interface RoundFailures {
  missing: ReadonlyArray<{ peer: string; why: string }>;
}

/** Result of {@link aggregateRound}: the rule's result plus the merged prototype tables. */
export interface RoundAggregate extends AggregateResult {
  /** Rule that produced it. */
  rule: string;
  /** Count-merged prototype statistics per exit (means via `prototypeMeans`); empty when no update had any. */
  prototypes: PrototypeTable[];
  /** Senders that contributed, sorted: the order the rule saw them in. */
  senders: string[];
  /** The failures passed in. */
  failures: RoundFailures;
}

/**
 * The pure heart of a round: aggregate the round's decoded updates with the named rule from the server state of
 * the previous round, merge their prototypes, and report the failures. Deterministic: the same inputs, failures
 * and server state give bit-identical deltas on every member (updates are taken in sorted sender order and every
 * rule is plain float arithmetic), which is what lets every member verify a leader's aggregate by recomputing it.
 * Pure: no I/O, no clock, no randomness; `serverState` is not modified (the new one is in the result's `state`).
 */
export function aggregateRound(inputs: RoundInputs, failures: RoundFailures = { missing: [] }, serverState?: ServerOptimizerState): RoundAggregate {
  const rule = inputs.rule ?? DEFAULT_AGGREGATOR;
  const updates = [...inputs.updates].sort((a, b) => (a.sender < b.sender ? -1 : a.sender > b.sender ? 1 : 0));
  const result = getAggregator(rule)(updates, { ...inputs.options, state: serverState });
  const withProtos = updates.map((u) => u.prototypes).filter((p) => p.length > 0);
  const prototypes = inputs.mergePrototypes === false ? (inputs.keepPrototypes ?? []) : withProtos.length ? aggregatePrototypes(withProtos) : [];
  return { ...result, rule, prototypes, senders: updates.map((u) => u.sender), failures };
}

export type { TensorMap };
