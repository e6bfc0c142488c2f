import type { ModelUpdate, PrototypeTable } from '../update/index.ts';
import { aggregatePrototypes } from './prototypes.ts';
import { DEFAULT_AGGREGATOR, getAggregator } from './registry.ts';
import type { AggregateOptions, AggregateResult } from './types.ts';

/** Result of {@link aggregateRound}: the rule's result plus the merged prototype tables. */
export interface RoundAggregate extends AggregateResult {
  /** Rule that produced it. */
  rule: string;
  /** Summed prototype statistics per exit (means via `prototypeMeans`). */
  prototypes: PrototypeTable[];
  /** Senders that contributed, in input order. */
  senders: string[];
}

/**
 * Aggregate one round's decoded updates with the rule named `rule` (`--aggregator`, default
 * {@link DEFAULT_AGGREGATOR}) and merge their prototypes. Pure; the caller has already decoded and validated the
 * updates (`decodeUpdate`), checked round freshness and de-duplicated senders.
 */
export function aggregateRound(updates: readonly ModelUpdate[], rule: string = DEFAULT_AGGREGATOR, opts: AggregateOptions = {}): RoundAggregate {
  const result = getAggregator(rule)(updates, opts);
  return { ...result, rule, prototypes: aggregatePrototypes(updates.map((u) => u.prototypes)), senders: updates.map((u) => u.sender) };
}
