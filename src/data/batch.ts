import { DatasetError, IMAGE_PIXELS, type Dataset } from './types.ts';

/** Normalization mean and std applied after scaling pixels to [0, 1]: x' = (x / 255 - 0.5) / 0.5, in [-1, 1]. */
export const PIXEL_MEAN = 0.5;
/** See {@link PIXEL_MEAN}. */
export const PIXEL_STD = 0.5;

const LUT = new Float32Array(256);
for (let v = 0; v < 256; v++) LUT[v] = (v / 255 - PIXEL_MEAN) / PIXEL_STD;

function checkOut<T extends { length: number; subarray(a: number, b: number): T }>(out: T, need: number, what: string): T {
  if (out.length < need) throw new DatasetError(`${what} buffer holds ${out.length} elements, the batch needs ${need}`);
  return out.length === need ? out : out.subarray(0, need);
}

function checkIndex(ds: Dataset, j: number): void {
  if (!(j >= 0 && j < ds.n) || (j >>> 0) !== j) throw new DatasetError(`sample index ${String(j)} out of range 0..${ds.n - 1}`);
}

/**
 * Gather images `indices` of `ds` into a float32 batch laid out as [B, 1, 28, 28] (row-major image),
 * normalized as (pixel / 255 - 0.5) / 0.5 (so 0 → -1, 255 → 1) through a 256-entry lookup table.
 * Writes into `out` when given (it must hold at least B*784 floats; a longer buffer yields a view of its
 * first B*784), otherwise allocates. Runs every train step: no allocation when `out` is passed with the
 * exact size.
 * @throws DatasetError on an out-of-range index or a too small `out`.
 */
export function toFloatBatch(ds: Dataset, indices: ArrayLike<number>, out?: Float32Array): Float32Array {
  const b = indices.length;
  const need = b * IMAGE_PIXELS;
  const dst = out ? checkOut(out, need, 'output') : new Float32Array(need);
  const src = ds.images;
  for (let i = 0; i < b; i++) {
    const j = indices[i];
    checkIndex(ds, j);
    let s = j * IMAGE_PIXELS;
    let d = i * IMAGE_PIXELS;
    const end = d + IMAGE_PIXELS;
    while (d < end) dst[d++] = LUT[src[s++]];
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
