import type { TensorMap } from '../update/index.ts';
import { AggregateError, AggregateRefusal, type AggregateInput, type AggregateOptions, type AggregateResult } from './types.ts';

/** Throw unless every update has the same tensor names and lengths as the first; returns the names. */
export function checkHomogeneous(updates: readonly AggregateInput[]): string[] {
  if (updates.length === 0) throw new AggregateError(AggregateRefusal.NO_UPDATES, 'nothing to aggregate');
  const names = [...updates[0].deltas.keys()];
  for (const [k, u] of updates.entries()) {
    if (!Number.isFinite(u.sampleCount) || u.sampleCount <= 0) {
      throw new AggregateError(AggregateRefusal.NON_FINITE, `update ${k}: sample count ${u.sampleCount} must be positive`);
    }
    if (u.deltas.size !== names.length) {
      throw new AggregateError(AggregateRefusal.SHAPE_MISMATCH, `update ${k} has ${u.deltas.size} tensors, update 0 has ${names.length}`);
    }
    for (const n of names) {
      const d = u.deltas.get(n);
      const want = updates[0].deltas.get(n)!.length;
      if (d === undefined || d.length !== want) {
        throw new AggregateError(AggregateRefusal.SHAPE_MISMATCH,
          `update ${k}: tensor ${n} ${d === undefined ? 'missing' : `has ${d.length} values, expected ${want}`} (use a rank-heterogeneous rule for mixed LoRA ranks)`);
      }
      for (let i = 0; i < d.length; i++) {
        if (!Number.isFinite(d[i])) throw new AggregateError(AggregateRefusal.NON_FINITE, `update ${k}: tensor ${n} has a non-finite value at ${i}`);
      }
    }
  }
  return names;
}

/** Normalized weights: sample counts (default) or uniform. */
export function weightsOf(updates: readonly AggregateInput[], opts: AggregateOptions = {}): Float64Array {
  const w = new Float64Array(updates.length);
  const mode = opts.weighting ?? 'samples';
  if (mode !== 'samples' && mode !== 'uniform') throw new AggregateError(AggregateRefusal.BAD_OPTION, `weighting must be "samples" or "uniform"`);
  let total = 0;
  updates.forEach((u, i) => { w[i] = mode === 'uniform' ? 1 : u.sampleCount; total += w[i]; });
  if (!(total > 0) || !Number.isFinite(total)) throw new AggregateError(AggregateRefusal.NON_FINITE, 'weights do not sum to a positive finite number');
  for (let i = 0; i < w.length; i++) w[i] /= total;
  return w;
}

export function totalSamples(updates: readonly AggregateInput[]): number {
  return updates.reduce((s, u) => s + u.sampleCount, 0);
}

/** Σ_i w_i · x_i per tensor in float64, returned as Float32Arrays. */
export function weightedSum(updates: readonly AggregateInput[], w: ArrayLike<number>, names: readonly string[]): TensorMap {
  const out: TensorMap = new Map();
  for (const n of names) {
    const acc = new Float64Array(updates[0].deltas.get(n)!.length);
    updates.forEach((u, i) => {
      const d = u.deltas.get(n)!;
      const wi = w[i];
      for (let j = 0; j < d.length; j++) acc[j] += wi * d[j];
    });
    out.set(n, Float32Array.from(acc));
  }
  return out;
}

/**
 * FedAvg (McMahan et al., AISTATS 2017): the sample-weighted mean of the deltas. With equal LoRA ranks this is
 * also homogeneous LoRA aggregation (A and B averaged separately, as in FedIT / Zhang et al. 2024), which is
 * exact only when A is frozen (see `ffa-lora`).
 */
export function fedavg(updates: readonly AggregateInput[], opts: AggregateOptions = {}): AggregateResult {
  const names = checkHomogeneous(updates);
  const w = weightsOf(updates, opts);
  return { deltas: weightedSum(updates, w, names), sampleCount: totalSamples(updates), loraRank: updates[0].loraRank };
}
