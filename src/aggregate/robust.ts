import type { TensorMap } from '../update/index.ts';
import { checkHomogeneous, totalSamples, weightedSum, weightsOf } from './fedavg.ts';
import { AggregateError, AggregateRefusal, type AggregateInput, type AggregateOptions, type AggregateResult } from './types.ts';

/** Default trimmed fraction per side (Yin et al. 2018 analyse β < 1/2; 10% tolerates 10% Byzantine updates). */
export const DEFAULT_TRIM_FRACTION = 0.1;

function coordinatewise(updates: readonly AggregateInput[], reduce: (col: Float64Array) => number): TensorMap {
  const names = checkHomogeneous(updates);
  const out: TensorMap = new Map();
  const col = new Float64Array(updates.length);
  for (const n of names) {
    const len = updates[0].deltas.get(n)!.length;
    const res = new Float32Array(len);
    const arrays = updates.map((u) => u.deltas.get(n)!);
    for (let j = 0; j < len; j++) {
      for (let i = 0; i < arrays.length; i++) col[i] = arrays[i][j];
      col.sort();
      res[j] = reduce(col);
    }
    out.set(n, res);
  }
  return out;
}

/**
 * Coordinate-wise median (Yin et al., "Byzantine-Robust Distributed Learning", ICML 2018). Unweighted: sample
 * counts are self-reported and a robust rule must not trust them. Even counts average the two middle values.
 */
export function median(updates: readonly AggregateInput[]): AggregateResult {
  const deltas = coordinatewise(updates, (c) => {
    const k = c.length;
    return k % 2 === 1 ? c[(k - 1) / 2] : (c[k / 2 - 1] + c[k / 2]) / 2;
  });
  return { deltas, sampleCount: totalSamples(updates), loraRank: updates[0].loraRank };
}

/**
 * Coordinate-wise trimmed mean (Yin et al., ICML 2018): drop the ⌊β·n⌋ largest and smallest values of each
 * coordinate, average the rest (unweighted). β = `trimFraction`, default {@link DEFAULT_TRIM_FRACTION}.
 */
export function trimmedMean(updates: readonly AggregateInput[], opts: AggregateOptions = {}): AggregateResult {
  const beta = opts.trimFraction ?? DEFAULT_TRIM_FRACTION;
  if (!(beta >= 0 && beta < 0.5)) throw new AggregateError(AggregateRefusal.BAD_OPTION, `trimFraction ${beta} outside [0, 0.5)`);
  const k = Math.floor(beta * updates.length);
  const deltas = coordinatewise(updates, (c) => {
    let s = 0;
    for (let i = k; i < c.length - k; i++) s += c[i];
    return s / (c.length - 2 * k);
  });
  return { deltas, sampleCount: totalSamples(updates), loraRank: updates[0].loraRank };
}

/** L2 norm over all tensors of an update. */
export function updateNorm(deltas: TensorMap): number {
  let s = 0;
  for (const d of deltas.values()) for (let i = 0; i < d.length; i++) s += d[i] * d[i];
  return Math.sqrt(s);
}

/**
 * Norm bounding (Sun et al., "Can You Really Backdoor Federated Learning?", 2019): scale every update whose L2
 * norm exceeds M down to M, then FedAvg. M = `maxNorm`, default the median norm of the round's updates (so a
 * minority of outsized updates cannot dominate, with no tuning). This is fmfl's documented robust default.
 */
export function normBound(updates: readonly AggregateInput[], opts: AggregateOptions = {}): AggregateResult {
  const names = checkHomogeneous(updates);
  const norms = updates.map((u) => updateNorm(u.deltas));
  let bound = opts.maxNorm;
  if (bound === undefined) {
    const s = [...norms].sort((a, b) => a - b);
    const k = s.length;
    bound = k % 2 === 1 ? s[(k - 1) / 2] : (s[k / 2 - 1] + s[k / 2]) / 2;
  } else if (!(bound > 0) || !Number.isFinite(bound)) {
    throw new AggregateError(AggregateRefusal.BAD_OPTION, `maxNorm ${bound} must be positive and finite`);
  }
  const w = weightsOf(updates, opts);
  const scaled = Float64Array.from(w, (wi, i) => (norms[i] > bound! && norms[i] > 0 ? wi * (bound! / norms[i]) : wi));
  return { deltas: weightedSum(updates, scaled, names), sampleCount: totalSamples(updates), loraRank: updates[0].loraRank };
}
