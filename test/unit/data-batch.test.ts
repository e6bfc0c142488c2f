import test from 'ava';
import { loadDataset, toFloatBatch, toLabelBatch, toLabelBatchInt64, toOneHotBatch, DatasetError } from '../../src/data/index.ts';

test('toFloatBatch gathers real images as [B,1,28,28] normalized (p/255-0.5)/0.5', async (t) => {
  const ds = await loadDataset('fashion-mnist', 'test');
  const idx = [9999, 0, 4321];
  const out = toFloatBatch(ds, idx);
  t.is(out.length, 3 * 784);
  for (let b = 0; b < idx.length; b++) {
    for (let p = 0; p < 784; p++) {
      const px = ds.images[idx[b] * 784 + p];
      const want = Math.fround((px / 255 - 0.5) / 0.5);
      if (out[b * 784 + p] !== want) return t.fail(`batch ${b} pixel ${p}: ${out[b * 784 + p]} != ${want}`);
    }
  }
  // Row-major: pixel (row 14, col 3) of image 1 sits at 784 + 14 * 28 + 3.
  t.is(out[784 + 14 * 28 + 3], Math.fround(ds.images[0 * 784 + 14 * 28 + 3] / 127.5 - 1));
  let min = Infinity;
  let max = -Infinity;
  for (const v of out) {
    min = Math.min(min, v);
    max = Math.max(max, v);
  }
  t.is(min, -1);
  t.true(max <= 1 && max > 0.5);
});

test('toFloatBatch writes into a reused buffer; a longer buffer yields a view, a short one throws', async (t) => {
  const ds = await loadDataset('mnist', 'test');
  const buf = new Float32Array(2 * 784);
  const r = toFloatBatch(ds, [5, 6], buf);
  t.is(r, buf);
  t.deepEqual(r, toFloatBatch(ds, [5, 6]));
  const big = new Float32Array(4 * 784);
  const v = toFloatBatch(ds, [5], big);
  t.is(v.length, 784);
  t.is(v.buffer, big.buffer);
  t.throws(() => toFloatBatch(ds, [1, 2, 3], buf), { instanceOf: DatasetError, message: /needs 2352/ });
  t.throws(() => toFloatBatch(ds, [ds.n]), { instanceOf: DatasetError, message: /out of range/ });
  t.throws(() => toFloatBatch(ds, [-1]), { instanceOf: DatasetError });
  t.throws(() => toFloatBatch(ds, [1.5]), { instanceOf: DatasetError });
});

test('label batches: int32, int64 and one-hot agree with the labels', async (t) => {
  const ds = await loadDataset('mnist', 'test');
  const idx = Uint32Array.from([0, 150, 999, 420]);
  const l32 = toLabelBatch(ds, idx);
  t.deepEqual(Array.from(l32), [0, 1, 9, 4]);
  t.deepEqual(Array.from(toLabelBatchInt64(ds, idx)), [0n, 1n, 9n, 4n]);
  const oh = toOneHotBatch(ds, idx, new Float32Array(40).fill(7));
  t.is(oh.reduce((a, b) => a + b, 0), 4);
  t.is(oh[3 * 10 + 4], 1);
  t.is(oh[2 * 10 + 9], 1);
  t.throws(() => toLabelBatch(ds, [1000]), { instanceOf: DatasetError });
});
