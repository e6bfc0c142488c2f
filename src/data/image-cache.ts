/**
 * The binary cache of a decoded image folder (house format of cache.ts: magic, version, little-endian
 * header, payload, SHA-256 of everything before it). The decoded pixels are written straight into the
 * payload region of one preallocated buffer, so building the cache file costs no copy of the images.
 */
import { createHash } from 'node:crypto';
import { DatasetError } from './types.ts';
import type { DecodeSpec } from './decode.ts';

/** Magic bytes at the start of an image-folder cache file. */
export const IMAGE_CACHE_MAGIC = 'FMFLIMGS';
/** Version of the image-folder cache layout; bump it when the layout changes. */
export const IMAGE_CACHE_VERSION = 1;
/** Header bytes before the pixels. */
export const IMAGE_CACHE_HEADER_BYTES = 64;
const DIGEST_BYTES = 32;
/** Most bytes of the JSON metadata block (classes, skipped files, statistics). */
export const MAX_IMAGE_CACHE_META_BYTES = 1024 * 1024;

/** The JSON block stored after the labels. */
export interface ImageCacheMeta {
  classes: string[];
  skipped: { count: number; examples: { file: string; reason: string }[] };
  stats: { mean: number[]; std: number[] };
  classCounts: { train: number[]; test: number[] };
}

/** A decoded cache file: zero-copy views. */
export interface ImageCacheContent {
  train: { images: Uint8Array; labels: Uint8Array; n: number };
  test: { images: Uint8Array; labels: Uint8Array; n: number };
  meta: ImageCacheMeta;
}

/**
 * Layout: `magic(8) | version u32 | nTrain u32 | nTest u32 | size u16 | channels u8 | 0 u8 | classes u16 |
 * 0 u16 | metaBytes u32 | key (32 bytes: SHA-256 of the listing) |` then nTrain + nTest images (C*S*S bytes
 * each, CHW), nTrain + nTest labels (u8), the metadata JSON (UTF-8), and the SHA-256 of everything before it.
 * Little-endian.
 */
export function imageCacheBytes(nTrain: number, nTest: number, spec: DecodeSpec, metaBytes: number): number {
  const px = spec.channels * spec.size * spec.size;
  return IMAGE_CACHE_HEADER_BYTES + (nTrain + nTest) * (px + 1) + metaBytes + DIGEST_BYTES;
}

/**
 * Finish a cache file in `buf`, whose images (train then test, from offset {@link IMAGE_CACHE_HEADER_BYTES}) are
 * already in place: writes the header, labels, metadata and digest. Returns the file (a view of `buf`, or a
 * new buffer when the metadata does not fit the space left).
 */
export function sealImageCache(
  buf: Uint8Array,
  key: Uint8Array,
  spec: DecodeSpec,
  trainLabels: Uint8Array,
  testLabels: Uint8Array,
  meta: ImageCacheMeta,
): Uint8Array {
  const nTrain = trainLabels.length;
  const nTest = testLabels.length;
  const json = Buffer.from(JSON.stringify(meta), 'utf8');
  if (json.length > MAX_IMAGE_CACHE_META_BYTES) throw new DatasetError(`cache metadata is ${json.length} bytes, more than ${MAX_IMAGE_CACHE_META_BYTES}`);
  const total = imageCacheBytes(nTrain, nTest, spec, json.length);
  let out = buf;
  if (buf.length < total) {
    out = new Uint8Array(total);
    out.set(buf.subarray(0, Math.min(buf.length, total)));
  }
  out = out.subarray(0, total);
  const px = spec.channels * spec.size * spec.size;
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  out.set(Buffer.from(IMAGE_CACHE_MAGIC, 'latin1'), 0);
  dv.setUint32(8, IMAGE_CACHE_VERSION, true);
  dv.setUint32(12, nTrain, true);
  dv.setUint32(16, nTest, true);
  dv.setUint16(20, spec.size, true);
  dv.setUint8(22, spec.channels);
  dv.setUint8(23, 0);
  dv.setUint16(24, meta.classes.length, true);
  dv.setUint16(26, 0, true);
  dv.setUint32(28, json.length, true);
  out.set(key.subarray(0, 32), 32);
  let o = IMAGE_CACHE_HEADER_BYTES + (nTrain + nTest) * px;
  out.set(trainLabels, o);
  o += nTrain;
  out.set(testLabels, o);
  o += nTest;
  out.set(json, o);
  o += json.length;
  out.set(createHash('sha256').update(out.subarray(0, o)).digest(), o);
  return out;
}

/**
 * Decode and verify a cache file against the expected key, spec and classes (magic, version, key, spec,
 * size, SHA-256, label range, metadata). Returns views into `bytes`.
 * @throws DatasetError saying what does not match (the caller rebuilds).
 */
export function openImageCache(bytes: Uint8Array, key: Uint8Array, spec: DecodeSpec, classes: readonly string[]): ImageCacheContent {
  if (bytes.length < IMAGE_CACHE_HEADER_BYTES + DIGEST_BYTES) throw new DatasetError(`cache file too short (${bytes.length} bytes)`);
  if (Buffer.from(bytes.buffer, bytes.byteOffset, 8).toString('latin1') !== IMAGE_CACHE_MAGIC) throw new DatasetError('cache file has the wrong magic bytes');
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = dv.getUint32(8, true);
  if (version !== IMAGE_CACHE_VERSION) throw new DatasetError(`cache file version ${version}, expected ${IMAGE_CACHE_VERSION}`);
  if (!Buffer.from(bytes.buffer, bytes.byteOffset + 32, 32).equals(Buffer.from(key.buffer, key.byteOffset, 32))) {
    throw new DatasetError('cache file was built from another file listing (files added, removed or changed)');
  }
  const nTrain = dv.getUint32(12, true);
  const nTest = dv.getUint32(16, true);
  if (dv.getUint16(20, true) !== spec.size || dv.getUint8(22) !== spec.channels || dv.getUint16(24, true) !== classes.length) {
    throw new DatasetError('cache file has another image size, channel count or class count');
  }
  const metaBytes = dv.getUint32(28, true);
  if (metaBytes > MAX_IMAGE_CACHE_META_BYTES) throw new DatasetError('cache file metadata too large');
  const expected = imageCacheBytes(nTrain, nTest, spec, metaBytes);
  if (bytes.length !== expected) throw new DatasetError(`cache file is ${bytes.length} bytes, expected ${expected} (truncated?)`);
  const digest = createHash('sha256').update(bytes.subarray(0, expected - DIGEST_BYTES)).digest();
  if (!digest.equals(bytes.subarray(expected - DIGEST_BYTES))) throw new DatasetError('cache file checksum mismatch (corrupt)');
  const px = spec.channels * spec.size * spec.size;
  const base = bytes.byteOffset + IMAGE_CACHE_HEADER_BYTES;
  const view = (off: number, len: number): Uint8Array => new Uint8Array(bytes.buffer, base + off, len);
  const trainImages = view(0, nTrain * px);
  const testImages = view(nTrain * px, nTest * px);
  const trainLabels = view((nTrain + nTest) * px, nTrain);
  const testLabels = view((nTrain + nTest) * px + nTrain, nTest);
  for (const l of [trainLabels, testLabels]) for (let i = 0; i < l.length; i++) if (l[i] >= classes.length) throw new DatasetError(`cache file label ${l[i]} out of range`);
  let meta: ImageCacheMeta;
  try {
    meta = JSON.parse(Buffer.from(view((nTrain + nTest) * (px + 1), metaBytes)).toString('utf8')) as ImageCacheMeta;
  } catch (err) {
    throw new DatasetError('cache file metadata is not valid JSON', { cause: err });
  }
  if (!Array.isArray(meta?.classes) || meta.classes.length !== classes.length || meta.classes.some((c, i) => c !== classes[i])) {
    throw new DatasetError('cache file holds another class list');
  }
  return { train: { images: trainImages, labels: trainLabels, n: nTrain }, test: { images: testImages, labels: testLabels, n: nTest }, meta };
}
