import { DatasetError, type Dataset } from './types.ts';

/**
 * The bundled backbones' normalisation, applied after scaling pixels to [0, 1]: x' = (x / 255 - 0.5) / 0.5, in
 * [-1, 1]. Other backbones carry their own per-channel mean and std in their manifest's input spec.
 */
export const PIXEL_MEAN = 0.5;
/** See {@link PIXEL_MEAN}. */
export const PIXEL_STD = 0.5;

/** Per-channel normalisation: mean and std in [0, 1] units, one per channel. */
export interface Normalization {
  readonly mean: readonly number[];
  readonly std: readonly number[];
}

const DEFAULT_NORM: Normalization = { mean: [PIXEL_MEAN], std: [PIXEL_STD] };
const lutCache = new Map<string, Float32Array[]>();

/** One 256-entry lookup table per channel, (v / 255 - mean[c]) / std[c] (cached by value). */
export function normalizationTables(norm: Normalization, channels: number): Float32Array[] {
  const key = `${channels}|${norm.mean.join(',')}|${norm.std.join(',')}`;
  let luts = lutCache.get(key);
  if (luts) return luts;
  if (norm.mean.length !== norm.std.length || (norm.mean.length !== 1 && norm.mean.length !== channels)) {
    throw new DatasetError(`normalisation has ${norm.mean.length} means and ${norm.std.length} stds for ${channels} channels`);
  }
  luts = [];
  for (let c = 0; c < channels; c++) {
    const m = norm.mean[norm.mean.length === 1 ? 0 : c];
    const s = norm.std[norm.std.length === 1 ? 0 : c];
    if (!(Number.isFinite(m) && s > 0 && Number.isFinite(s))) throw new DatasetError(`normalisation of channel ${c}: mean ${m}, std ${s} (std must be > 0)`);
    const lut = new Float32Array(256);
    for (let v = 0; v < 256; v++) lut[v] = (v / 255 - m) / s;
    luts.push(lut);
  }
  if (lutCache.size > 64) lutCache.clear();
  lutCache.set(key, luts);
  return luts;
}

function checkOut<T extends { length: number; subarray(a: number, b: number): T }>(out: T, need: number, what: string): T {
  if (out.length < need) throw new DatasetError(`${what} buffer holds ${out.length} elements, the batch needs ${need}`);
  return out.length === need ? out : out.subarray(0, need);
}

function checkIndex(ds: Dataset, j: number): void {
  if (!(j >= 0 && j < ds.n) || (j >>> 0) !== j) throw new DatasetError(`sample index ${String(j)} out of range 0..${ds.n - 1}`);
}

/**
 * Gather images `indices` of `ds` into a float32 batch laid out as [B, C, H, W] (the dataset's planar layout),
 * normalised per channel as (pixel / 255 - mean[c]) / std[c] through 256-entry lookup tables (default: mean 0.5,
 * std 0.5, so 0 → -1 and 255 → 1). Writes into `out` when given (it must hold at least B*C*H*W floats; a longer
 * buffer yields a view of its first B*C*H*W), otherwise allocates. Runs every train step: no allocation when `out`
 * is passed with the exact size.
 * @throws DatasetError on an out-of-range index or a too small `out`.
 */
export function toFloatBatch(ds: Dataset, indices: ArrayLike<number>, out?: Float32Array, norm: Normalization = DEFAULT_NORM): Float32Array {
  const b = indices.length;
  const plane = ds.height * ds.width;
  const P = ds.channels * plane;
  const need = b * P;
  const dst = out ? checkOut(out, need, 'output') : new Float32Array(need);
  const src = ds.images;
  const luts = normalizationTables(norm, ds.channels);
  for (let i = 0; i < b; i++) {
    const j = indices[i];
    checkIndex(ds, j);
    let s = j * P;
    let d = i * P;
    for (let c = 0; c < ds.channels; c++) {
      const lut = luts[c];
      const end = d + plane;
      while (d < end) dst[d++] = lut[src[s++]];
    }
  }
  return dst;
}

/** Gather labels `indices` of `ds` as int32 (into `out` when given). @throws DatasetError on a bad index. */
export function toLabelBatch(ds: Dataset, indices: ArrayLike<number>, out?: Int32Array): Int32Array {
  const b = indices.length;
  const dst = out ? checkOut(out, b, 'label') : new Int32Array(b);
  for (let i = 0; i < b; i++) {
    const j = indices[i];
    checkIndex(ds, j);
    dst[i] = ds.labels[j];
  }
  return dst;
}

/** Gather labels `indices` of `ds` as int64 (ONNX's label type; into `out` when given). */
export function toLabelBatchInt64(ds: Dataset, indices: ArrayLike<number>, out?: BigInt64Array): BigInt64Array {
  const b = indices.length;
  const dst = out ? checkOut(out, b, 'label') : new BigInt64Array(b);
  for (let i = 0; i < b; i++) {
    const j = indices[i];
    checkIndex(ds, j);
    dst[i] = BigInt(ds.labels[j]);
  }
  return dst;
}

/** Gather labels `indices` of `ds` as a one-hot float32 [B, numClasses] matrix (into `out` when given). */
export function toOneHotBatch(ds: Dataset, indices: ArrayLike<number>, out?: Float32Array): Float32Array {
  const b = indices.length;
  const k = ds.numClasses;
  const dst = out ? checkOut(out, b * k, 'one-hot') : new Float32Array(b * k);
  dst.fill(0);
  for (let i = 0; i < b; i++) {
    const j = indices[i];
    checkIndex(ds, j);
    dst[i * k + ds.labels[j]] = 1;
  }
  return dst;
}
