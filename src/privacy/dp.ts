import type { TensorMap } from '../update/index.ts';
import type { Rng } from '../util/rng.ts';
import { PrivacyError } from './rdp.ts';

/** L2 norm over all tensors. */
export function l2Norm(deltas: TensorMap): number {
  let s = 0;
  for (const d of deltas.values()) for (let i = 0; i < d.length; i++) s += d[i] * d[i];
  return Math.sqrt(s);
}

/** Scale the whole update so its L2 norm is at most `clipNorm` (one factor for all tensors: client-level clipping). */
export function clipToNorm(deltas: TensorMap, clipNorm: number): { deltas: TensorMap; norm: number; factor: number } {
  if (!(clipNorm > 0) || !Number.isFinite(clipNorm)) throw new PrivacyError(`clip norm ${clipNorm} must be positive and finite`);
  const norm = l2Norm(deltas);
  if (!Number.isFinite(norm)) throw new PrivacyError('update has non-finite values');
  const factor = norm > clipNorm ? clipNorm / norm : 1;
  const out: TensorMap = new Map();
  for (const [k, d] of deltas) out.set(k, factor === 1 ? Float32Array.from(d) : Float32Array.from(d, (v) => v * factor));
  return { deltas: out, norm, factor };
}

/** Add i.i.d. N(0, std²) to every element (seeded). */
export function addGaussianNoise(deltas: TensorMap, std: number, rng: Rng): TensorMap {
  if (!(std >= 0) || !Number.isFinite(std)) throw new PrivacyError(`noise std ${std} must be finite and >= 0`);
  const out: TensorMap = new Map();
  for (const [k, d] of deltas) out.set(k, Float32Array.from(d, (v) => v + std * rng.normal()));
  return out;
}

/** Client-level DP parameters (DP-FedAvg, McMahan et al., "Learning Differentially Private Recurrent Language Models", ICLR 2018). */
export interface ClientDpOptions {
  /** L2 bound C on each update. */
  clipNorm: number;
  /** Noise multiplier z: the SUM of the round's clipped updates carries N(0, (z·C)²). */
  noiseMultiplier: number;
  /**
   * How many members share the noise (distributed DP): each adds N(0, (z·C)²/shares), so the sum carries the
   * full amount. Use the round's expected participant count together with secure aggregation (the aggregator
   * then sees only the sum). Default 1: every update alone carries the full noise (no trust in anyone).
   */
  noiseShares?: number;
}

/**
 * Clip the update to C and add this member's share of Gaussian noise. Aggregate the results with uniform weights
 * (the mean's sensitivity is C / n only when weights do not depend on data) and account each round with
 * {@link RdpAccountant}.step(q, z).
 */
export function privatizeUpdate(deltas: TensorMap, opts: ClientDpOptions, rng: Rng): { deltas: TensorMap; norm: number; clipped: boolean; noiseStd: number } {
  const shares = opts.noiseShares ?? 1;
  if (!(opts.noiseMultiplier >= 0) || !Number.isFinite(opts.noiseMultiplier)) throw new PrivacyError(`noise multiplier ${opts.noiseMultiplier} must be finite and >= 0`);
  if (!Number.isInteger(shares) || shares < 1) throw new PrivacyError(`noiseShares ${shares} must be a positive integer`);
  const { deltas: clipped, norm, factor } = clipToNorm(deltas, opts.clipNorm);
  const noiseStd = (opts.noiseMultiplier * opts.clipNorm) / Math.sqrt(shares);
  return { deltas: addGaussianNoise(clipped, noiseStd, rng), norm, clipped: factor < 1, noiseStd };
}
