import type { TensorMap, TensorSpec, UpdateManifest } from '../update/index.ts';
import { checkHomogeneous, holderWeights, tensorHolders, totalSamples, weightedSum, weightsOf } from './fedavg.ts';
import { lowRankSvd, mat, type Mat } from './linalg.ts';
import { AggregateError, AggregateRefusal, type AggregateInput, type AggregateOptions, type AggregateResult } from './types.ts';

/** Default LoRA factor suffixes: `<prefix>.lora_a` [in, r] and `<prefix>.lora_b` [r, out], ΔW = (α/r)·A·B. */
export const DEFAULT_LORA_SUFFIXES = { a: '.lora_a', b: '.lora_b' } as const;

/** One adapted weight: A is [inDim, r] (rank axis 1), B is [r, outDim] (rank axis 0). */
export interface LoraPair {
  a: string;
  b: string;
  inDim: number;
  outDim: number;
}

function need<T>(v: T | undefined, what: string): T {
  if (v === undefined) throw new AggregateError(AggregateRefusal.BAD_OPTION, `${what} is required by this rule`);
  return v;
}

/** The LoRA factor pairs of a manifest, found by suffix and checked against the A·B convention. */
export function loraPairs(manifest: UpdateManifest, suffixes: { a: string; b: string } = DEFAULT_LORA_SUFFIXES): LoraPair[] {
  const byName = new Map(manifest.tensors.map((s) => [s.name, s]));
  const pairs: LoraPair[] = [];
  for (const s of manifest.tensors) {
    if (!s.name.endsWith(suffixes.a)) continue;
    const bName = s.name.slice(0, -suffixes.a.length) + suffixes.b;
    const b = byName.get(bName);
    const bad = (m: string): never => { throw new AggregateError(AggregateRefusal.BAD_OPTION, `LoRA pair ${s.name} / ${bName}: ${m}`); };
    if (b === undefined) bad('B factor missing from the manifest');
    if (s.shape.length !== 2 || s.loraAxis !== 1) bad('A must be [in, r] with loraAxis 1');
    if (b!.shape.length !== 2 || b!.loraAxis !== 0) bad('B must be [r, out] with loraAxis 0');
    pairs.push({ a: s.name, b: bName, inDim: s.shape[0], outDim: b!.shape[1] });
  }
  return pairs;
}

/**
 * Resize a 2-D tensor along its rank axis from `from` to `to`: truncation keeps the leading rank slices, growth
 * pads zeros (HetLoRA, Cho et al. 2024).
 */
export function resizeRankAxis(values: Float32Array, spec: TensorSpec, from: number, to: number): Float32Array {
  if (spec.loraAxis === undefined || from === to) return values;
  const ax = spec.loraAxis;
  const other = spec.shape[ax === 0 ? 1 : 0];
  const out = new Float32Array(other * to);
  const keep = Math.min(from, to);
  if (ax === 0) out.set(values.subarray(0, keep * other));
  else for (let i = 0; i < other; i++) for (let j = 0; j < keep; j++) out[i * to + j] = values[i * from + j];
  return out;
}

/**
 * Bring every LoRA tensor of `deltas` (at rank `from`) to rank `to`: how a node takes its share of a global
 * adapter of higher rank (truncation, HetLoRA) or places a smaller one in a larger global (zero padding).
 */
export function resizeLora(deltas: TensorMap, manifest: UpdateManifest, from: number, to: number): TensorMap {
  const out: TensorMap = new Map(deltas);
  for (const s of manifest.tensors) {
    const d = deltas.get(s.name);
    if (d !== undefined && s.loraAxis !== undefined) out.set(s.name, resizeRankAxis(d, s, from, to));
  }
  return out;
}

function rankOf(u: AggregateInput, pair: LoraPair): number {
  const r = u.loraRank ?? u.deltas.get(pair.a)!.length / pair.inDim;
  const a = u.deltas.get(pair.a);
  const b = u.deltas.get(pair.b);
  if (!Number.isInteger(r) || r < 1 || a?.length !== pair.inDim * r || b?.length !== r * pair.outDim) {
    throw new AggregateError(AggregateRefusal.SHAPE_MISMATCH, `${pair.a}/${pair.b} do not fit rank ${r}`);
  }
  return r;
}

function scaleOf(opts: AggregateOptions, r: number): number {
  if (opts.loraAlpha === undefined) return 1;
  if (!(opts.loraAlpha > 0) || !Number.isFinite(opts.loraAlpha)) throw new AggregateError(AggregateRefusal.BAD_OPTION, `loraAlpha ${opts.loraAlpha} must be positive`);
  return opts.loraAlpha / r;
}

interface Split {
  lora: Set<string>;
  /** Pairs some update carries (an update carries both factors of a pair or neither). */
  pairs: LoraPair[];
  others: string[];
  ranks: number[];
  target: number;
}

/**
 * Check the updates and split their tensors into LoRA pairs and the rest. Per tensor (depth budgets): an update
 * may omit whole pairs and other tensors; the ones it carries must fit its rank.
 */
function split(updates: readonly AggregateInput[], opts: AggregateOptions): Split {
  if (updates.length === 0) throw new AggregateError(AggregateRefusal.NO_UPDATES, 'nothing to aggregate');
  const manifest = need(opts.manifest, 'opts.manifest');
  const all = loraPairs(manifest, opts.loraSuffixes);
  const lora = new Set(manifest.tensors.filter((s) => s.loraAxis !== undefined).map((s) => s.name));
  const pairs = all.filter((p) => updates.some((u) => u.deltas.has(p.a) || u.deltas.has(p.b)));
  const ranks = updates.map((u, i) => {
    const first = pairs.find((p) => u.deltas.has(p.a) || u.deltas.has(p.b));
    const r = u.loraRank ?? (first === undefined ? 0 : rankOf(u, first));
    if (!Number.isInteger(r) || r < (pairs.length > 0 ? 1 : 0)) throw new AggregateError(AggregateRefusal.SHAPE_MISMATCH, `update ${i}: LoRA rank ${r} invalid`);
    return r;
  });
  for (const p of pairs) {
    updates.forEach((u, i) => {
      if (!u.deltas.has(p.a) && !u.deltas.has(p.b)) return;
      if (rankOf(u, p) !== ranks[i]) throw new AggregateError(AggregateRefusal.SHAPE_MISMATCH, `update ${i}: ${p.a} has another rank`);
    });
  }
  const target = opts.targetRank ?? Math.max(...ranks);
  if (!Number.isInteger(target) || target < 1) throw new AggregateError(AggregateRefusal.BAD_OPTION, `targetRank ${target} must be a positive integer`);
  const rest = updates.map((u) => ({ deltas: new Map([...u.deltas].filter(([n]) => !lora.has(n))), sampleCount: u.sampleCount }));
  const others = rest.every((u) => u.deltas.size === 0) ? [] : [...tensorHolders(rest.filter((u) => u.deltas.size > 0)).keys()];
  return { lora, pairs, others, ranks, target };
}

function othersAvg(updates: readonly AggregateInput[], s: Split, w: Float64Array, opts: AggregateOptions): TensorMap {
  return weightedSum(updates, w, s.others, opts.weighting);
}

/**
 * Rank-heterogeneous LoRA by padding (deltas of rank r_i placed in a global adapter of rank R):
 * - `zero`: missing rank slices count as zero with full weight (HetLoRA, Cho et al., EMNLP 2024).
 * - `replicate`: each rank slice is averaged only over the updates that have it, weights renormalized — the
 *   missing slices are filled by replicating the holders' mean (Byun & Lee, "Towards Federated Low-Rank
 *   Adaptation of Language Models with Rank Heterogeneity", 2024), so high-rank information is not diluted.
 * Updates of rank > R are truncated. Nodes take the result at their own rank with {@link resizeLora}. Per tensor:
 * each LoRA factor is averaged over the updates that carry it (depth budgets); factors nobody sent are absent.
 * The α/r scale difference between ranks is not compensated (use `flexlora` with `loraAlpha` for that).
 */
export function hetlora(mode: 'zero' | 'replicate') {
  return (updates: readonly AggregateInput[], opts: AggregateOptions = {}): AggregateResult => {
    const s = split(updates, opts);
    const w = weightsOf(updates, opts);
    const deltas = othersAvg(updates, s, w, opts);
    const manifest = opts.manifest!;
    for (const spec of manifest.tensors) {
      if (spec.loraAxis === undefined) continue;
      const hw = holderWeights(updates, w, spec.name, opts.weighting);
      if (hw.idx.length === 0) continue;
      const other = spec.shape[spec.loraAxis === 0 ? 1 : 0];
      const R = s.target;
      const acc = new Float64Array(other * R);
      const wsum = new Float64Array(R);
      hw.idx.forEach((i, h) => {
        const d = resizeRankAxis(updates[i].deltas.get(spec.name)!, spec, s.ranks[i], R);
        for (let k = 0; k < d.length; k++) acc[k] += hw.w[h] * d[k];
        for (let j = 0; j < Math.min(s.ranks[i], R); j++) wsum[j] += hw.w[h];
      });
      const out = new Float32Array(other * R);
      for (let k = 0; k < out.length; k++) {
        const j = spec.loraAxis === 0 ? Math.floor(k / other) : k % R;
        out[k] = mode === 'zero' ? acc[k] : wsum[j] > 0 ? acc[k] / wsum[j] : 0;
      }
      deltas.set(spec.name, out);
    }
    return { deltas, sampleCount: totalSamples(updates), loraRank: s.target };
  };
}

function toMat(values: Float32Array | undefined, m: number, n: number): Mat {
  return values === undefined ? mat(m, n) : mat(m, n, values);
}

/**
 * FlexLoRA-style aggregation (Bai et al., "Federated Fine-tuning of LLMs under Heterogeneous Tasks and Client
 * Resources", NeurIPS 2024): average the full products ΔW_i = (α/r_i)·A_i·B_i, then re-factorize to rank R
 * with a truncated SVD (Eckart–Young: the best rank-R approximation; exact when rank(ΣΔW_i) ≤ R). The SVD uses
 * the low-rank structure: ΣΔW_i = U·W with inner dimension Σ r_i, so two thin QRs and a (Σr_i)² SVD suffice
 * (see `lowRankSvd`). Factors are split evenly: A = U·√S, B = √S·Vᵀ, divided by √(α/R).
 *
 * Full factors are A_i = base_A + ΔA_i (base resized to r_i); without `opts.base` the deltas are the factors.
 * The result is a delta against the base resized to R.
 */
export function flexlora(updates: readonly AggregateInput[], opts: AggregateOptions = {}): AggregateResult {
  const s = split(updates, opts);
  const w = weightsOf(updates, opts);
  const deltas = othersAvg(updates, s, w, opts);
  const manifest = opts.manifest!;
  const specOf = new Map(manifest.tensors.map((t) => [t.name, t]));
  const R = s.target;
  for (const p of s.pairs) {
    const specA = specOf.get(p.a)!;
    const specB = specOf.get(p.b)!;
    const baseA = opts.base?.get(p.a);
    const baseB = opts.base?.get(p.b);
    const baseRank = baseA === undefined ? 0 : baseA.length / p.inDim;
    if (baseA !== undefined && (baseB?.length !== baseRank * p.outDim || !Number.isInteger(baseRank))) {
      throw new AggregateError(AggregateRefusal.SHAPE_MISMATCH, `base ${p.a}/${p.b} have inconsistent ranks`);
    }
    const hw = holderWeights(updates, w, p.a, opts.weighting);
    const factors = hw.idx.map((i, h) => {
      const u = updates[i];
      const r = s.ranks[i];
      const a = toMat(u.deltas.get(p.a), p.inDim, r);
      const b = toMat(u.deltas.get(p.b), r, p.outDim);
      if (baseA !== undefined) {
        const ba = resizeRankAxis(baseA, specA, baseRank, r);
        const bb = resizeRankAxis(baseB!, specB, baseRank, r);
        for (let k = 0; k < a.data.length; k++) a.data[k] += ba[k];
        for (let k = 0; k < b.data.length; k++) b.data[k] += bb[k];
      }
      const c = hw.w[h] * scaleOf(opts, r);
      for (let k = 0; k < a.data.length; k++) a.data[k] *= c;
      return { a, b };
    });
    const { u, s: sv, v } = lowRankSvd(factors, R);
    const gs = scaleOf(opts, R);
    const newA = new Float32Array(p.inDim * R);
    const newB = new Float32Array(R * p.outDim);
    for (let j = 0; j < sv.length; j++) {
      const root = Math.sqrt(sv[j] / gs);
      for (let i = 0; i < p.inDim; i++) newA[i * R + j] = u.data[i * u.n + j] * root;
      for (let i = 0; i < p.outDim; i++) newB[j * p.outDim + i] = v.data[i * v.n + j] * root;
    }
    if (baseA !== undefined) {
      const ba = resizeRankAxis(baseA, specA, baseRank, R);
      const bb = resizeRankAxis(baseB!, specB, baseRank, R);
      for (let k = 0; k < newA.length; k++) newA[k] -= ba[k];
      for (let k = 0; k < newB.length; k++) newB[k] -= bb[k];
    }
    deltas.set(p.a, newA);
    deltas.set(p.b, newB);
  }
  return { deltas, sampleCount: totalSamples(updates), loraRank: R };
}

/**
 * Freeze-A (FFA-LoRA, Sun et al., "Improving LoRA in Privacy-preserving Federated Learning", ICLR 2024): A stays
 * at its shared initialization and only B trains, so ΔW_i = A·ΔB_i is linear in B and plain averaging of B is the
 * exact average of the products. Refuses updates that change any A factor.
 */
export function ffaLora(updates: readonly AggregateInput[], opts: AggregateOptions = {}): AggregateResult {
  const names = checkHomogeneous(updates);
  const pairs = loraPairs(need(opts.manifest, 'opts.manifest'), opts.loraSuffixes);
  updates.forEach((u, i) => {
    for (const p of pairs) {
      const a = u.deltas.get(p.a);
      if (a !== undefined && a.some((x) => x !== 0)) {
        throw new AggregateError(AggregateRefusal.FROZEN_A_CHANGED, `update ${i} changes ${p.a}; freeze-A needs A deltas of exactly zero`);
      }
    }
  });
  const w = weightsOf(updates, opts);
  return { deltas: weightedSum(updates, w, names), sampleCount: totalSamples(updates), loraRank: updates[0].loraRank };
}
