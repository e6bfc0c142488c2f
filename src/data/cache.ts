import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { DatasetError, IMAGE_SIZE, NUM_CLASSES, type DatasetName, type Split } from './types.ts';

/** Magic bytes at the start of a dataset cache file. */
export const DATASET_CACHE_MAGIC = 'FMFLDSET';
/** Version of the dataset cache layout; bump it when the layout or the split rules change. */
export const DATASET_CACHE_VERSION = 1;

const HEADER_BYTES = 32;
const DIGEST_BYTES = 32;
const SPLIT_CODE: Record<Split, number> = { train: 0, test: 1 };
const NAME_CODE: Record<DatasetName, number> = { 'fashion-mnist': 0, mnist: 1 };

/**
 * The default cache folder: `<project>/.cache/fmfl`, found from this module's location (not the working
 * directory), unless the environment variable `FMFL_CACHE_DIR` names another.
 */
export function defaultCacheDir(): string {
  const env = process.env.FMFL_CACHE_DIR;
  if (env !== undefined && env !== '') return env;
  return fileURLToPath(new URL('../../.cache/fmfl', import.meta.url));
}

/** The stored image shape of a cache file (the bundled datasets' own: 28x28x1). */
export interface CacheShape {
  size: number;
  channels: number;
}

const NATIVE: CacheShape = { size: IMAGE_SIZE, channels: 1 };
const isNative = (s: CacheShape): boolean => s.size === NATIVE.size && s.channels === NATIVE.channels;

/**
 * File name of one split's cache; it carries the package version, the layout version and, for a bundled dataset
 * resized to another input spec, the stored shape.
 */
export function cacheFileName(name: DatasetName, split: Split, packageVersion: string, shape: CacheShape = NATIVE): string {
  const sh = isNative(shape) ? '' : `-${shape.size}x${shape.size}x${shape.channels}`;
  return `${name}-${packageVersion.replace(/[^0-9A-Za-z._-]/g, '_')}-${split}${sh}.v${DATASET_CACHE_VERSION}.bin`;
}

/** Full path of one split's cache file. */
export function cachePath(dir: string, name: DatasetName, split: Split, packageVersion: string, shape: CacheShape = NATIVE): string {
  return join(dir, cacheFileName(name, split, packageVersion, shape));
}

/**
 * Encode a split as a cache file:
 * `magic(8) | version u32 | n u32 | height u16 | width u16 | classes u16 | split u8 | dataset u8 | channels u8 (0 in files written before 2026-12: 1) | 7 zero bytes`
 * `| n*C*H*W pixels u8 | n labels u8 | SHA-256 of everything before it (32)`. Little-endian.
 */
export function encodeDatasetCache(name: DatasetName, split: Split, images: Uint8Array, labels: Uint8Array, shape: CacheShape = NATIVE): Uint8Array {
  const n = labels.length;
  const P = shape.channels * shape.size * shape.size;
  if (images.length !== n * P) throw new DatasetError(`images hold ${images.length} bytes, expected ${n * P}`);
  const out = new Uint8Array(HEADER_BYTES + n * (P + 1) + DIGEST_BYTES);
  const dv = new DataView(out.buffer);
  out.set(Buffer.from(DATASET_CACHE_MAGIC, 'latin1'), 0);
  dv.setUint32(8, DATASET_CACHE_VERSION, true);
  dv.setUint32(12, n, true);
  dv.setUint16(16, shape.size, true);
  dv.setUint16(18, shape.size, true);
  dv.setUint16(20, NUM_CLASSES, true);
  dv.setUint8(22, SPLIT_CODE[split]);
  dv.setUint8(23, NAME_CODE[name]);
  dv.setUint8(24, shape.channels);
  out.set(images, HEADER_BYTES);
  out.set(labels, HEADER_BYTES + n * P);
  const body = out.subarray(0, out.length - DIGEST_BYTES);
  out.set(createHash('sha256').update(body).digest(), out.length - DIGEST_BYTES);
  return out;
}

/**
 * Decode and verify a cache file (magic, version, dataset, split, size, SHA-256, label range).
 * Returns zero-copy views into `bytes`. Throws {@link DatasetError} saying what is wrong.
 */
export function decodeDatasetCache(bytes: Uint8Array, name: DatasetName, split: Split, shape: CacheShape = NATIVE): { images: Uint8Array; labels: Uint8Array; n: number } {
  if (bytes.length < HEADER_BYTES + DIGEST_BYTES) throw new DatasetError(`cache file too short (${bytes.length} bytes)`);
  const magic = Buffer.from(bytes.buffer, bytes.byteOffset, 8).toString('latin1');
  if (magic !== DATASET_CACHE_MAGIC) throw new DatasetError('cache file has the wrong magic bytes');
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = dv.getUint32(8, true);
  if (version !== DATASET_CACHE_VERSION) throw new DatasetError(`cache file version ${version}, expected ${DATASET_CACHE_VERSION}`);
  const n = dv.getUint32(12, true);
  const P = shape.channels * shape.size * shape.size;
  if (dv.getUint16(16, true) !== shape.size || dv.getUint16(18, true) !== shape.size || dv.getUint16(20, true) !== NUM_CLASSES || (dv.getUint8(24) || 1) !== shape.channels) {
    throw new DatasetError('cache file has the wrong image size or class count');
  }
  if (dv.getUint8(22) !== SPLIT_CODE[split] || dv.getUint8(23) !== NAME_CODE[name]) {
    throw new DatasetError(`cache file does not hold ${name}/${split}`);
  }
  const expected = HEADER_BYTES + n * (P + 1) + DIGEST_BYTES;
  if (bytes.length !== expected) throw new DatasetError(`cache file is ${bytes.length} bytes, expected ${expected} (truncated?)`);
  const body = bytes.subarray(0, expected - DIGEST_BYTES);
  const digest = createHash('sha256').update(body).digest();
  if (!digest.equals(bytes.subarray(expected - DIGEST_BYTES))) throw new DatasetError('cache file checksum mismatch (corrupt)');
  // Plain Uint8Array views (not Buffer) over the same memory.
  const images = new Uint8Array(bytes.buffer, bytes.byteOffset + HEADER_BYTES, n * P);
  const labels = new Uint8Array(bytes.buffer, bytes.byteOffset + HEADER_BYTES + n * P, n);
  for (let i = 0; i < n; i++) if (labels[i] >= NUM_CLASSES) throw new DatasetError(`cache file label ${i} = ${labels[i]} out of range`);
  return { images, labels, n };
}
