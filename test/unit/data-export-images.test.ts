import test from 'ava';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadDataset, loadImageFolder, balancedIndices } from '../../src/data/index.ts';
import { exportImageFolder, EXPORT_CLASS_NAMES } from '../../scripts/lib/export-images.ts';
import { tempDir } from '../temp-dirs.ts';

test('class folder names sort in label order', (t) => {
  for (const names of Object.values(EXPORT_CLASS_NAMES)) t.deepEqual([...names].sort(), [...names]);
  t.is(EXPORT_CLASS_NAMES['fashion-mnist'][9], '9-ankle-boot');
});

test('an exported folder loads back to the bundled pixels and labels (28x28x1), and as replicated RGB at 32', async (t) => {
  const out = await tempDir('fmfl-export-');
  const r = await exportImageFolder({ dataset: 'fashion-mnist', out, limitPerClass: 3 });
  t.deepEqual(r.files, { train: 30, test: 30 });
  t.is((await readFile(join(out, 'classes.txt'), 'utf8')).trim().split('\n').length, 10);
  const set = await loadImageFolder({ path: out, spec: { size: 28, channels: 1 }, useCache: false });
  t.deepEqual(set.classes, [...EXPORT_CLASS_NAMES['fashion-mnist']]);
  for (const split of ['train', 'test'] as const) {
    const ds = await loadDataset('fashion-mnist', split);
    // The first 3 of each class in dataset order (the dataset is ordered by class).
    const idx = balancedIndices(ds.labels, 3);
    const got = set[split];
    t.is(got.n, 30);
    for (let k = 0; k < 30; k++) {
      const j = idx[k];
      t.is(got.labels[k], ds.labels[j]);
      if (Buffer.compare(got.images.subarray(k * 784, (k + 1) * 784), ds.images.subarray(j * 784, (j + 1) * 784)) !== 0) return t.fail(`${split} ${k}`);
    }
  }
  const rgbOut = await tempDir('fmfl-export-rgb-');
  await exportImageFolder({ dataset: 'mnist', out: rgbOut, limitPerClass: 1, size: 32, channels: 3, format: 'jpg', splits: ['train'] });
  const rgb = await loadImageFolder({ path: rgbOut, spec: { size: 32, channels: 3 }, useCache: false, testFraction: 0 });
  t.is(rgb.train.n, 10);
  t.is(rgb.test.n, 0);
  t.is(rgb.train.images.length, 10 * 3 * 1024);
  const img = rgb.train.images.subarray(0, 3072);
  let diff = 0;
  for (let p = 0; p < 1024; p++) diff += Math.abs(img[p] - img[1024 + p]) + Math.abs(img[p] - img[2048 + p]);
  t.true(diff / 2048 < 3, `JPEG of replicated grey keeps R, G, B close (mean diff ${diff / 2048})`);
});
