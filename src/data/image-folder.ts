/**
 * Loading an image folder or a CSV listing into uint8 CHW images of the model's input spec, with labels
 * mapped onto the federation's declared class list, a per-node train/test split and a checksummed cache.
 */
import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { atomicWriteFile } from '../util/atomic.ts';
import { defaultCacheDir } from './cache.ts';
import { DECODE_RULES_VERSION, MAX_IMAGE_FILE_BYTES, checkInputSpec, decodeImage, type DecodeSpec } from './decode.ts';
import { IMAGE_CACHE_HEADER_BYTES, IMAGE_CACHE_VERSION, imageCacheBytes, openImageCache, sealImageCache, type ImageCacheMeta } from './image-cache.ts';
import { ImageFolderError, MAX_SKIPPED_EXAMPLES, assignSplits, listImageSource, runPool, type Listing } from './image-listing.ts';

/** Default of {@link ImageFolderOptions.maxImages}: 1,000,000 files. */
export const DEFAULT_MAX_IMAGES = 1_000_000;
/** Upper bound of {@link ImageFolderOptions.maxImages}: 2^24 files. */
export const MAX_IMAGES_LIMIT = 2 ** 24;
/**
 * Most bytes of one loaded image set (pixels, labels, cache header): 2 GiB - 16 MiB, so that the cache file
 * stays below Node's 2 GiB `readFile` limit. 1M images fit at 28x28x1 (784 MB), ~690k at 32x32x3, ~520k at 64x64x1.
 */
export const MAX_IMAGE_SET_BYTES = 2 ** 31 - 2 ** 24;
/** Default of {@link ImageFolderOptions.testFraction}. */
export const DEFAULT_TEST_FRACTION = 0.2;
/** Default of {@link ImageFolderOptions.seed}. */
export const DEFAULT_SPLIT_SEED = 42;
/** Largest {@link ImageFolderOptions.concurrency}. */
export const MAX_DECODE_CONCURRENCY = 64;
/** Longest file name / reason kept in a skipped-file example. */
const MAX_EXAMPLE_CHARS = 500;

/** Options of {@link loadImageFolder}. */
export interface ImageFolderOptions {
  /**
   * A folder (`<dir>/<class>/*.ext`, or `<dir>/train/<class>/...` + `<dir>/test/<class>/...`) or a .csv of
   * `path,label[,train|test]` rows (header optional: a first row whose first field is path/file/filename/image;
   * paths relative to the CSV's folder, or absolute).
   */
  path: string;
  spec: DecodeSpec;
  /** The federation's declared label set, in order. Default: sorted folder names (or sorted distinct CSV labels). */
  classes?: string[];
  /**
   * Share of each class's files put into test when neither a test/ folder nor a CSV split column decides
   * (default {@link DEFAULT_TEST_FRACTION}); in [0, 1). Ignored when a test/ folder exists (train/ alone is split by it).
   */
  testFraction?: number;
  /** Seed of the split (default {@link DEFAULT_SPLIT_SEED}); an integer in 0..2^32-1. */
  seed?: number;
  /** Cache folder; default: the same as the bundled datasets' (env `FMFL_CACHE_DIR`, else `<project>/.cache/fmfl`). */
  cacheDir?: string;
  /** Read and write the cache (default true). */
  useCache?: boolean;
  /** Decodes in flight (default `os.availableParallelism()`, at most {@link MAX_DECODE_CONCURRENCY}). */
  concurrency?: number;
  /** Most image files (default {@link DEFAULT_MAX_IMAGES}, at most {@link MAX_IMAGES_LIMIT}); more is an error, not a truncation. */
  maxImages?: number;
  /** Called after each decoded (or skipped) file; not called on a cache hit. */
  onProgress?: (done: number, total: number) => void;
}

/** One split: `n` images, image i is `images.subarray(i*C*S*S, (i+1)*C*S*S)` (CHW), label i indexes `classes`. */
export interface ImageSplit {
  images: Uint8Array;
  labels: Uint8Array;
  n: number;
}

/** A loaded image folder. */
export interface ImageSet {
  classes: string[];
  spec: DecodeSpec;
  train: ImageSplit;
  test: ImageSplit;
  /** Files not loaded (unsupported type, unreadable, corrupt): the count and the first few with the reason. */
  skipped: { count: number; examples: { file: string; reason: string }[] };
  /** Per-channel mean and (population) standard deviation of the train pixels, in [0, 1] units (0 when train is empty). */
  stats: { mean: number[]; std: number[] };
  /** `hit`: read from the cache without decoding; `file`: the cache file; `key`: hex SHA-256 of the listing. */
  cache: { hit: boolean; file: string; key: string; error?: string };
  /** Images per class (index = label) in each split. */
  classCounts: { train: number[]; test: number[] };
}

function checkOptions(opts: ImageFolderOptions): { testFraction: number; seed: number; concurrency: number; maxImages: number } {
  if (opts === null || typeof opts !== 'object' || typeof opts.path !== 'string' || opts.path === '') {
    throw new ImageFolderError('BAD_OPTION', 'no data path given: pass a folder of class folders or a .csv file');
  }
  checkInputSpec(opts.spec);
  const testFraction = opts.testFraction ?? DEFAULT_TEST_FRACTION;
  if (!(testFraction >= 0 && testFraction < 1)) throw new ImageFolderError('BAD_OPTION', `test fraction must be in [0, 1), got ${String(testFraction)}`);
  const seed = opts.seed ?? DEFAULT_SPLIT_SEED;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new ImageFolderError('BAD_OPTION', `seed must be an integer in 0..4294967295, got ${String(seed)}`);
  const concurrency = opts.concurrency ?? Math.min(availableParallelism(), MAX_DECODE_CONCURRENCY);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > MAX_DECODE_CONCURRENCY) {
    throw new ImageFolderError('BAD_OPTION', `concurrency must be an integer in 1..${MAX_DECODE_CONCURRENCY}, got ${String(concurrency)}`);
  }
  const maxImages = opts.maxImages ?? DEFAULT_MAX_IMAGES;
  if (!Number.isInteger(maxImages) || maxImages < 1 || maxImages > MAX_IMAGES_LIMIT) {
    throw new ImageFolderError('BAD_OPTION', `maxImages must be an integer in 1..${MAX_IMAGES_LIMIT}, got ${String(maxImages)}`);
  }
  return { testFraction, seed, concurrency, maxImages };
}

function digestOf(parts: string[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\0');
  return h.digest();
}

function clip(s: string): string {
  return s.length > MAX_EXAMPLE_CHARS ? `${s.slice(0, MAX_EXAMPLE_CHARS)}...` : s;
}

/**
 * Load an image folder or CSV listing (see {@link ImageFolderOptions}).
 *
 * Files are sorted by relative path; each split keeps that order. Images are decoded by {@link decodeImage}
 * (`concurrency` at a time; only their file bytes are held, each decoded image goes straight into one
 * preallocated buffer that is also the cache file). A file that cannot be read or decoded is skipped and
 * counted, never fatal. The split: a train/ + test/ layout or a CSV split column decides where given; the
 * other files are split per class by {@link assignSplits} (seeded, stratified).
 *
 * Cache: `<cacheDir>/image-folder-<hash of path, spec, classes, testFraction, seed>.v1.bin` holds the result for
 * one listing key (SHA-256 over the decode rules, sharp/libvips versions, the path, spec, classes, test fraction,
 * seed and every file's relative path, size, mtime (ns), label and split). The next load with the same key reads
 * it (verifying its SHA-256) without decoding; any added, removed, touched or changed file changes the key and
 * rebuilds it in place. A corrupt cache is rebuilt; an unwritable cache folder only costs the next load a decode.
 * Files skipped before decoding (unsupported types) are not part of the key and are reported afresh each load.
 *
 * @throws ImageFolderError (a DatasetError) for a missing path, a path that is not a folder or .csv, no class
 *   folders, a bad layout, an empty or invalid class list, a class outside the declared list (naming the class
 *   and some of its files), a malformed CSV, too many images or bytes, zero usable images, or a bad option;
 *   DatasetError for an invalid spec.
 */
export async function loadImageFolder(opts: ImageFolderOptions): Promise<ImageSet> {
  const { testFraction, seed, concurrency, maxImages } = checkOptions(opts);
  const spec: DecodeSpec = { size: opts.spec.size, channels: opts.spec.channels };
  const listing = await listImageSource(opts.path, { classes: opts.classes, maxImages, concurrency });
  const { classes, files } = listing;
  const splits = assignSplits(files, classes.length, testFraction, seed);

  const common = [`v${IMAGE_CACHE_VERSION}`, `rules${DECODE_RULES_VERSION}`, listing.kind, listing.root, `${spec.size}x${spec.channels}`, JSON.stringify(classes), String(testFraction), String(seed)];
  const slot = digestOf(common).toString('hex').slice(0, 24);
  const keyHash = createHash('sha256');
  keyHash.update(`${common.join('\0')}\0sharp ${sharp.versions.sharp} vips ${sharp.versions.vips}\0`);
  for (let i = 0; i < files.length; i++) {
    const f = files[i];
    keyHash.update(`${f.rel}\0${f.size}\0${f.mtimeNs}\0${f.label}\0${splits[i]}\n`);
  }
  const key = keyHash.digest();
  const cacheFile = join(opts.cacheDir ?? defaultCacheDir(), `image-folder-${slot}.v${IMAGE_CACHE_VERSION}.bin`);
  const useCache = opts.useCache ?? true;

  if (useCache) {
    const cached = await tryCache(cacheFile, key, spec, classes);
    if (cached.content) {
      const { train, test, meta } = cached.content;
      return {
        classes,
        spec,
        train,
        test,
        skipped: mergeSkipped(listing.skipped, meta.skipped),
        stats: meta.stats,
        cache: { hit: true, file: cacheFile, key: key.toString('hex') },
        classCounts: meta.classCounts,
      };
    }
  }

  const built = await decodeAll(listing, splits, spec, concurrency, opts.onProgress);
  const decodeSkipped = built.skipped;
  const total = built.train.n + built.test.n;
  if (total === 0) {
    const all = mergeSkipped(listing.skipped, decodeSkipped);
    const ex = all.examples.map((s) => `${s.file} (${s.reason})`).join('; ');
    throw new ImageFolderError('NO_IMAGES', `no usable images in ${listing.root}: all ${all.count} files were skipped, e.g. ${ex}; check that they are valid ${'PNG/JPEG/WebP/TIFF/DICOM'} images`);
  }
  const meta: ImageCacheMeta = {
    classes,
    skipped: decodeSkipped,
    stats: channelStats(built.train, spec),
    classCounts: { train: countLabels(built.train.labels, classes.length), test: countLabels(built.test.labels, classes.length) },
  };
  const fileBytes = sealImageCache(built.buffer, key, spec, built.train.labels, built.test.labels, meta);
  const px = spec.channels * spec.size * spec.size;
  const view = (off: number, len: number): Uint8Array => new Uint8Array(fileBytes.buffer, fileBytes.byteOffset + off, len);
  const h = IMAGE_CACHE_HEADER_BYTES;
  const train = { images: view(h, built.train.n * px), labels: view(h + total * px, built.train.n), n: built.train.n };
  const test = { images: view(h + built.train.n * px, built.test.n * px), labels: view(h + total * px + built.train.n, built.test.n), n: built.test.n };
  let error: string | undefined;
  if (useCache) {
    try {
      await atomicWriteFile(cacheFile, fileBytes, 0o644);
    } catch (err) {
      error = `cache not written: ${(err as Error).message}`;
    }
  }
  return {
    classes,
    spec,
    train,
    test,
    skipped: mergeSkipped(listing.skipped, decodeSkipped),
    stats: meta.stats,
    cache: { hit: false, file: cacheFile, key: key.toString('hex'), ...(error !== undefined ? { error } : {}) },
    classCounts: meta.classCounts,
  };
}

async function tryCache(file: string, key: Uint8Array, spec: DecodeSpec, classes: string[]): Promise<{ content?: ReturnType<typeof openImageCache>; reason: string }> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    return { reason: (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no cache file' : `cache unreadable: ${(err as Error).message}` };
  }
  try {
    return { content: openImageCache(bytes, key, spec, classes), reason: '' };
  } catch (err) {
    return { reason: `invalid cache, rebuilding: ${(err as Error).message}` };
  }
}

function mergeSkipped(a: ImageSet['skipped'], b: ImageSet['skipped']): ImageSet['skipped'] {
  return { count: a.count + b.count, examples: [...a.examples, ...b.examples].slice(0, MAX_SKIPPED_EXAMPLES) };
}

interface Built {
  buffer: Uint8Array;
  train: { labels: Uint8Array; n: number; images: Uint8Array };
  test: { labels: Uint8Array; n: number; images: Uint8Array };
  skipped: ImageSet['skipped'];
}

async function decodeAll(
  listing: Listing,
  splits: ('train' | 'test')[],
  spec: DecodeSpec,
  concurrency: number,
  onProgress: ImageFolderOptions['onProgress'],
): Promise<Built> {
  const { files, classes } = listing;
  const px = spec.channels * spec.size * spec.size;
  const slots = new Int32Array(files.length);
  let nTrain = 0;
  let nTest = 0;
  for (let i = 0; i < files.length; i++) slots[i] = splits[i] === 'train' ? nTrain++ : nTest++;
  for (let i = 0; i < files.length; i++) if (splits[i] === 'test') slots[i] += nTrain;
  const metaReserve = Buffer.byteLength(JSON.stringify(classes)) + 64 * 1024;
  const need = imageCacheBytes(nTrain, nTest, spec, metaReserve);
  if (need > MAX_IMAGE_SET_BYTES) {
    throw new ImageFolderError('TOO_LARGE', `${files.length} images of ${spec.channels}x${spec.size}x${spec.size} need ${need} bytes, more than the ${MAX_IMAGE_SET_BYTES}-byte limit: use a smaller --image-size or fewer images`);
  }
  const buffer = new Uint8Array(need);
  const ok = new Uint8Array(files.length);
  const errors: { i: number; reason: string }[] = [];
  let done = 0;
  await runPool(files.length, concurrency, async (i) => {
    const f = files[i];
    try {
      if (f.size > MAX_IMAGE_FILE_BYTES) throw new Error(`file is ${f.size} bytes, more than the ${MAX_IMAGE_FILE_BYTES}-byte limit`);
      const bytes = await readFile(f.abs);
      const img = await decodeImage(bytes, f.rel, spec);
      buffer.set(img, IMAGE_CACHE_HEADER_BYTES + slots[i] * px);
      ok[i] = 1;
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      errors.push({ i, reason: msg.startsWith(`${f.rel}: `) ? msg.slice(f.rel.length + 2) : msg });
    }
    onProgress?.(++done, files.length);
  });
  errors.sort((a, b) => a.i - b.i);
  const skipped = { count: errors.length, examples: errors.slice(0, MAX_SKIPPED_EXAMPLES).map((e) => ({ file: clip(files[e.i].rel), reason: clip(e.reason) })) };

  // Compact: drop the slots of skipped files, train first, then test, in file order.
  const order = Array.from({ length: files.length }, (_, i) => i).sort((a, b) => slots[a] - slots[b]);
  const trainLabels: number[] = [];
  const testLabels: number[] = [];
  let w = 0;
  for (const i of order) {
    if (!ok[i]) continue;
    if (w !== slots[i]) buffer.copyWithin(IMAGE_CACHE_HEADER_BYTES + w * px, IMAGE_CACHE_HEADER_BYTES + slots[i] * px, IMAGE_CACHE_HEADER_BYTES + (slots[i] + 1) * px);
    w++;
    (splits[i] === 'train' ? trainLabels : testLabels).push(files[i].label);
  }
  const h = IMAGE_CACHE_HEADER_BYTES;
  const tr = Uint8Array.from(trainLabels);
  const te = Uint8Array.from(testLabels);
  return {
    buffer,
    train: { labels: tr, n: tr.length, images: buffer.subarray(h, h + tr.length * px) },
    test: { labels: te, n: te.length, images: buffer.subarray(h + tr.length * px, h + (tr.length + te.length) * px) },
    skipped,
  };
}

function countLabels(labels: Uint8Array, k: number): number[] {
  const c = new Array<number>(k).fill(0);
  for (let i = 0; i < labels.length; i++) c[labels[i]]++;
  return c;
}

/** Per-channel mean and population std of `split`'s pixels in [0, 1] units (from exact 256-bin histograms). */
export function channelStats(split: { images: Uint8Array; n: number }, spec: DecodeSpec): { mean: number[]; std: number[] } {
  const plane = spec.size * spec.size;
  const mean: number[] = [];
  const std: number[] = [];
  for (let c = 0; c < spec.channels; c++) {
    const hist = new Float64Array(256);
    for (let i = 0; i < split.n; i++) {
      const base = (i * spec.channels + c) * plane;
      for (let p = base; p < base + plane; p++) hist[split.images[p]]++;
    }
    const count = split.n * plane;
    let s = 0;
    let s2 = 0;
    for (let v = 0; v < 256; v++) {
      s += v * hist[v];
      s2 += v * v * hist[v];
    }
    const m = count > 0 ? s / count / 255 : 0;
    const variance = count > 0 ? s2 / count / (255 * 255) - m * m : 0;
    mean.push(m);
    std.push(Math.sqrt(Math.max(0, variance)));
  }
  return { mean, std };
}
