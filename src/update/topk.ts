import { UpdateRefusal, check } from './errors.ts';

/** Top-k magnitude sparsification: keep the `fraction` largest |x|, per tensor or over all tensors at once. */
export interface TopKOptions {
  /** Fraction of elements kept, in (0, 1]. 1 means dense. */
  fraction: number;
  /**
   * `tensor`: each tensor keeps ceil(fraction·n) elements. `global`: one magnitude threshold over all tensors
   * keeps ceil(fraction·N) elements in total (Aji & Heafield 2017; Lin et al., Deep Gradient Compression 2018).
   */
  scope: 'tensor' | 'global';
}

/** k-th largest value (1-based) of `a`, partially reordering it (Hoare quickselect, median-of-three pivot). */
function kthLargestInPlace(a: Float32Array, k: number): number {
  let lo = 0;
  let hi = a.length - 1;
  const target = k - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    let p0 = a[lo], p1 = a[mid], p2 = a[hi];
    if (p0 < p1) [p0, p1] = [p1, p0];
    if (p1 < p2) [p1, p2] = [p2, p1];
    if (p0 < p1) [p0, p1] = [p1, p0];
    const pivot = p1;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i] > pivot) i++;
      while (a[j] < pivot) j--;
      if (i <= j) {
        const t = a[i]; a[i] = a[j]; a[j] = t;
        i++; j--;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else return a[target];
  }
  return a[target];
}

/** Magnitude threshold such that exactly `k` of the non-zero |x| over `arrays` are ≥ it (ties resolved by order). */
function threshold(arrays: readonly Float32Array[], k: number): number {
  let total = 0;
  for (const a of arrays) for (let i = 0; i < a.length; i++) if (a[i] !== 0) total++;
  if (k >= total) return 0;
  const mags = new Float32Array(total);
  let p = 0;
  for (const a of arrays) for (let i = 0; i < a.length; i++) if (a[i] !== 0) mags[p++] = Math.abs(a[i]);
  return kthLargestInPlace(mags, k);
}

/** Indices (ascending) of the elements above `t`, then ties at `t` in order, up to `budget` and never zeros. */
function pick(a: Float32Array, t: number, budget: { left: number; ties: number }): Uint32Array {
  const out: number[] = [];
  for (let i = 0; i < a.length && budget.left > 0; i++) {
    const m = Math.abs(a[i]);
    if (m === 0 || m < t) continue;
    if (m === t) {
      if (budget.ties <= 0) continue;
      budget.ties--;
    }
    out.push(i);
    budget.left--;
  }
  return Uint32Array.from(out);
}

function tiesNeeded(arrays: readonly Float32Array[], t: number, k: number): number {
  if (t === 0) return k;
  let above = 0;
  for (const a of arrays) for (let i = 0; i < a.length; i++) if (Math.abs(a[i]) > t) above++;
  return k - above;
}

/**
 * Positions (ascending) to transmit per tensor. Exact zeros are never selected, so a tensor may send fewer than
 * its share. Returns `null` for a tensor that is sent dense (fraction 1).
 */
export function selectTopK(tensors: readonly Float32Array[], opts: TopKOptions): (Uint32Array | null)[] {
  const { fraction, scope } = opts;
  check(Number.isFinite(fraction) && fraction > 0 && fraction <= 1, UpdateRefusal.INVALID_ARGUMENT,
    `top-k fraction ${fraction} outside (0, 1]`);
  check(scope === 'tensor' || scope === 'global', UpdateRefusal.INVALID_ARGUMENT, `top-k scope must be "tensor" or "global"`);
  if (fraction === 1) return tensors.map(() => null);
  if (scope === 'tensor') {
    return tensors.map((a) => {
      const k = Math.ceil(fraction * a.length);
      const t = threshold([a], k);
      return pick(a, t, { left: k, ties: tiesNeeded([a], t, k) });
    });
  }
  const n = tensors.reduce((s, a) => s + a.length, 0);
  const k = Math.ceil(fraction * n);
  const t = threshold(tensors, k);
  const budget = { left: k, ties: tiesNeeded(tensors, t, k) };
  return tensors.map((a) => pick(a, t, budget));
}
