import { FmflError } from '../util/errors.ts';
import type { TensorMap, UpdateManifest } from '../update/index.ts';

/** Why an aggregation was refused. */
export const AggregateRefusal = {
  /** No updates were given. */
  NO_UPDATES: 'no-updates',
  /** Updates disagree on tensor names or lengths (or a LoRA tensor does not fit its rank). */
  SHAPE_MISMATCH: 'shape-mismatch',
  /** An option is missing or outside its documented range. */
  BAD_OPTION: 'bad-option',
  /** A weight, value or sample count is not finite / not positive. */
  NON_FINITE: 'non-finite',
  /** freeze-A (FFA-LoRA) was requested but an update changes a LoRA A factor. */
  FROZEN_A_CHANGED: 'frozen-a-changed',
  /** The named aggregator does not exist. */
  UNKNOWN_AGGREGATOR: 'unknown-aggregator',
} as const;
export type AggregateRefusal = (typeof AggregateRefusal)[keyof typeof AggregateRefusal];

/** Typed error of every aggregation rule. */
export class AggregateError extends FmflError {
  readonly reason: AggregateRefusal;
  constructor(reason: AggregateRefusal, message: string) {
    super('AGGREGATE', `${reason}: ${message}`);
    this.reason = reason;
  }
}

/** What an aggregator needs from an update ({@link ModelUpdate} satisfies it). */
export interface AggregateInput {
  deltas: TensorMap;
  /** FedAvg weight. */
  sampleCount: number;
  /** Sender's LoRA rank (LoRA-aware rules). */
  loraRank?: number;
}

/** Server-optimizer state carried between rounds (FedAdam / FedYogi / FedAdagrad). Persist it with the node. */
export interface ServerOptimizerState {
  /** First moment per tensor. */
  m: Map<string, Float64Array>;
  /** Second moment per tensor. */
  v: Map<string, Float64Array>;
  /** Rounds applied so far. */
  step: number;
}

/**
 * One options bag for every rule, so a `--aggregator <name>` flag can pass the same object to any of them.
 * Each rule reads only its fields; defaults are documented per field.
 */
export interface AggregateOptions {
  /**
   * Weight of each update: `samples` (sample count, FedAvg; default), `uniform`, or `depth` (depth budgets: per
   * tensor, the sample count times the number of the update's exit losses the tensor was trained through; see
   * holderWeights in fedavg.ts).
   */
  weighting?: 'samples' | 'uniform' | 'depth';
  /** Backbone manifest: LoRA-aware rules use its `loraAxis` marks to find A/B factors. */
  manifest?: UpdateManifest;
  /** Suffixes pairing LoRA factors: default `.lora_a` / `.lora_b`. */
  loraSuffixes?: { a: string; b: string };
  /**
   * Current global tensors (at the global rank). FlexLoRA needs the full factors A = base + ΔA; without a base
   * the deltas are taken as the full factors.
   */
  base?: TensorMap;
  /** LoRA alpha: the effective update is (alpha / r)·A·B. Rank-heterogeneous rules scale by it; default: no scaling. */
  loraAlpha?: number;
  /** Rank of the aggregated LoRA factors (flexlora / hetlora); default: the largest rank among the updates. */
  targetRank?: number;
  /** Trimmed mean: fraction trimmed from each end per coordinate, in [0, 0.5); default 0.1. */
  trimFraction?: number;
  /** Norm bounding: L2 bound per update; default: the median of the round's update norms. */
  maxNorm?: number;
  /** Server optimizer: state from the previous round (absent: fresh). */
  state?: ServerOptimizerState;
  /** Server learning rate η; default 0.01 for fedadam/fedyogi/fedadagrad (Reddi et al. 2021 grid; Flower's FedYogi default), 1 for fedavgm. */
  serverLr?: number;
  /** FedAvgM: server momentum β in [0, 1), default 0.6 (see DEFAULT_SERVER_MOMENTUM). */
  serverMomentum?: number;
  /** β1, default 0.9 (Reddi et al. 2021). */
  beta1?: number;
  /** β2, default 0.99 (Reddi et al. 2021). */
  beta2?: number;
  /** τ (adaptivity), default 1e-3 (Reddi et al. 2021). */
  tau?: number;
  /** Inner rule whose output the server optimizer treats as the pseudo-gradient; default `fedavg`. */
  inner?: string;
}

/** Result of an aggregation: the global delta to apply, and state for the next round where the rule has one. */
export interface AggregateResult {
  deltas: TensorMap;
  /** Total samples behind the result. */
  sampleCount: number;
  /** Server-optimizer state to carry to the next round. */
  state?: ServerOptimizerState;
  /** LoRA rank of the result (LoRA-aware rules). */
  loraRank?: number;
  /** Server step size the rule used (fedexp). */
  serverStep?: number;
}

/** A pure aggregation rule. */
export type Aggregator = (updates: readonly AggregateInput[], opts?: AggregateOptions) => AggregateResult;
