/**
 * Pure prediction arithmetic: softmax, prototype classification, exit averaging, combining peers' answers,
 * validating probability vectors. No I/O.
 */

/** Default temperature of prototype classification: p(c) = softmax(-||z - p_c||^2 / T). */
export const PROTOTYPE_TEMPERATURE = 1;
/** Tolerance on sum(p) = 1 when validating a probability vector received from a peer. */
export const PROB_SUM_TOLERANCE = 1e-3;

/** Softmax of `logits[off .. off + C)` into a new Float64Array (max-subtracted, so it never overflows). */
export function softmax(logits: ArrayLike<number>, off = 0, C = logits.length - off): Float64Array {
  let max = -Infinity;
  for (let c = 0; c < C; c++) max = Math.max(max, logits[off + c]);
  const p = new Float64Array(C);
  let z = 0;
  for (let c = 0; c < C; c++) z += p[c] = Math.exp(logits[off + c] - max);
  for (let c = 0; c < C; c++) p[c] /= z;
  return p;
}

/** Index of the largest value (first on ties). */
export function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}

/**
 * Nearest-prototype probabilities of one embedding: softmax over classes of -||z - p_c||^2 / T, only over
 * classes with a prototype (count > 0); classes without one get probability 0.
 * @param z embedding values `emb[zOff .. zOff + D)`
 * @param means prototypes of this exit, [C * D]
 * @param counts [C]
 */
export function prototypeProbs(emb: ArrayLike<number>, zOff: number, D: number, means: ArrayLike<number>, mOff: number, counts: ArrayLike<number>, cOff: number, C: number, temperature = PROTOTYPE_TEMPERATURE): Float64Array {
  const neg = new Float64Array(C).fill(-Infinity);
  let any = false;
  for (let c = 0; c < C; c++) {
    if (!(counts[cOff + c] > 0)) continue;
    any = true;
    let d2 = 0;
    for (let k = 0; k < D; k++) {
      const t = emb[zOff + k] - means[mOff + c * D + k];
      d2 += t * t;
    }
    neg[c] = -d2 / temperature;
  }
  if (!any) return new Float64Array(C).fill(1 / C);
  return softmax(neg);
}

/** Element-wise mean of probability vectors (all of the same length). */
export function meanProbs(list: readonly ArrayLike<number>[]): Float64Array {
  if (list.length === 0) throw new RangeError('meanProbs needs at least one vector');
  const C = list[0].length;
  const out = new Float64Array(C);
  for (const p of list) for (let c = 0; c < C; c++) out[c] += p[c] / list.length;
  return out;
}

/** How answers are combined: plain mean, or weighted by each answer's confidence (its top probability). */
export type CombineRule = 'mean' | 'confidence';
/** The rules, for validation of user input. */
export const COMBINE_RULES: readonly CombineRule[] = ['mean', 'confidence'];

/**
 * Combine probability vectors: `mean` averages them; `confidence` weights each by its maximum probability
 * (a more confident predictor counts more), then renormalizes.
 */
export function combineProbs(list: readonly ArrayLike<number>[], rule: CombineRule): Float64Array {
  if (list.length === 0) throw new RangeError('combineProbs needs at least one vector');
  if (rule === 'mean') return meanProbs(list);
  const C = list[0].length;
  const out = new Float64Array(C);
  let wsum = 0;
  for (const p of list) {
    let w = 0;
    for (let c = 0; c < C; c++) w = Math.max(w, p[c]);
    wsum += w;
    for (let c = 0; c < C; c++) out[c] += w * p[c];
  }
  for (let c = 0; c < C; c++) out[c] /= wsum;
  return out;
}

/** Whether `p` is a probability vector of length C: finite, in [0, 1], summing to 1 within {@link PROB_SUM_TOLERANCE}. */
export function isProbVector(p: ArrayLike<number>, C: number): boolean {
  if (p.length !== C) return false;
  let s = 0;
  for (let c = 0; c < C; c++) {
    const v = p[c];
    if (!Number.isFinite(v) || v < 0 || v > 1 + PROB_SUM_TOLERANCE) return false;
    s += v;
  }
  return Math.abs(s - 1) <= PROB_SUM_TOLERANCE;
}
