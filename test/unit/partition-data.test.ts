import test from 'ava';
import fc from 'fast-check';
import {
  loadDataset,
  partitionIid,
  partitionDirichlet,
  partitionHistograms,
  labelHistogram,
  parseShardSpec,
  shardIndices,
  formatHistograms,
  matchedTestIndices,
  DatasetError,
  type Partition,
} from '../../src/data/index.ts';

function assertExactCover(t: { is: (a: unknown, b: unknown, m?: string) => void; true: (a: boolean, m?: string) => void }, parts: Partition, n: number): void {
  const seen = new Uint8Array(n);
  let total = 0;
  for (const p of parts) {
    for (let i = 0; i < p.length; i++) {
      if (i > 0) t.true(p[i] > p[i - 1], 'sorted, no duplicates');
      seen[p[i]]++;
      total++;
    }
  }
  t.is(total, n);
  t.true(seen.every((s) => s === 1), 'every sample in exactly one shard');
}

test('partitionIid: equal disjoint shards covering all samples, seeded', (t) => {
  const parts = partitionIid(60003, 7, 1);
  t.deepEqual(parts.map((p) => p.length), [8572, 8572, 8572, 8572, 8572, 8572, 8571]);
  assertExactCover(t, parts, 60003);
  t.deepEqual(partitionIid(60003, 7, 1), parts);
  t.notDeepEqual(partitionIid(60003, 7, 2)[0], parts[0]);
  t.throws(() => partitionIid(5, 6, 1), { instanceOf: DatasetError });
  t.throws(() => partitionIid(5, 0, 1), { instanceOf: DatasetError });
  t.throws(() => partitionIid(5, 2, 0.5), { instanceOf: DatasetError });
});

test('partitionIid on real labels is close to the global label mix', async (t) => {
  const ds = await loadDataset('fashion-mnist', 'train');
  const hists = partitionHistograms(ds.labels, partitionIid(ds.n, 10, 3));
  for (const h of hists) for (const v of h) t.true(v > 480 && v < 720, `class count ${v} far from 600`);
});

test('partitionDirichlet on real labels: exact cover, min size, skew grows as alpha shrinks', async (t) => {
  const ds = await loadDataset('fashion-mnist', 'train');
  const skew = (parts: Partition): number => {
    // Mean over clients of the largest class share.
    const hs = partitionHistograms(ds.labels, parts);
    return hs.reduce((acc, h) => acc + Math.max(...h) / h.reduce((a, b) => a + b, 0), 0) / hs.length;
  };
  const strong = partitionDirichlet(ds.labels, 10, 0.1, 7);
  const mild = partitionDirichlet(ds.labels, 10, 1000, 7);
  assertExactCover(t, strong, ds.n);
  assertExactCover(t, mild, ds.n);
  t.true(strong.every((p) => p.length >= 10));
  t.true(skew(strong) > 0.5, `alpha 0.1 skew ${skew(strong)}`);
  t.true(skew(mild) < 0.15, `alpha 1000 skew ${skew(mild)}`);
  t.deepEqual(partitionDirichlet(ds.labels, 10, 0.1, 7), strong);
  t.notDeepEqual(partitionDirichlet(ds.labels, 10, 0.1, 8), strong);
  t.true(formatHistograms(partitionHistograms(ds.labels, strong)).split('\n').length === 11);
});

test('partitionDirichlet guarantees the minimum even when no draw meets it (repair path)', async (t) => {
  const ds = await loadDataset('mnist', 'train');
  const parts = partitionDirichlet(ds.labels, 100, 0.001, 1, { minSamples: 60, maxRetries: 2 });
  assertExactCover(t, parts, ds.n);
  t.true(parts.every((p) => p.length >= 60), `min ${Math.min(...parts.map((p) => p.length))}`);
  t.throws(() => partitionDirichlet(ds.labels, 100, 0.5, 1, { minSamples: 91 }), { instanceOf: DatasetError, message: /exceeds/ });
  t.throws(() => partitionDirichlet(ds.labels, 10, 0, 1), { instanceOf: DatasetError, message: /alpha/ });
  t.throws(() => partitionDirichlet([0, 1, 12], 1, 1, 1, { minSamples: 0 }), { instanceOf: DatasetError, message: /label 12/ });
});

test('partitionDirichlet property: always an exact cover meeting the minimum', (t) => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 20 }),
      fc.double({ min: 0.01, max: 100, noNaN: true }),
      fc.integer({ min: 0, max: 1000 }),
      fc.integer({ min: 0, max: 5 }),
      fc.integer({ min: 200, max: 1500 }),
      (clients, alpha, seed, minSamples, n) => {
        const labels = Uint8Array.from({ length: n }, (_, i) => (i * 7) % 10);
        const parts = partitionDirichlet(labels, clients, alpha, seed, { minSamples, maxRetries: 5 });
        const seen = new Uint8Array(n);
        for (const p of parts) for (const i of p) seen[i]++;
        return parts.length === clients && seen.every((s) => s === 1) && parts.every((p) => p.length >= minSamples);
      },
    ),
    { numRuns: 150, seed: 20261124 },
  );
  t.pass();
});

test('shard specs: 0-based i/n; shardIndices equals the partition part', async (t) => {
  t.deepEqual(parseShardSpec('2/5'), { index: 2, count: 5 });
  t.deepEqual(parseShardSpec(' 0 / 1 '), { index: 0, count: 1 });
  for (const bad of ['5/5', '1/0', 'a/b', '1', '-1/3', '1/2/3']) t.throws(() => parseShardSpec(bad), { instanceOf: DatasetError }, bad);
  const ds = await loadDataset('mnist', 'train');
  t.deepEqual(shardIndices(ds.labels, '3/8', { seed: 9 }), partitionIid(ds.n, 8, 9)[3]);
  t.deepEqual(
    shardIndices(ds.labels, { index: 1, count: 4 }, { seed: 9, scheme: 'dirichlet', alpha: 0.5 }),
    partitionDirichlet(ds.labels, 4, 0.5, 9)[1],
  );
  t.throws(() => shardIndices(ds.labels, '0/4', { seed: 1, scheme: 'dirichlet' }), { instanceOf: DatasetError, message: /alpha/ });
  const h = labelHistogram(ds.labels, shardIndices(ds.labels, '0/2', { seed: 1 }));
  t.is(h.reduce((a, b) => a + b, 0), 4500);
});

test('matchedTestIndices: a node test split with its shard label proportions, seeded, without repeats', (t) => {
  const testLabels = Uint8Array.from({ length: 1000 }, (_, i) => i % 10);
  const hist = [30, 0, 0, 10, 0, 0, 0, 0, 0, 60];
  const a = matchedTestIndices(testLabels, hist, 50, 3);
  t.deepEqual([...a], [...matchedTestIndices(testLabels, hist, 50, 3)], 'same seed, same split');
  t.notDeepEqual([...a], [...matchedTestIndices(testLabels, hist, 50, 4)], 'another seed, another split');
  t.is(new Set(a).size, 50);
  t.deepEqual([...labelHistogram(testLabels, a)], [15, 0, 0, 5, 0, 0, 0, 0, 0, 30]);
  // Largest remainder: 7 over thirds rounds to 3/2/2 and still sums to the size.
  t.deepEqual([...labelHistogram(testLabels, matchedTestIndices(testLabels, [1, 1, 1, 0, 0, 0, 0, 0, 0, 0], 7, 1))].slice(0, 3), [3, 2, 2]);
  // A class with fewer test images than asked gives all it has.
  t.is(matchedTestIndices(testLabels, [1, 0, 0, 0, 0, 0, 0, 0, 0, 0], 500, 1).length, 100);
  t.throws(() => matchedTestIndices(testLabels, new Array(10).fill(0), 5, 1), { instanceOf: DatasetError });
  t.throws(() => matchedTestIndices(testLabels, hist, 0, 1), { instanceOf: DatasetError });
});
