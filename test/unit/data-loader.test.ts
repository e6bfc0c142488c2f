import test from 'ava';
import { createRequire } from 'node:module';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { loadDataset, labelHistogram, DatasetError, IMAGE_PIXELS, subsetDataset, balancedIndices } from '../../src/data/index.ts';

const require = createRequire(import.meta.url);

async function rawClass(pkg: string, sub: string, c: number): Promise<unknown[]> {
  const dir = join(dirname(require.resolve(`${pkg}/package.json`)), sub);
  return (JSON.parse(await readFile(join(dir, `${c}.json`), 'utf8')) as { data: unknown[] }).data;
}

test('fashion-mnist: 60,000 train / 10,000 test, 6,000 / 1,000 per class', async (t) => {
  const train = await loadDataset('fashion-mnist', 'train');
  const test_ = await loadDataset('fashion-mnist', 'test');
  t.is(train.n, 60000);
  t.is(test_.n, 10000);
  t.is(train.images.length, 60000 * IMAGE_PIXELS);
  t.deepEqual(Array.from(labelHistogram(train.labels)), Array(10).fill(6000));
  t.deepEqual(Array.from(labelHistogram(test_.labels)), Array(10).fill(1000));
  t.is(train.numClasses, 10);
  t.is(train.name, 'fashion-mnist');
  t.is(test_.split, 'test');
  // Real images: not blank, using the full 0..255 range overall.
  let max = 0;
  let sum = 0;
  for (let i = 0; i < 784 * 1000; i++) {
    max = Math.max(max, train.images[i]);
    sum += train.images[i];
  }
  t.is(max, 255);
  t.true(sum / (784 * 1000) > 20);
});

test('fashion-mnist: empty entries dropped, last 1,000 of a class are test (class 3 checked against the JSON)', async (t) => {
  const data = (await rawClass('fashion-mnist', 'src/clothes', 3)).filter((x) => (x as number[]).length > 0) as number[][];
  t.is(data.length, 7000);
  const train = await loadDataset('fashion-mnist', 'train');
  const test_ = await loadDataset('fashion-mnist', 'test');
  // Class 3 starts at 3 * 6000 in train and 3 * 1000 in test.
  t.deepEqual(Array.from(train.images.subarray(3 * 6000 * 784, (3 * 6000 + 1) * 784)), data[0]);
  t.deepEqual(Array.from(train.images.subarray((4 * 6000 - 1) * 784, 4 * 6000 * 784)), data[5999]);
  t.deepEqual(Array.from(test_.images.subarray(3 * 1000 * 784, (3 * 1000 + 1) * 784)), data[6000]);
  t.deepEqual(Array.from(test_.images.subarray((4 * 1000 - 1) * 784, 4 * 1000 * 784)), data[6999]);
});

test('fashion-mnist class 0: the two empty entries (raw positions 1000 and 7001) are skipped', async (t) => {
  const raw = (await rawClass('fashion-mnist', 'src/clothes', 0)) as number[][];
  t.is(raw.length, 7002);
  t.is(raw[1000].length, 0);
  const train = await loadDataset('fashion-mnist', 'train');
  const test_ = await loadDataset('fashion-mnist', 'test');
  t.deepEqual(Array.from(train.images.subarray(1000 * 784, 1001 * 784)), raw[1001]);
  t.deepEqual(Array.from(test_.images.subarray(0, 784)), raw[6001]);
  t.deepEqual(Array.from(test_.images.subarray(999 * 784, 1000 * 784)), raw[7000]);
  // Every pixel of class 0 matches JSON.parse (the loader scans the bytes without JSON.parse).
  const kept = raw.filter((x) => x.length > 0);
  let mismatches = 0;
  kept.forEach((img, k) => {
    const src = k < 6000 ? train.images : test_.images;
    const base = (k < 6000 ? k : k - 6000) * 784;
    for (let p = 0; p < 784; p++) if (src[base + p] !== img[p]) mismatches++;
  });
  t.is(kept.length, 7000);
  t.is(mismatches, 0);
});

test('mnist: 10,000 digits, last 100 per class are test, pixels = round(v * 255)', async (t) => {
  const train = await loadDataset('mnist', 'train');
  const test_ = await loadDataset('mnist', 'test');
  t.is(train.n + test_.n, 10000);
  t.is(test_.n, 1000);
  t.deepEqual(Array.from(labelHistogram(test_.labels)), Array(10).fill(100));
  const raw7 = (await rawClass('mnist', 'src/digits', 7)) as number[];
  const count7 = raw7.length / 784;
  const trainHist = labelHistogram(train.labels);
  t.is(trainHist[7], count7 - 100);
  // First test digit of class 7 = raw digit count7-100.
  const start = (count7 - 100) * 784;
  const expected = raw7.slice(start, start + 784).map((v) => Math.round(v * 255));
  t.deepEqual(Array.from(test_.images.subarray(700 * 784, 701 * 784)), expected);
  let offset = 0;
  for (let c = 0; c < 7; c++) offset += trainHist[c];
  t.deepEqual(Array.from(train.images.subarray(offset * 784, (offset + 1) * 784)), raw7.slice(0, 784).map((v) => Math.round(v * 255)));
});

test('invalid name or split is a DatasetError naming the choices', async (t) => {
  const e1 = await t.throwsAsync(loadDataset('cifar' as never, 'train'), { instanceOf: DatasetError });
  t.regex(e1.message, /fashion-mnist, mnist/);
  await t.throwsAsync(loadDataset('mnist', 'val' as never), { instanceOf: DatasetError, message: /train.*test/ });
});

test('balancedIndices and subsetDataset give a small class-balanced real subset', async (t) => {
  const ds = await loadDataset('fashion-mnist', 'test');
  const idx = balancedIndices(ds.labels, 5, 42);
  t.is(idx.length, 50);
  t.deepEqual(idx, balancedIndices(ds.labels, 5, 42));
  t.notDeepEqual(idx, balancedIndices(ds.labels, 5, 43));
  const sub = subsetDataset(ds, idx);
  t.is(sub.n, 50);
  t.deepEqual(Array.from(labelHistogram(sub.labels)), Array(10).fill(5));
  t.deepEqual(sub.images.subarray(784, 1568), ds.images.subarray(idx[1] * 784, (idx[1] + 1) * 784));
  const first = balancedIndices(ds.labels, 2);
  t.deepEqual(Array.from(first.subarray(0, 4)), [0, 1, 1000, 1001]);
  t.throws(() => balancedIndices(ds.labels, 1001), { instanceOf: DatasetError });
  t.throws(() => subsetDataset(ds, [ds.n]), { instanceOf: DatasetError });
});
