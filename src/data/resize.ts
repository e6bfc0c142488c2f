/**
 * Bring in-memory images to another input size and channel count with sharp (libvips): greyscale to RGB
 * replicates the plane, RGB to greyscale uses libvips' luminance (sRGB → b-w), sizes change by a Lanczos-3 resize
 * of the whole square image (no crop; every source here is square). Images already of the target shape are
 * copied unchanged, so a 28x28x1 source at a 28x28x1 spec stays bit-identical.
 */
import sharp from 'sharp';
import { availableParallelism } from 'node:os';
import { DatasetError } from './types.ts';

/** A square image shape. */
export interface ImageShape {
  size: number;
  channels: number;
}

/** Planar CHW to interleaved HWC (what sharp's raw input and output use). */
export function planarToInterleaved(src: Uint8Array, channels: number, pixels: number, out = new Uint8Array(src.length)): Uint8Array {
  if (channels === 1) {
    out.set(src);
    return out;
  }
  for (let p = 0; p < pixels; p++) for (let c = 0; c < channels; c++) out[p * channels + c] = src[c * pixels + p];
  return out;
}

/** Interleaved HWC to planar CHW. */
export function interleavedToPlanar(src: Uint8Array, channels: number, pixels: number, out = new Uint8Array(src.length)): Uint8Array {
  if (channels === 1) {
    out.set(src);
    return out;
  }
  for (let p = 0; p < pixels; p++) for (let c = 0; c < channels; c++) out[c * pixels + p] = src[p * channels + c];
  return out;
}

/** Resize one planar image with sharp; returns planar CHW uint8 of the target shape. */
export async function resizePlanar(img: Uint8Array, from: ImageShape, to: ImageShape): Promise<Uint8Array> {
  const fromPx = from.size * from.size;
  if (img.length !== from.channels * fromPx) throw new DatasetError(`image holds ${img.length} bytes, ${from.channels}x${from.size}x${from.size} needs ${from.channels * fromPx}`);
  if (from.size === to.size && from.channels === to.channels) return img.slice();
  let p = sharp(planarToInterleaved(img, from.channels, fromPx), { raw: { width: from.size, height: from.size, channels: from.channels as 1 | 3 } });
  if (from.size !== to.size) p = p.resize(to.size, to.size, { fit: 'fill', kernel: 'lanczos3' });
  if (to.channels === 1 && from.channels !== 1) p = p.toColourspace('b-w');
  else if (to.channels === 3 && from.channels === 1) p = p.toColourspace('srgb');
  const { data, info } = await p.raw().toBuffer({ resolveWithObject: true });
  if (info.width !== to.size || info.height !== to.size) throw new DatasetError(`resize produced ${info.width}x${info.height}, expected ${to.size}x${to.size}`);
  const toPx = to.size * to.size;
  let hwc: Uint8Array = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (info.channels !== to.channels) {
    // libvips keeps one band for b-w and may add alpha; take the first `to.channels` bands.
    const picked = new Uint8Array(toPx * to.channels);
    for (let q = 0; q < toPx; q++) for (let c = 0; c < to.channels; c++) picked[q * to.channels + c] = hwc[q * info.channels + Math.min(c, info.channels - 1)];
    hwc = picked;
  }
  return interleavedToPlanar(hwc, to.channels, toPx);
}

/**
 * Resize `n` planar images back to back (`from` shape each) to the `to` shape, `concurrency` at a time (default:
 * the machine's cores), writing into one preallocated output.
 */
export async function resizeImages(images: Uint8Array, n: number, from: ImageShape, to: ImageShape, concurrency = availableParallelism()): Promise<Uint8Array> {
  const inLen = from.channels * from.size * from.size;
  const outLen = to.channels * to.size * to.size;
  if (images.length !== n * inLen) throw new DatasetError(`${images.length} bytes is not ${n} images of ${inLen}`);
  if (from.size === to.size && from.channels === to.channels) return images;
  const out = new Uint8Array(n * outLen);
  if (from.size === to.size && from.channels === 1 && to.channels === 3) {
    // Greyscale to RGB at the same size is an exact plane copy (what sharp's sRGB conversion of a b-w image gives).
    for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) out.set(images.subarray(i * inLen, (i + 1) * inLen), i * outLen + c * inLen);
    return out;
  }
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < n; i = next++) out.set(await resizePlanar(images.subarray(i * inLen, (i + 1) * inLen), from, to), i * outLen);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency * 2, n)) }, worker));
  return out;
}
