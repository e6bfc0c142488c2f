/**
 * Image-folder loading benchmark: decode-and-cache throughput of a folder of PNGs and of JPEGs at 28 and 64 px,
 * peak RSS of the loading process, and the second start (cache hit).
 *   npm run bench:data -- [--count 20000] [--sizes 28,64] [--formats png,jpg] [--dir out/bench-data] [--json]
 * The folders are Fashion-MNIST train images exported by scripts/lib/export-images.ts (greyscale, written at the
 * size they are decoded to; re-used when present with the right file count). Each load runs in a fresh child
 * process with an empty cache folder, so its peak RSS (`process.resourceUsage().maxRSS`) is that of one node
 * loading that folder, and the second child reads the cache the first one wrote.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync, existsSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { loadImageFolder } from '../src/data/index.ts';
import { exportImageFolder } from './lib/export-images.ts';

const SELF = fileURLToPath(import.meta.url);

interface ChildResult {
  ms: number;
  images: number;
  skipped: number;
  hit: boolean;
  maxRssMB: number;
}

/** The child: load `dir` at `size` x `size` x 1 with the cache in `cacheDir`, print one JSON line. */
async function child(dir: string, size: number, cacheDir: string): Promise<void> {
  const t0 = performance.now();
  const set = await loadImageFolder({ path: dir, spec: { size, channels: 1 }, cacheDir, testFraction: 0 });
  const ms = performance.now() - t0;
  const r: ChildResult = {
    ms,
    images: set.train.n + set.test.n,
    skipped: set.skipped.count,
    hit: set.cache.hit,
    maxRssMB: process.resourceUsage().maxRSS / 1024,
  };
  process.stdout.write(`${JSON.stringify(r)}\n`);
}

function runChild(dir: string, size: number, cacheDir: string): ChildResult {
  const r = spawnSync(process.execPath, [...process.execArgv, SELF, '--child', dir, '--child-size', String(size), '--child-cache', cacheDir], {
    encoding: 'utf8',
    maxBuffer: 1 << 20,
  });
  if (r.status !== 0) throw new Error(`child load of ${dir} failed (exit ${String(r.status)}): ${r.stderr.slice(-2000)}`);
  const line = r.stdout.trim().split('\n').pop() ?? '';
  return JSON.parse(line) as ChildResult;
}

function countFiles(dir: string): number {
  if (!existsSync(dir)) return 0;
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) if (e.isFile() && !e.name.endsWith('.txt')) n++;
  return n;
}

function folderBytes(dir: string): number {
  let b = 0;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) b += statSync(join(e.parentPath, e.name)).size;
  return b;
}

async function main(): Promise<number> {
  const program = new Command()
    .option('--count <n>', 'images per folder (a multiple of 10, at most 60000)', '20000')
    .option('--sizes <list>', 'image sides, comma-separated', '28,64')
    .option('--formats <list>', 'png and/or jpg, comma-separated', 'png,jpg')
    .option('--dir <dir>', 'where the folders are written (kept for the next run)', 'out/bench-data')
    .option('--json', 'print only the JSON result')
    .option('--child <dir>')
    .option('--child-size <n>')
    .option('--child-cache <dir>')
    .parse(process.argv);
  const o = program.opts<{ count: string; sizes: string; formats: string; dir: string; json?: boolean; child?: string; childSize?: string; childCache?: string }>();
  if (o.child !== undefined) {
    await child(o.child, Number(o.childSize), String(o.childCache));
    return 0;
  }
  const count = Number(o.count);
  if (!Number.isInteger(count) || count < 10 || count > 60000 || count % 10 !== 0) {
    console.error('--count must be a multiple of 10 in 10..60000');
    return 2;
  }
  const sizes = o.sizes.split(',').map(Number);
  if (!sizes.every((s) => Number.isInteger(s) && s >= 4 && s <= 512)) {
    console.error('--sizes must list integers in 4..512');
    return 2;
  }
  const formats = o.formats.split(',').map((f) => f.trim());
  if (!formats.every((f) => f === 'png' || f === 'jpg')) {
    console.error('--formats must list png and/or jpg');
    return 2;
  }
  const log = (s: string): void => {
    if (!o.json) console.error(s);
  };
  const cases = [];
  for (const format of formats as ('png' | 'jpg')[]) {
    for (const size of sizes) {
      const dir = resolve(o.dir, `${format}-${size}-${count}`);
      if (countFiles(dir) !== count) {
        rmSync(dir, { recursive: true, force: true });
        log(`writing ${count} ${format} files at ${size}x${size} to ${dir}`);
        await exportImageFolder({ dataset: 'fashion-mnist', out: dir, size, channels: 1, format, limitPerClass: count / 10, splits: ['train'] });
      }
      const cacheDir = mkdtempSync(join(tmpdir(), 'fmfl-bench-data-'));
      try {
        const first = runChild(dir, size, cacheDir);
        const second = runChild(dir, size, cacheDir);
        if (first.hit || !second.hit) throw new Error(`cache misbehaved on ${dir}: first hit=${first.hit}, second hit=${second.hit}`);
        const c = {
          format,
          size,
          files: count,
          folderMB: +(folderBytes(dir) / 2 ** 20).toFixed(1),
          images: first.images,
          skipped: first.skipped,
          firstLoadS: +(first.ms / 1000).toFixed(2),
          imagesPerS: Math.round(first.images / (first.ms / 1000)),
          firstPeakRssMB: Math.round(first.maxRssMB),
          secondStartS: +(second.ms / 1000).toFixed(2),
          secondPeakRssMB: Math.round(second.maxRssMB),
        };
        log(`${format} ${size}px: ${c.imagesPerS} img/s, first ${c.firstLoadS} s (peak ${c.firstPeakRssMB} MB), second start ${c.secondStartS} s`);
        cases.push(c);
      } finally {
        rmSync(cacheDir, { recursive: true, force: true });
      }
    }
  }
  const out = {
    bench: 'data',
    machine: { cpus: cpus().length, model: cpus()[0]?.model ?? 'unknown', loadavg1: +loadavg()[0].toFixed(2), node: process.version },
    cases,
  };
  console.log(JSON.stringify(out, null, o.json ? 0 : 2));
  return 0;
}

process.exitCode = await main();
