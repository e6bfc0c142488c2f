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

/** Normalized weights: sample counts (default; also the base of `depth`, see {@link holderWeights}) or uniform. */
export function weightsOf(updates: readonly AggregateInput[], opts: AggregateOptions = {}): Float64Array {
  const w = new Float64Array(updates.length);
  const mode = opts.weighting ?? 'samples';
  if (mode !== 'samples' && mode !== 'uniform' && mode !== 'depth') throw new AggregateError(AggregateRefusal.BAD_OPTION, `weighting must be "samples", "uniform" or "depth"`);
  let total = 0;
  updates.forEach((u, i) => { w[i] = mode === 'uniform' ? 1 : u.sampleCount; total += w[i]; });
  if (!(total > 0) || !Number.isFinite(total)) throw new AggregateError(AggregateRefusal.NON_FINITE, 'weights do not sum to a positive finite number');
  for (let i = 0; i < w.length; i++) w[i] /= total;
  return w;
}

export function totalSamples(updates: readonly AggregateInput[]): number {
  return updates.reduce((s, u) => s + u.sampleCount, 0);
}

/**
 * Tensor names carried by any update, in first-seen order (updates come sorted by sender, so the order is the same
 * on every member), each checked: its holders agree on its length, their values are finite and their sample
 * counts positive. The per-tensor form of {@link checkHomogeneous}: with depth budgets (`--max-depth`) an update
 * carries only the tensors its sender trained.
 */
export function tensorHolders(updates: readonly AggregateInput[]): Map<string, number[]> {
  if (updates.length === 0) throw new AggregateError(AggregateRefusal.NO_UPDATES, 'nothing to aggregate');
  const holders = new Map<string, number[]>();
  const lengths = new Map<string, number>();
  for (const [k, u] of updates.entries()) {
    if (!Number.isFinite(u.sampleCount) || u.sampleCount <= 0) {
      throw new AggregateError(AggregateRefusal.NON_FINITE, `update ${k}: sample count ${u.sampleCount} must be positive`);
    }
    if (u.deltas.size === 0) throw new AggregateError(AggregateRefusal.SHAPE_MISMATCH, `update ${k} carries no tensor`);
    for (const [n, d] of u.deltas) {
      const want = lengths.get(n);
      if (want !== undefined && d.length !== want) {
        throw new AggregateError(AggregateRefusal.SHAPE_MISMATCH, `update ${k}: tensor ${n} has ${d.length} values, an earlier update ${want} (use a rank-heterogeneous rule for mixed LoRA ranks)`);
      }
      for (let i = 0; i < d.length; i++) {
        if (!Number.isFinite(d[i])) throw new AggregateError(AggregateRefusal.NON_FINITE, `update ${k}: tensor ${n} has a non-finite value at ${i}`);
      }
      lengths.set(n, d.length);
      const h = holders.get(n);
      if (h === undefined) holders.set(n, [k]);
      else h.push(k);
    }
  }
  return holders;
}

/**
 * The weights of `tensor`'s holders: the round's normalized weights `w` when every update carries it, otherwise
 * renormalized over the updates that do (a tensor is averaged over the nodes that trained it); none when no update
 * carries it.
 */
export function holderWeights(updates: readonly AggregateInput[], w: ArrayLike<number>, tensor: string, weighting?: AggregateOptions['weighting']): { idx: number[]; w: number[] } {
  const idx: number[] = [];
  for (let i = 0; i < updates.length; i++) if (updates[i].deltas.has(tensor)) idx.push(i);
  const depth = weighting === 'depth';
  if ((idx.length === updates.length && !depth) || idx.length === 0) return { idx, w: idx.map((i) => w[i]) };
  const wi = idx.map((i) => w[i] * (depth ? lossTermsThrough(updates[i], tensor) : 1));
  let s = 0;
  for (const x of wi) s += x;
  if (!(s > 0)) throw new AggregateError(AggregateRefusal.NON_FINITE, `the holders of ${tensor} have no weight`);
  return { idx, w: wi.map((x) => x / s) };
}

const BLOCK = /^blocks\.(\d+)\./;
const EXIT = /^exits\.(\d+)\./;
const exitsOf = new WeakMap<AggregateInput, number>();

/**
 * `weighting: 'depth'` (depth budgets): how many of an update's exit losses a tensor's gradient came through. An
 * update that carries exits 0..D-1 (its depth D) trained block b through exits b..D-1 (D - b loss terms) and an exit
 * head through its own loss alone; other tensors through all D. So a shared shallow block weighs a deep node's
 * update by D_deep - b against a shallow node's D_shallow - b, times the sample weights: it follows the nodes whose
 * step serves the deep exits too. With one depth across the updates it is the sample weighting. Names outside the
 * `blocks.<b>.` / `exits.<e>.` scheme weigh 1 per update.
 */
function lossTermsThrough(u: AggregateInput, tensor: string): number {
  let d = exitsOf.get(u);
  if (d === undefined) {
    d = 0;
    for (const n of u.deltas.keys()) {
      const m = EXIT.exec(n);
      if (m) d = Math.max(d, Number(m[1]) + 1);
    }
    exitsOf.set(u, d);
  }
  if (d === 0) return 1;
  if (EXIT.test(tensor)) return 1;
  const b = BLOCK.exec(tensor);
  return b ? Math.max(1, d - Number(b[1])) : d;
}

/**
 * Σ_i w_i · x_i per tensor in float64 over the updates that carry it (weights renormalized over them, see
 * {@link holderWeights}), returned as Float32Arrays. Tensors no update carries are absent from the result (the
 * global keeps them unchanged).
 */
export function weightedSum(updates: readonly AggregateInput[], w: ArrayLike<number>, names: readonly string[], weighting?: AggregateOptions['weighting']): TensorMap {
  const out: TensorMap = new Map();
  for (const n of names) {
    const hw = holderWeights(updates, w, n, weighting);
    if (hw.idx.length === 0) continue;
    const acc = new Float64Array(updates[hw.idx[0]].deltas.get(n)!.length);
    hw.idx.forEach((i, j) => {
      const d = updates[i].deltas.get(n)!;
      const wi = hw.w[j];
      for (let k = 0; k < d.length; k++) acc[k] += wi * d[k];
    });
    out.set(n, Float32Array.from(acc));
  }
  return out;
}

/**
 * FedAvg (McMahan et al., AISTATS 2017): the sample-weighted mean of the deltas. With equal LoRA ranks this is
 * also homogeneous LoRA aggregation (A and B averaged separately, as in FedIT / Zhang et al. 2024), which is
 * exact only when A is frozen (see `ffa-lora`). Per tensor: each tensor is the weighted mean over the updates
 * that carry it (depth budgets, DepthFL / InclusiveFL); tensors nobody sent are absent and stay unchanged.
 */
export function fedavg(updates: readonly AggregateInput[], opts: AggregateOptions = {}): AggregateResult {
  const names = [...tensorHolders(updates).keys()];
  const w = weightsOf(updates, opts);
  return { deltas: weightedSum(updates, w, names, opts.weighting), sampleCount: totalSamples(updates), loraRank: updates[0].loraRank };
}
