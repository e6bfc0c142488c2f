import test from 'ava';
import sharp from 'sharp';
import { mkdir, readFile, rename, writeFile, utimes, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { loadDataset, loadImageFolder, ImageFolderError, DatasetError, type ImageSet, type ImageFolderOptions, type ImageFolderErrorReason } from '../../src/data/index.ts';
import { writeDicom } from '../dicom-writer.ts';
import { tempDir } from '../temp-dirs.ts';

const CLASSES = ['0-t-shirt', '1-trouser', '2-pullover', '3-dress'];
const PNG_PER_CLASS = 50;
const JPG_PER_CLASS = 10;
const SPEC = { size: 28, channels: 1 as const };
const same = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && Buffer.compare(a, b) === 0;
const raw28 = { raw: { width: 28, height: 28, channels: 1 as const } };

/** rel path → the pixels a PNG there was written from. */
const pngSource = new Map<string, Uint8Array>();
const jpgSource = new Map<string, Uint8Array>();
let root = '';
let cacheDir = '';

/** DICOM pixel 0: stored 1000, slope 2, intercept -1024 → m = 976, window (1000, 500) → 115 (see data-decode.test.ts). */
const DICOM_PIXEL0 = 115;

test.before(async () => {
  const fm = await loadDataset('fashion-mnist', 'train');
  root = await tempDir('fmfl-imgfolder-');
  cacheDir = await tempDir('fmfl-imgcache-');
  const perClass = CLASSES.map(() => 0);
  const jobs: Promise<void>[] = [];
  for (let i = 0; i < fm.n && perClass.some((c) => c < PNG_PER_CLASS + JPG_PER_CLASS); i++) {
    const c = fm.labels[i];
    if (c >= CLASSES.length || perClass[c] >= PNG_PER_CLASS + JPG_PER_CLASS) continue;
    const k = perClass[c]++;
    const px = fm.images.subarray(i * 784, (i + 1) * 784);
    const isJpg = k >= PNG_PER_CLASS;
    const rel = `${CLASSES[c]}/${String(k).padStart(3, '0')}.${isJpg ? 'jpg' : 'png'}`;
    (isJpg ? jpgSource : pngSource).set(rel, px);
    jobs.push(
      (async () => {
        await mkdir(join(root, CLASSES[c]), { recursive: true });
        const img = sharp(Buffer.from(px), raw28);
        await writeFile(join(root, rel), await (isJpg ? img.jpeg({ quality: 95 }) : img.png()).toBuffer());
      })(),
    );
  }
  await Promise.all(jobs);
  // One RGB PNG (uniform pure red: grey 127), one 16-bit PNG (high bytes = a known image), one corrupt file,
  // one DICOM, one unsupported file.
  const rgb = Buffer.alloc(28 * 28 * 3);
  for (let i = 0; i < 784; i++) rgb.set([255, 0, 0], i * 3);
  await writeFile(join(root, CLASSES[0], 'rgb.png'), await sharp(rgb, { raw: { width: 28, height: 28, channels: 3 } }).png().toBuffer());
  const v16 = new Uint16Array(784);
  const hi = pngSource.get(`${CLASSES[1]}/000.png`)!;
  for (let i = 0; i < 784; i++) v16[i] = (hi[i] << 8) | 0x80;
  await writeFile(join(root, CLASSES[1], 'deep16.png'), await sharp(v16, raw28).toColourspace('grey16').png().toBuffer());
  const good = await readFile(join(root, CLASSES[2], '000.png'));
  await writeFile(join(root, CLASSES[2], 'broken.png'), good.subarray(0, good.length >> 1));
  const dcmPixels = new Uint16Array(784).fill(1000);
  await writeFile(join(root, CLASSES[3], 'scan.dcm'), writeDicom({ rows: 28, columns: 28, pixels: dcmPixels, window: { center: 1000, width: 500 }, rescale: { intercept: -1024, slope: 2 } }));
  await writeFile(join(root, CLASSES[0], 'notes.txt'), 'not an image');
});

const load = (o: Partial<ImageFolderOptions> = {}): Promise<ImageSet> => loadImageFolder({ path: root, spec: SPEC, cacheDir, concurrency: 4, ...o });

/** Every file that decodes, in the loader's order (sorted relative path). */
function expectedOrder(): string[] {
  return [...pngSource.keys(), ...jpgSource.keys(), `${CLASSES[0]}/rgb.png`, `${CLASSES[1]}/deep16.png`, `${CLASSES[3]}/scan.dcm`].sort();
}

test('PNGs load bit-identical to the bundled pixels; JPEG close; RGB, 16-bit and DICOM as documented; corrupt and unsupported files skipped', async (t) => {
  const set = await load({ testFraction: 0, useCache: false });
  const order = expectedOrder();
  t.deepEqual(set.classes, CLASSES);
  t.is(set.train.n, order.length);
  t.is(set.test.n, 0);
  t.is(set.train.images.length, order.length * 784);
  let pngChecked = 0;
  for (let i = 0; i < order.length; i++) {
    const rel = order[i];
    const img = set.train.images.subarray(i * 784, (i + 1) * 784);
    t.is(set.train.labels[i], CLASSES.indexOf(rel.split('/')[0]), rel);
    const src = pngSource.get(rel);
    if (src) {
      if (!same(img, src)) return t.fail(`${rel} differs from the bundled pixels`);
      pngChecked++;
    }
    const jsrc = jpgSource.get(rel);
    if (jsrc) {
      let diff = 0;
      for (let p = 0; p < 784; p++) diff += Math.abs(img[p] - jsrc[p]);
      t.true(diff / 784 < 8, `${rel} mean abs diff ${diff / 784}`);
    }
  }
  t.is(pngChecked, CLASSES.length * PNG_PER_CLASS);
  const at = (rel: string): Uint8Array => set.train.images.subarray(order.indexOf(rel) * 784, (order.indexOf(rel) + 1) * 784);
  t.true(at(`${CLASSES[0]}/rgb.png`).every((v) => v === 127));
  t.true(same(at(`${CLASSES[1]}/deep16.png`), pngSource.get(`${CLASSES[1]}/000.png`)!), '16-bit → v >> 8');
  t.true(at(`${CLASSES[3]}/scan.dcm`).every((v) => v === DICOM_PIXEL0));
  t.is(set.skipped.count, 2);
  const byFile = new Map(set.skipped.examples.map((e) => [e.file, e.reason]));
  t.regex(byFile.get(`${CLASSES[2]}/broken.png`) ?? '', /corrupt|truncated/);
  t.regex(byFile.get(`${CLASSES[0]}/notes.txt`) ?? '', /unsupported file type '\.txt'/);
  t.deepEqual(set.classCounts.train, [PNG_PER_CLASS + JPG_PER_CLASS + 1, PNG_PER_CLASS + JPG_PER_CLASS + 1, PNG_PER_CLASS + JPG_PER_CLASS, PNG_PER_CLASS + JPG_PER_CLASS + 1]);
  // Stats over the train pixels, in [0, 1].
  let s = 0;
  for (const v of set.train.images) s += v;
  t.true(Math.abs(set.stats.mean[0] - s / set.train.images.length / 255) < 1e-9);
  t.true(set.stats.std[0] > 0.1 && set.stats.std[0] < 0.5);
});

test('declared classes: their order sets the labels, a class without images is fine, a folder outside the list is refused with its files', async (t) => {
  const declared = ['3-dress', 'zz-absent', '0-t-shirt', '1-trouser', '2-pullover'];
  const set = await load({ classes: declared, testFraction: 0, useCache: false });
  t.deepEqual(set.classes, declared);
  const order = expectedOrder();
  for (let i = 0; i < order.length; i++) if (set.train.labels[i] !== declared.indexOf(order[i].split('/')[0])) return t.fail(order[i]);
  t.is(set.classCounts.train[1], 0);
  const err = await t.throwsAsync(load({ classes: ['0-t-shirt', '1-trouser', '2-pullover'], useCache: false }), { instanceOf: ImageFolderError });
  t.is(err.reason, 'UNKNOWN_CLASS');
  t.regex(err.message, /class folder '3-dress' is not in the declared class list/);
  t.regex(err.message, /3-dress\/000\.png/);
  t.true(err instanceof DatasetError);
});

test('testFraction: stratified per class and seeded (same seed, same split; another seed, another split)', async (t) => {
  const a = await load({ testFraction: 0.25, seed: 7, useCache: false });
  const b = await load({ testFraction: 0.25, seed: 7, useCache: false });
  const c = await load({ testFraction: 0.25, seed: 8, useCache: false });
  // Splits are drawn over the listed files (61 per class; class 2's broken.png is listed, then fails to decode).
  for (const c of [0, 1, 3]) {
    t.is(a.classCounts.test[c], 15);
    t.is(a.classCounts.train[c], 46);
  }
  t.is(a.classCounts.train[2] + a.classCounts.test[2], 60);
  t.true(a.classCounts.test[2] === 15 || a.classCounts.test[2] === 14);
  t.true(same(a.test.images, b.test.images) && same(a.test.labels, b.test.labels) && same(a.train.images, b.train.images));
  for (const k of [0, 1, 3]) t.is(c.classCounts.test[k], 15);
  t.false(same(a.test.images, c.test.images));
});

test('a train/ + test/ layout is honoured (testFraction ignored); train/ alone is split by testFraction; test/ without train/ is refused', async (t) => {
  const dir = await tempDir('fmfl-imgsplit-');
  const px = (v: number): Promise<Buffer> => sharp(Buffer.alloc(784, v), raw28).png().toBuffer();
  for (const [split, cls, n] of [['train', 'cat', 5], ['train', 'dog', 4], ['test', 'cat', 2], ['test', 'dog', 3], ['test', 'eel', 1]] as const) {
    await mkdir(join(dir, split, cls), { recursive: true });
    for (let i = 0; i < n; i++) await writeFile(join(dir, split, cls, `${i}.png`), await px(split === 'train' ? 10 + i : 200 + i));
  }
  const set = await loadImageFolder({ path: dir, spec: SPEC, cacheDir, testFraction: 0.5 });
  t.deepEqual(set.classes, ['cat', 'dog', 'eel']);
  t.deepEqual(set.classCounts, { train: [5, 4, 0], test: [2, 3, 1] });
  t.true(set.train.images.every((v) => v < 100));
  t.true(set.test.images.every((v) => v >= 200));
  t.deepEqual([...set.test.labels], [0, 0, 1, 1, 1, 2]);
  // train/ alone: the seeded test fraction splits it (cat: 5 → Math.round(2.5) = 3 test, dog: 4 → 2).
  await rename(join(dir, 'test'), join(dir, 'held-out-elsewhere'));
  await t.throwsAsync(loadImageFolder({ path: dir, spec: SPEC, cacheDir }), { instanceOf: ImageFolderError, message: /train\/ folder next to other folders \(held-out-elsewhere\)/ });
  await rm(join(dir, 'held-out-elsewhere'), { recursive: true });
  const alone = await loadImageFolder({ path: dir, spec: SPEC, cacheDir, testFraction: 0.5 });
  t.deepEqual(alone.classes, ['cat', 'dog']);
  t.deepEqual(alone.classCounts, { train: [2, 2], test: [3, 2] });
  await rm(join(dir, 'train'), { recursive: true });
  await mkdir(join(dir, 'test', 'cat'), { recursive: true });
  await t.throwsAsync(loadImageFolder({ path: dir, spec: SPEC, cacheDir }), { instanceOf: ImageFolderError, message: /test\/ folder but no train\// });
});

test('cache: the second load reads the cache without decoding; touching, changing or adding a file rebuilds it; a corrupt cache is rebuilt', async (t) => {
  const dir = await tempDir('fmfl-imgcached-');
  const own = await tempDir('fmfl-imgcache2-');
  await mkdir(join(dir, 'a'));
  await mkdir(join(dir, 'b'));
  const files: string[] = [];
  for (let i = 0; i < 6; i++) {
    const f = join(dir, i % 2 ? 'b' : 'a', `${i}.png`);
    await writeFile(f, await sharp(Buffer.alloc(784, 20 * i), raw28).png().toBuffer());
    await utimes(f, 1_700_000_000, 1_700_000_000);
    files.push(f);
  }
  const opts = { path: dir, spec: SPEC, cacheDir: own, testFraction: 0.34 };
  let progress = 0;
  const first = await loadImageFolder({ ...opts, onProgress: () => progress++ });
  t.false(first.cache.hit);
  t.is(progress, 6);
  t.is(first.cache.key.length, 64);
  // Same size, same mtime, other bytes: a cache hit returns the old pixels, so nothing was decoded.
  const orig = await readFile(files[0]);
  await writeFile(files[0], Buffer.alloc(orig.length, 0x55));
  await utimes(files[0], 1_700_000_000, 1_700_000_000);
  const second = await loadImageFolder({ ...opts, onProgress: () => progress++ });
  t.true(second.cache.hit);
  t.is(progress, 6);
  t.is(second.cache.key, first.cache.key);
  t.true(same(second.train.images, first.train.images) && same(second.test.images, first.test.images));
  t.deepEqual(second.stats, first.stats);
  t.deepEqual(second.classCounts, first.classCounts);
  // Touch (mtime changes): rebuilt, and now the garbage file is skipped.
  await utimes(files[0], 1_700_000_100, 1_700_000_100);
  const third = await loadImageFolder(opts);
  t.false(third.cache.hit);
  t.not(third.cache.key, first.cache.key);
  t.is(third.skipped.count, 1);
  t.is(third.train.n + third.test.n, 5);
  const fourth = await loadImageFolder(opts);
  t.true(fourth.cache.hit);
  t.is(fourth.skipped.count, 1, 'decode skips are remembered in the cache');
  t.is(fourth.skipped.examples[0].file, 'a/0.png');
  // A content change with a new size, and an added file.
  await writeFile(files[0], orig);
  t.false((await loadImageFolder(opts)).cache.hit);
  await writeFile(join(dir, 'b', '9.png'), await sharp(Buffer.alloc(784, 99), raw28).png().toBuffer());
  const added = await loadImageFolder(opts);
  t.false(added.cache.hit);
  t.is(added.train.n + added.test.n, 7);
  // Corrupt cache file: detected by its SHA-256 and rebuilt with the same content.
  const bytes = await readFile(added.cache.file);
  bytes[100] ^= 0xff;
  await writeFile(added.cache.file, bytes);
  const rebuilt = await loadImageFolder(opts);
  t.false(rebuilt.cache.hit);
  t.true(same(rebuilt.train.images, added.train.images));
  t.true((await loadImageFolder(opts)).cache.hit);
  // Another spec uses another cache file.
  const rgb = await loadImageFolder({ ...opts, spec: { size: 32, channels: 3 } });
  t.false(rgb.cache.hit);
  t.not(rgb.cache.file, added.cache.file);
});

test('32x32x3 spec: three planes per image of the right length, per-channel stats', async (t) => {
  const set = await load({ spec: { size: 32, channels: 3 }, testFraction: 0.2 });
  const n = set.train.n + set.test.n;
  t.is(n, expectedOrder().length);
  t.is(set.train.images.length, set.train.n * 3 * 32 * 32);
  t.is(set.test.images.length, set.test.n * 3 * 32 * 32);
  t.is(set.stats.mean.length, 3);
  // A greyscale image has three equal planes.
  const img = set.train.images.subarray(0, 3072);
  t.true(same(img.subarray(0, 1024), img.subarray(1024, 2048)) && same(img.subarray(0, 1024), img.subarray(2048)));
  t.true(Math.abs(set.stats.mean[0] - set.stats.mean[1]) < 0.02, 'only the one red image differs between channels');
});

test('CSV listing: header optional, paths relative to the CSV, split column honoured, missing files skipped, unknown labels refused', async (t) => {
  const csvPath = join(root, 'labels.csv');
  const rows = ['path,label,split', `${CLASSES[0]}/000.png,shirt,train`, `"${CLASSES[0]}/001.png",shirt,test`, `${CLASSES[1]}/000.png,trousers,`, `${CLASSES[1]}/001.png,trousers,train`, `${CLASSES[2]}/missing.png,shirt`, ''];
  await writeFile(csvPath, rows.join('\r\n'));
  const set = await loadImageFolder({ path: csvPath, spec: SPEC, cacheDir, testFraction: 0 });
  t.deepEqual(set.classes, ['shirt', 'trousers']);
  t.deepEqual(set.classCounts, { train: [1, 2], test: [1, 0] });
  t.true(same(set.test.images, pngSource.get(`${CLASSES[0]}/001.png`)!));
  t.true(same(set.train.images.subarray(0, 784), pngSource.get(`${CLASSES[0]}/000.png`)!));
  t.is(set.skipped.count, 1);
  t.is(set.skipped.examples[0].file, `${CLASSES[2]}/missing.png`);
  const err = await t.throwsAsync(loadImageFolder({ path: csvPath, spec: SPEC, cacheDir, classes: ['shirt'] }), { instanceOf: ImageFolderError });
  t.is(err.reason, 'UNKNOWN_CLASS');
  t.regex(err.message, /label 'trousers'.*1-trouser\/000\.png/);
  const noHeader = join(root, 'plain.csv');
  await writeFile(noHeader, `${CLASSES[3]}/000.png,dress\n${CLASSES[3]}/001.png,dress\n`);
  const plain = await loadImageFolder({ path: noHeader, spec: SPEC, useCache: false, testFraction: 0 });
  t.is(plain.train.n, 2);
  await writeFile(noHeader, `${CLASSES[3]}/000.png,dress,validation\n`);
  await t.throwsAsync(loadImageFolder({ path: noHeader, spec: SPEC, useCache: false }), { instanceOf: ImageFolderError, message: /line 1: split 'validation'/ });
  await rm(csvPath);
  await rm(noHeader);
});

test('errors: each bad input throws ImageFolderError with its reason and a message saying what to do', async (t) => {
  const empty = await tempDir('fmfl-imgempty-');
  const cases: [Partial<ImageFolderOptions>, ImageFolderErrorReason, RegExp][] = [
    [{ path: join(empty, 'nope') }, 'MISSING_PATH', /does not exist.*--data/],
    [{ path: join(root, CLASSES[0], '000.png') }, 'NOT_FOLDER_OR_CSV', /not a \.csv/],
    [{ path: empty }, 'NO_CLASS_FOLDERS', /no class folders.*one folder per class/],
    [{ classes: [] }, 'BAD_CLASSES', /class list is empty/],
    [{ classes: ['a', 'a'] }, 'BAD_CLASSES', /declared twice/],
    [{ testFraction: 1 }, 'BAD_OPTION', /test fraction/],
    [{ concurrency: 0 }, 'BAD_OPTION', /concurrency/],
    [{ maxImages: 10 }, 'TOO_LARGE', /more than 10 image files/],
  ];
  for (const [o, reason, message] of cases) {
    const err = await t.throwsAsync(loadImageFolder({ path: root, spec: SPEC, cacheDir, ...o }), { instanceOf: ImageFolderError, message }, reason);
    t.is(err.reason, reason);
  }
  await mkdir(join(empty, 'cls'));
  await writeFile(join(empty, 'cls', 'readme.txt'), 'x');
  const e1 = await t.throwsAsync(loadImageFolder({ path: empty, spec: SPEC, cacheDir }), { instanceOf: ImageFolderError });
  t.is(e1.reason, 'NO_IMAGES');
  t.regex(e1.message, /no image files.*readme\.txt/);
  await writeFile(join(empty, 'cls', 'bad.png'), 'not a png at all');
  const e2 = await t.throwsAsync(loadImageFolder({ path: empty, spec: SPEC, cacheDir }), { instanceOf: ImageFolderError });
  t.is(e2.reason, 'NO_IMAGES');
  t.regex(e2.message, /no usable images.*bad\.png/);
  await t.throwsAsync(loadImageFolder({ path: root, spec: { size: 1000, channels: 1 }, cacheDir }), { instanceOf: DatasetError, message: /image size/ });
});
