import { FmflError } from '../util/errors.ts';

/** Typed error of the privacy module (bad parameters; never peer input). */
export class PrivacyError extends FmflError {
  constructor(message: string) {
    super('PRIVACY', message);
  }
}

/**
 * Default Rényi orders: 1.1 … 10.9 in steps of 0.1, then 11 … 63, then 128 and 256 — TF-Privacy's
 * `compute_dp_sgd_privacy` orders plus two large ones for very small ε.
 */
export const DEFAULT_RDP_ORDERS: readonly number[] = Object.freeze([
  ...Array.from({ length: 99 }, (_, x) => 1 + (x + 1) / 10),
  ...Array.from({ length: 53 }, (_, x) => 11 + x),
  128, 256,
]);

function logAdd(a: number, b: number): number {
  const hi = Math.max(a, b);
  const lo = Math.min(a, b);
  if (hi === -Infinity) return -Infinity;
  return hi + Math.log1p(Math.exp(lo - hi));
}

function logSub(a: number, b: number): number {
  if (b === -Infinity) return a;
  if (a === b) return -Infinity;
  if (a < b) throw new PrivacyError('log-space subtraction would be negative');
  return a + Math.log1p(-Math.exp(b - a));
}

/**
 * log(erfc(x)), accurate to ~1e-7 relative for all x, without underflow for large x (Numerical Recipes
 * `erfcc` Chebyshev fit, kept in log space).
 */
export function logErfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807
    + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  const logPos = Math.log(t) + poly;
  return x >= 0 ? logPos : Math.log(2 - Math.exp(logPos));
}

/** log A_α for integer α (Mironov, Talwar & Zhang, "Rényi DP of the Sampled Gaussian Mechanism", 2019, Sec. 3.3). */
function logAInt(q: number, sigma: number, alpha: number): number {
  let logA = -Infinity;
  let logBinom = 0;
  for (let i = 0; i <= alpha; i++) {
    if (i > 0) logBinom += Math.log((alpha - i + 1) / i);
    const s = logBinom + i * Math.log(q) + (alpha - i) * Math.log1p(-q) + (i * i - i) / (2 * sigma * sigma);
    logA = logAdd(logA, s);
  }
  return logA;
}

/** log A_α for fractional α (Mironov et al. 2019, Sec. 3.3; the series of TF-Privacy `_compute_log_a_frac`). */
function logAFrac(q: number, sigma: number, alpha: number): number {
  let logA0 = -Infinity;
  let logA1 = -Infinity;
  const z0 = sigma * sigma * Math.log(1 / q - 1) + 0.5;
  let coef = 1;
  for (let i = 0; i < 100_000; i++) {
    if (i > 0) coef *= (alpha - i + 1) / i;
    const logCoef = Math.log(Math.abs(coef));
    const j = alpha - i;
    const logT0 = logCoef + i * Math.log(q) + j * Math.log1p(-q);
    const logT1 = logCoef + j * Math.log(q) + i * Math.log1p(-q);
    const logE0 = Math.log(0.5) + logErfc((i - z0) / (Math.SQRT2 * sigma));
    const logE1 = Math.log(0.5) + logErfc((z0 - j) / (Math.SQRT2 * sigma));
    const logS0 = logT0 + (i * i - i) / (2 * sigma * sigma) + logE0;
    const logS1 = logT1 + (j * j - j) / (2 * sigma * sigma) + logE1;
    if (coef > 0) {
      logA0 = logAdd(logA0, logS0);
      logA1 = logAdd(logA1, logS1);
    } else {
      logA0 = logSub(logA0, logS0);
      logA1 = logSub(logA1, logS1);
    }
    if (Math.max(logS0, logS1) < -30) break;
  }
  return logAdd(logA0, logA1);
}

/** RDP at order α of one step of the sampled Gaussian mechanism with sampling rate q and noise multiplier σ. */
export function rdpSampledGaussian(q: number, sigma: number, alpha: number): number {
  if (!(q >= 0 && q <= 1)) throw new PrivacyError(`sampling rate ${q} outside [0, 1]`);
  if (!(sigma >= 0) || !Number.isFinite(sigma)) throw new PrivacyError(`noise multiplier ${sigma} must be finite and >= 0`);
  if (!(alpha > 1)) throw new PrivacyError(`RDP order ${alpha} must exceed 1`);
  if (q === 0) return 0;
  if (sigma === 0 || alpha === Infinity) return Infinity;
  if (q === 1) return alpha / (2 * sigma * sigma);
  const logA = Number.isInteger(alpha) ? logAInt(q, sigma, alpha) : logAFrac(q, sigma, alpha);
  return logA / (alpha - 1);
}

/** RDP of `steps` compositions (TF-Privacy `compute_rdp`): one value per order. */
export function computeRdp(q: number, sigma: number, steps: number, orders: readonly number[] = DEFAULT_RDP_ORDERS): number[] {
  if (!Number.isInteger(steps) || steps < 0) throw new PrivacyError(`steps ${steps} must be a non-negative integer`);
  return orders.map((a) => steps * rdpSampledGaussian(q, sigma, a));
}

/** (ε, δ) conversion: `classic` = Mironov 2017 Prop. 3; `improved` = Balle et al. 2020 Thm. 21 (Opacus, TF-Privacy ≥ 0.8). */
export type RdpConversion = 'classic' | 'improved';

/** Smallest ε over the orders for the target δ, and the order attaining it. */
export function rdpToEpsilon(orders: readonly number[], rdp: readonly number[], delta: number, conversion: RdpConversion = 'improved'): { epsilon: number; order: number } {
  if (!(delta > 0 && delta < 1)) throw new PrivacyError(`delta ${delta} outside (0, 1)`);
  if (orders.length !== rdp.length || orders.length === 0) throw new PrivacyError('orders and rdp must be non-empty and of equal length');
  let best = { epsilon: Infinity, order: NaN };
  orders.forEach((a, i) => {
    const eps = conversion === 'classic'
      ? rdp[i] - Math.log(delta) / (a - 1)
      : rdp[i] + Math.log1p(-1 / a) - (Math.log(delta) + Math.log(a)) / (a - 1);
    if (eps < best.epsilon) best = { epsilon: Math.max(0, eps), order: a };
  });
  return best;
}

/**
 * Privacy accountant for client-level DP over federation rounds: each round is one sampled Gaussian mechanism
 * (q = fraction of members sampled, σ = noise multiplier); RDP composes additively (Mironov 2017).
 * Persist `toJSON()` with the node; rebuild with `RdpAccountant.fromJSON`.
 */
export class RdpAccountant {
  readonly orders: readonly number[];
  private readonly rdp: number[];
  private rounds = 0;

  constructor(orders: readonly number[] = DEFAULT_RDP_ORDERS) {
    if (orders.length === 0 || orders.some((a) => !(a > 1))) throw new PrivacyError('RDP orders must be > 1');
    this.orders = [...orders];
    this.rdp = orders.map(() => 0);
  }

  /** Account `steps` rounds at sampling rate q and noise multiplier σ. */
  step(q: number, sigma: number, steps = 1): this {
    const add = computeRdp(q, sigma, steps, this.orders);
    add.forEach((v, i) => { this.rdp[i] += v; });
    this.rounds += steps;
    return this;
  }

  /** Rounds accounted so far. */
  get steps(): number {
    return this.rounds;
  }

  /** ε at the given δ so far. */
  epsilon(delta: number, conversion: RdpConversion = 'improved'): number {
    return rdpToEpsilon(this.orders, this.rdp, delta, conversion).epsilon;
  }

  toJSON(): { orders: number[]; rdp: number[]; steps: number } {
    return { orders: [...this.orders], rdp: [...this.rdp], steps: this.rounds };
  }

  static fromJSON(j: { orders: number[]; rdp: number[]; steps: number }): RdpAccountant {
    if (j.orders.length !== j.rdp.length || j.rdp.some((v) => !(v >= 0))) throw new PrivacyError('corrupt accountant state');
    const a = new RdpAccountant(j.orders);
    j.rdp.forEach((v, i) => { a.rdp[i] = v; });
    a.rounds = j.steps;
    return a;
  }
}

/**
 * Smallest noise multiplier σ (to 1e-3 relative) whose ε after `steps` rounds at sampling rate q stays ≤
 * `targetEpsilon` at δ. Bisection on σ ∈ [0.01, 1000]; ε decreases monotonically in σ. Throws when even σ = 1000
 * cannot meet the target.
 */
export function calibrateNoiseMultiplier(
  targetEpsilon: number, delta: number, q: number, steps: number,
  orders: readonly number[] = DEFAULT_RDP_ORDERS, conversion: RdpConversion = 'improved',
): number {
  if (!(targetEpsilon > 0) || !Number.isFinite(targetEpsilon)) throw new PrivacyError(`target epsilon ${targetEpsilon} must be positive`);
  const eps = (sigma: number): number => rdpToEpsilon(orders, computeRdp(q, sigma, steps, orders), delta, conversion).epsilon;
  let lo = 0.01;
  let hi = 1000;
  if (eps(hi) > targetEpsilon) throw new PrivacyError(`epsilon ${targetEpsilon} is out of reach even with noise multiplier ${hi}`);
  if (eps(lo) <= targetEpsilon) return lo;
  while (hi - lo > 1e-3 * lo) {
    const mid = Math.sqrt(lo * hi);
    if (eps(mid) <= targetEpsilon) hi = mid;
    else lo = mid;
  }
  return hi;
}
