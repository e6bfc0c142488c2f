import { fedavg } from './fedavg.ts';
import { ffaLora, flexlora, hetlora } from './lora.ts';
import { median, normBound, trimmedMean } from './robust.ts';
import { fedExP, withServerMomentum, withServerOptimizer } from './server-opt.ts';
import { AggregateError, AggregateRefusal, type Aggregator } from './types.ts';

const BASE_RULES: Record<string, Aggregator> = {
  fedavg,
  median: (u) => median(u),
  'trimmed-mean': trimmedMean,
  'norm-bound': normBound,
  flexlora,
  'hetlora-zero': hetlora('zero'),
  'hetlora-replicate': hetlora('replicate'),
  'ffa-lora': ffaLora,
};

function inner(name: string): Aggregator {
  const r = BASE_RULES[name];
  if (r === undefined) {
    throw new AggregateError(AggregateRefusal.UNKNOWN_AGGREGATOR, `inner rule "${name}" must be one of ${Object.keys(BASE_RULES).join(', ')}`);
  }
  return r;
}

/**
 * Every aggregation rule by the name `--aggregator <name>` accepts. Server optimizers (fedavgm, fedadam, fedyogi,
 * fedadagrad) run on the output of `opts.inner` (default fedavg).
 */
const SERVER_OPTIMIZERS: Record<string, Aggregator> = {
  fedavgm: withServerMomentum(inner),
  fedexp: fedExP(inner),
  fedadam: withServerOptimizer('adam', inner),
  fedyogi: withServerOptimizer('yogi', inner),
  fedadagrad: withServerOptimizer('adagrad', inner),
};

export const AGGREGATORS: Readonly<Record<string, Aggregator>> = Object.freeze({ ...BASE_RULES, ...SERVER_OPTIMIZERS });

/** Rules a server optimizer can run on (`AggregateOptions.inner`, `--aggregator-inner`). */
export const INNER_RULE_NAMES: readonly string[] = Object.freeze(Object.keys(BASE_RULES));
/** Rules that run a server optimizer on an inner rule's averaged delta. */
export const SERVER_OPTIMIZER_RULES: readonly string[] = Object.freeze(Object.keys(SERVER_OPTIMIZERS));

/** Names of all rules, for CLI help. */
export const AGGREGATOR_NAMES: readonly string[] = Object.freeze(Object.keys(AGGREGATORS));

/**
 * Default rule: FedAvg with server momentum (0.6), the best of the rules on the 8-node Fashion-MNIST runs for meshes
 * of trusted members (README "Federation results"); `fedavg` is the survey's plain baseline.
 */
export const DEFAULT_AGGREGATOR = 'fedavgm';
/**
 * Default robust rule: norm bounding at the round's median update norm. Unlike median / trimmed mean it keeps
 * FedAvg's sample weighting and convergence on benign non-IID data, while capping any single update's pull
 * (Sun et al. 2019). Use `trimmed-mean` / `median` when a known fraction of members may be Byzantine.
 */
export const DEFAULT_ROBUST_AGGREGATOR = 'norm-bound';

/** The rule with this name; a typed error lists the valid names. */
export function getAggregator(name: string): Aggregator {
  const r = Object.hasOwn(AGGREGATORS, name) ? AGGREGATORS[name] : undefined;
  if (r === undefined) {
    throw new AggregateError(AggregateRefusal.UNKNOWN_AGGREGATOR, `unknown aggregator "${name}"; choose one of ${AGGREGATOR_NAMES.join(', ')}`);
  }
  return r;
}

/** Rules whose server state is a momentum buffer every member derives from the applied global step. */
export const MOMENTUM_AGGREGATORS: readonly string[] = Object.freeze(['fedavgm']);
