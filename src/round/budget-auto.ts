/**
 * `--budget auto`: a node picks its depth budget (`--max-depth`) and LoRA rank (`--rank`) from a target time of local
 * training per round (`--round-seconds T`) and what it measured at start (src/node/capabilities.ts), instead of
 * having them declared by hand (the "`--budget auto` picks depth and rank from a target time per round").
 *
 * Prediction: one step at depth k (blocks 1..k, exits 1..k) and rank r takes
 *
 *   step(k, r) = (B / s) · f(k) · (1 + ρ(r)) / (1 + ρ(r₀))
 *
 * where s is the measured training throughput (samples/s, full depth, rank r₀), B the training batch (step time is
 * taken as linear in the batch), f(k) = L(k) / L(D) the measured cumulative forward latency up to exit k over the
 * full depth D's at batch 64 (the per-exit latency measurement), and ρ(r) the LoRA share of a block's multiply-adds
 * per token in training: 3 · r · Σ(in + out) over the LoRA targets (forward, input gradient, weight gradient) over
 * 2 · (Σ in · out + 2 · tokens · dim) of the frozen block (forward and input gradient; attention's two matmuls).
 * Local training of a round is predicted as E · step(k, r), E = `--local-steps`.
 *
 * Rule: depth first, then rank: the deepest k ≤ the depth bound (`--max-depth`, default all blocks) and, at that
 * depth, the largest rank from the allowed set whose prediction is ≤ T. The allowed ranks are the powers of two
 * below the rank bound (`--rank`) and the bound itself, e.g. 8 → {8, 4, 2, 1}; only the bound when the aggregator
 * takes one rank (fedavg and the other single-rank rules) or the node trains heads only. When nothing fits, the
 * smallest budget (depth 1, the smallest allowed rank) is taken and said so. Bad measurements: a throughput that is
 * not a finite positive number leaves the configured bounds in place (nothing to predict from); per-exit latencies
 * that are missing, of the wrong length, non-finite or non-positive fall back to f(k) = k / D; a latency curve that
 * decreases with depth (noise on a loaded machine) is made cumulative by a running maximum, so f is non-decreasing
 * and f(D) = 1. The measurement is the node's own; peers never feed this rule.
 */
import type { LoraTarget } from '../model/vit.ts';

/** Shape of the backbone the cost model needs (per block; all blocks alike). */
export interface BudgetShape {
  /** Blocks (= exits) of the backbone. */
  depth: number;
  dim: number;
  /** Hidden width of the MLP. */
  mlp: number;
  /** Tokens per image (patches + class token). */
  tokens: number;
  targets: readonly LoraTarget[];
}

/** What the node measured at start, as the rule reads it. */
export interface BudgetMeasurement {
  /** Training samples/s at full depth and rank `rank`. */
  trainThroughput: number;
  /** Rank the throughput was measured at. */
  rank: number;
  /** Cumulative forward latency per exit at batch 64, ms. */
  exitLatencyMs64: readonly number[];
}

/** Inputs of {@link pickBudget}. */
export interface BudgetInput {
  /** Target seconds of local training per round (`--round-seconds`). */
  roundSeconds: number;
  localSteps: number;
  batch: number;
  /** Deepest depth allowed (`--max-depth`, or the backbone's depth). */
  maxDepth: number;
  /** Largest rank allowed (`--rank`). */
  maxRank: number;
  /** Whether smaller ranks may be picked (a rank-heterogeneous aggregator and LoRA training). */
  rankFlexible: boolean;
  shape: BudgetShape;
  measurement: BudgetMeasurement | null;
}

/** What the rule picked and why. */
export interface BudgetPick {
  depth: number;
  rank: number;
  /**
   * `fits`: the prediction is within the target; `none-fits`: the smallest budget, still over; `unmeasured`: the bounds
   * kept; `resumed`: the pick a restarted node's checkpoint was written at (src/node/budget.ts).
   */
  outcome: 'fits' | 'none-fits' | 'unmeasured' | 'resumed';
  /** Predicted seconds per step and per round of local training at the pick (NaN when unmeasured). */
  stepSeconds: number;
  trainSeconds: number;
  /** How f(k) was obtained. */
  depthModel: 'measured' | 'linear';
  /** One line for the start-up log. */
  reason: string;
}

/** Thrown for a target, step count, batch or bound that is not a finite positive number (a configuration error). */
export class BudgetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BudgetError';
  }
}

const IN_OUT: Record<LoraTarget, (s: BudgetShape) => [number, number]> = {
  q: (s) => [s.dim, s.dim], k: (s) => [s.dim, s.dim], v: (s) => [s.dim, s.dim], proj: (s) => [s.dim, s.dim],
  fc1: (s) => [s.dim, s.mlp], fc2: (s) => [s.mlp, s.dim],
};

/** ρ(r): LoRA multiply-adds of a training step over the frozen block's (see the module note). */
export function loraShare(shape: BudgetShape, rank: number): number {
  const frozen = (['q', 'k', 'v', 'proj', 'fc1', 'fc2'] as const).reduce((a, t) => a + IN_OUT[t](shape)[0] * IN_OUT[t](shape)[1], 0) + 2 * shape.tokens * shape.dim;
  const lora = shape.targets.reduce((a, t) => a + rank * (IN_OUT[t](shape)[0] + IN_OUT[t](shape)[1]), 0);
  return (3 * lora) / (2 * frozen);
}

/** The allowed ranks, largest first: powers of two below `maxRank` and `maxRank` itself. */
export function budgetRanks(maxRank: number, flexible = true): number[] {
  if (!flexible) return [maxRank];
  const out = [maxRank];
  for (let p = 2 ** Math.floor(Math.log2(maxRank)); p >= 1; p /= 2) if (p < maxRank) out.push(p);
  return out;
}

/** f(k) for k = 1..D from the per-exit latencies, and whether they were usable (see the module note). */
export function depthFractions(latency: readonly number[] | undefined, depth: number): { f: number[]; model: 'measured' | 'linear' } {
  const linear = { f: Array.from({ length: depth }, (_, i) => (i + 1) / depth), model: 'linear' as const };
  if (!latency || latency.length !== depth || !latency.every((x) => Number.isFinite(x) && x > 0)) return linear;
  const cum: number[] = [];
  for (const x of latency) cum.push(Math.max(x, cum.at(-1) ?? 0));
  return { f: cum.map((x) => x / cum[depth - 1]), model: 'measured' };
}

const positive = (x: number): boolean => Number.isFinite(x) && x > 0;
const s2 = (x: number): string => (x >= 10 ? x.toFixed(0) : x >= 1 ? x.toFixed(1) : String(Number(x.toPrecision(2))));

/** Pick depth and rank for a target time per round (see the module note). @throws BudgetError on bad inputs. */
export function pickBudget(i: BudgetInput): BudgetPick {
  for (const [k, v] of [['roundSeconds', i.roundSeconds], ['localSteps', i.localSteps], ['batch', i.batch], ['maxRank', i.maxRank], ['shape.depth', i.shape.depth]] as const) {
    if (!positive(v)) throw new BudgetError(`budget auto: ${k} must be a finite positive number (got ${v})`);
  }
  if (!Number.isInteger(i.maxDepth) || i.maxDepth < 1 || i.maxDepth > i.shape.depth) throw new BudgetError(`budget auto: the depth bound must be an integer in 1..${i.shape.depth} (got ${i.maxDepth})`);
  const ranks = budgetRanks(i.maxRank, i.rankFlexible);
  const m = i.measurement;
  if (!m || !positive(m.trainThroughput) || !positive(m.rank)) {
    return { depth: i.maxDepth, rank: i.maxRank, outcome: 'unmeasured', stepSeconds: NaN, trainSeconds: NaN, depthModel: 'linear', reason: `budget auto: no usable training-speed measurement (throughput ${m?.trainThroughput ?? 'not measured'}); keeping depth ${i.maxDepth} of ${i.shape.depth}, rank ${i.maxRank}` };
  }
  const { f, model } = depthFractions(m.exitLatencyMs64, i.shape.depth);
  const base = (i.batch / m.trainThroughput) / (1 + loraShare(i.shape, m.rank));
  const step = (k: number, r: number): number => base * f[k - 1] * (1 + loraShare(i.shape, r));
  const say = (k: number, r: number, rel: string, outcome: BudgetPick['outcome']): BudgetPick => {
    const st = step(k, r);
    const tr = st * i.localSteps;
    const how = model === 'measured' ? `depth ${k}` : `depth ${k} (per-exit latency unusable: scaled by ${k}/${i.shape.depth})`;
    return {
      depth: k, rank: r, outcome, stepSeconds: st, trainSeconds: tr, depthModel: model,
      reason: `budget auto: depth ${k} of ${i.shape.depth}, rank ${r}: ${s2(st)} s per step at ${how}, ${i.localSteps} steps = ${s2(tr)} s ${rel} ${s2(i.roundSeconds)} s`,
    };
  };
  for (let k = i.maxDepth; k >= 1; k--) {
    for (const r of ranks) if (step(k, r) * i.localSteps <= i.roundSeconds) return say(k, r, '≤', 'fits');
  }
  const p = say(1, ranks.at(-1)!, '>', 'none-fits');
  return { ...p, reason: `${p.reason}: nothing fits, training the smallest budget (fewer --local-steps or a larger --round-seconds would fit)` };
}
