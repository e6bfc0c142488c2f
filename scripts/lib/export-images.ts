/**
 * Export a bundled dataset (fashion-mnist, mnist) as an image folder: `<out>/<split>/<class>/<i>.png` (or .jpg),
 * the layout `loadImageFolder` reads. Used by scripts/export-image-folder.ts and scripts/bench-data.ts.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { loadDataset, IMAGE_PIXELS, IMAGE_SIZE, NUM_CLASSES, DatasetError, type DatasetName, type Split } from '../../src/data/index.ts';
import { runPool } from '../../src/data/image-listing.ts';

/**
 * Class folder names per dataset. They sort (by code unit) in label order, so the default class list of the
 * exported folder (sorted folder names) maps each label to itself.
 */
export const EXPORT_CLASS_NAMES: Record<DatasetName, readonly string[]> = {
  'fashion-mnist': ['0-t-shirt', '1-trouser', '2-pullover', '3-dress', '4-coat', '5-sandal', '6-shirt', '7-sneaker', '8-bag', '9-ankle-boot'],
  mnist: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'],
};

/** Options of {@link exportImageFolder}. */
export interface ExportOptions {
  dataset: DatasetName;
  out: string;
  /** Side of the written images (default 28: the source pixels unchanged); other sizes are resized with sharp (Lanczos-3). */
  size?: number;
  /** 1 (default) or 3 (grey replicated to R, G, B). */
  channels?: 1 | 3;
  /** At most this many images per class and split (default: all), the first ones in dataset order. */
  limitPerClass?: number;
  /** Splits to write (default both). */
  splits?: readonly Split[];
  /** 'png' (default, lossless) or 'jpg' (quality {@link ExportOptions.jpegQuality}). */
  format?: 'png' | 'jpg';
  /** JPEG quality 1..100 (default 90). */
  jpegQuality?: number;
  /** Encodes in flight (default 2 x cores). */
  concurrency?: number;
  onProgress?: (done: number, total: number) => void;
}

/** What {@link exportImageFolder} wrote. */
export interface ExportResult {
  out: string;
  classes: string[];
  files: { train: number; test: number };
  bytes: number;
  ms: number;
}

/** Encode one 28x28 greyscale image as `format` at `size` x `size` with `channels` channels. */
export async function encodeImage(px: Uint8Array, size: number, channels: 1 | 3, format: 'png' | 'jpg', jpegQuality = 90): Promise<Buffer> {
  let p = sharp(px, { raw: { width: IMAGE_SIZE, height: IMAGE_SIZE, channels: 1 } });
  if (size !== IMAGE_SIZE) p = p.resize(size, size, { kernel: 'lanczos3' });
  if (channels === 3) p = p.toColourspace('srgb');
  return format === 'png' ? p.png().toBuffer() : p.jpeg({ quality: jpegQuality }).toBuffer();
}

/**
 * Write the export; also `<out>/classes.txt` (one class name a line, in label order). File names are the
 * zero-padded index of the image within its class and split (`00000.png`), so they sort in dataset order.
 * @throws DatasetError on invalid options.
 */
export async function exportImageFolder(opts: ExportOptions): Promise<ExportResult> {
  const size = opts.size ?? IMAGE_SIZE;
  const channels = opts.channels ?? 1;
  const format = opts.format ?? 'png';
  const splits = opts.splits ?? (['train', 'test'] as const);
  const limit = opts.limitPerClass ?? Infinity;
  if (!Number.isInteger(size) || size < 4 || size > 512) throw new DatasetError(`--size must be an integer in 4..512, got ${size}`);
  if (channels !== 1 && channels !== 3) throw new DatasetError(`--channels must be 1 or 3, got ${String(channels)}`);
  if (!(limit === Infinity || (Number.isInteger(limit) && limit >= 1))) throw new DatasetError(`--limit-per-class must be a positive integer, got ${limit}`);
  const classes = [...EXPORT_CLASS_NAMES[opts.dataset]];
  const t0 = performance.now();
  await mkdir(opts.out, { recursive: true });
  await writeFile(join(opts.out, 'classes.txt'), `${classes.join('\n')}\n`);
  const jobs: { split: Split; px: Uint8Array; file: string }[] = [];
  const files = { train: 0, test: 0 };
  for (const split of splits) {
    const ds = await loadDataset(opts.dataset, split);
    const seen = new Array<number>(NUM_CLASSES).fill(0);
    for (const cls of classes) await mkdir(join(opts.out, split, cls), { recursive: true });
    for (let i = 0; i < ds.n; i++) {
      const c = ds.labels[i];
      if (seen[c] >= limit) continue;
      const name = `${String(seen[c]++).padStart(5, '0')}.${format}`;
      jobs.push({ split, px: ds.images.subarray(i * IMAGE_PIXELS, (i + 1) * IMAGE_PIXELS), file: join(opts.out, split, classes[c], name) });
      files[split]++;
    }
  }
  let bytes = 0;
  let done = 0;
  await runPool(jobs.length, opts.concurrency ?? 2 * availableParallelism(), async (j) => {
    const { px, file } = jobs[j];
    const buf = await encodeImage(px, size, channels, format, opts.jpegQuality);
    await writeFile(file, buf);
    bytes += buf.length;
    opts.onProgress?.(++done, jobs.length);
  });
  return { out: opts.out, classes, files, bytes, ms: performance.now() - t0 };
}
