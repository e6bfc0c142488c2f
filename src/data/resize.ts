/**
 * Bring in-memory images to another input size and channel count through the decoder's sharp pipeline
 * (src/data/decode.ts: Lanczos-3 cover resize, libvips colour conversion), so bundled images are resized exactly as
 * image files are. Images already of the target shape are
 * copied unchanged, so a 28x28x1 source at a 28x28x1 spec stays bit-identical.
 */
import { finishRaw } from './decode.ts';
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

/** Resize one planar image through the decoder's raw path (the same sharp pipeline as image files). */
export async function resizePlanar(img: Uint8Array, from: ImageShape, to: ImageShape): Promise<Uint8Array> {
  const fromPx = from.size * from.size;
  if (img.length !== from.channels * fromPx) throw new DatasetError(`image holds ${img.length} bytes, ${from.channels}x${from.size}x${from.size} needs ${from.channels * fromPx}`);
  if (from.size === to.size && from.channels === to.channels) return img.slice();
  return finishRaw(planarToInterleaved(img, from.channels, fromPx), from.size, from.size, from.channels, { size: to.size, channels: to.channels as 1 | 3 }, 'bundled image');
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
