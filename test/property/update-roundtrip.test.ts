import test from 'ava';
import fc from 'fast-check';
import { decodeUpdate, encodeUpdate, encodeWithErrorFeedback, ErrorFeedback, type ValueBits } from '../../src/update/index.ts';
import { Rng } from '../../src/util/rng.ts';
import { vitTinyManifest, randomDeltas, makeUpdate } from '../unit/update-vit-tiny.fixture.ts';

const manifest = vitTinyManifest(4, 32, 2, 5);

const opts = fc.record({
  bits: fc.constantFrom<ValueBits>(32, 16, 8, 4),
  fraction: fc.constantFrom(0.01, 0.05, 0.3, 1),
  scope: fc.constantFrom<'tensor' | 'global'>('tensor', 'global'),
  brotli: fc.boolean(),
  seed: fc.integer(),
  rank: fc.integer({ min: 1, max: 6 }),
});

test('decode(encode(u)) equals the encoder-side reconstruction; byte accounting is exact', (t) => {
  fc.assert(fc.property(opts, ({ bits, fraction, scope, brotli, seed, rank }) => {
    const deltas = randomDeltas(manifest, new Rng(seed), rank);
    const u = makeUpdate(deltas, { loraRank: rank });
    const enc = encodeUpdate(u, manifest, { bits, topk: { fraction, scope }, brotli, seed });
    const back = decodeUpdate(enc.bytes, manifest);
    if (back.loraRank !== rank || back.sampleCount !== u.sampleCount || back.baseVersion !== u.baseVersion) return false;
    for (const [name, rec] of enc.reconstruction) {
      const got = back.deltas.get(name)!;
      if (got.length !== rec.length || got.some((v, i) => v !== rec[i])) return false;
    }
    const a = enc.accounting;
    const parts = a.headerBytes + a.prototypeBytes + a.tensors.reduce((s, x) => s + x.totalBytes, 0);
    if (parts !== a.bodyBytes || a.wireBytes !== enc.bytes.length) return false;
    if (!brotli && a.wireBytes !== a.bodyBytes + a.envelopeBytes) return false;
    // lossless settings reproduce the input exactly
    if (bits === 32 && fraction === 1) for (const [n, d] of deltas) if (back.deltas.get(n)!.some((v, i) => v !== d[i])) return false;
    return true;
  }), { numRuns: 40 });
  t.pass();
});

test('error feedback loses nothing: sum of transmitted + residual = sum of true deltas, over many rounds', (t) => {
  fc.assert(fc.property(opts, fc.integer({ min: 5, max: 25 }), ({ bits, fraction, scope, seed, rank }, rounds) => {
    const rng = new Rng(seed);
    const ef = new ErrorFeedback();
    const sumTrue = new Map<string, Float64Array>();
    const sumSent = new Map<string, Float64Array>();
    for (let r = 0; r < rounds; r++) {
      const deltas = randomDeltas(manifest, rng, rank);
      const enc = encodeWithErrorFeedback(makeUpdate(deltas, { loraRank: rank, round: r }), manifest, ef, { bits, topk: { fraction, scope }, rng });
      const recv = decodeUpdate(enc.bytes, manifest);
      for (const [n, d] of deltas) {
        const st = sumTrue.get(n) ?? new Float64Array(d.length);
        const ss = sumSent.get(n) ?? new Float64Array(d.length);
        const got = recv.deltas.get(n)!;
        for (let i = 0; i < d.length; i++) { st[i] += d[i]; ss[i] += got[i]; }
        sumTrue.set(n, st);
        sumSent.set(n, ss);
      }
    }
    for (const [n, st] of sumTrue) {
      const ss = sumSent.get(n)!;
      const res = ef.residualOf(n, st.length);
      for (let i = 0; i < st.length; i++) if (Math.abs(ss[i] + res[i] - st[i]) > 1e-12 * rounds) return false;
    }
    return true;
  }), { numRuns: 15 });
  t.pass();
});

test('error feedback: residual stays bounded and the sent sum tracks the true sum (top-5% global + 4 bit)', (t) => {
  const rng = new Rng(3);
  const ef = new ErrorFeedback();
  const rounds = 200;
  let trueNorm = 0;
  const sumTrue = new Map<string, Float64Array>();
  for (let r = 0; r < rounds; r++) {
    const deltas = randomDeltas(manifest, rng, 4);
    encodeWithErrorFeedback(makeUpdate(deltas, { loraRank: 4 }), manifest, ef, { bits: 4, topk: { fraction: 0.05, scope: 'global' }, rng });
    for (const [n, d] of deltas) {
      const s = sumTrue.get(n) ?? new Float64Array(d.length);
      for (let i = 0; i < d.length; i++) s[i] += d[i];
      sumTrue.set(n, s);
    }
  }
  for (const s of sumTrue.values()) for (const v of s) trueNorm += v * v;
  // Without feedback 95% of each delta would be lost; with it the residual is a small fraction of the total.
  t.true(ef.residualNormSq() < 0.5 * trueNorm, `residual² ${ef.residualNormSq()} vs total² ${trueNorm}`);
  const snap = ef.snapshot();
  const restored = ErrorFeedback.restore(snap);
  t.is(restored.residualNormSq(), ef.residualNormSq());
});

test('toUpdateManifest marks LoRA rank axes by suffix and keeps order', async (t) => {
  const { toUpdateManifest, manifestDigest } = await import('../../src/update/index.ts');
  const m = toUpdateManifest(manifest.tensors.map((s) => ({ name: s.name, shape: s.shape })), { prototypes: manifest.prototypes });
  t.deepEqual(m.tensors.map((s) => [s.name, s.loraAxis]), manifest.tensors.map((s) => [s.name, s.loraAxis]));
  t.deepEqual(manifestDigest(m), manifestDigest(manifest));
});

test('tensor math: delta then apply restores the weights; flatten/unflatten round-trips at any rank', async (t) => {
  const { tensorDelta, applyDelta, flattenTensors, unflattenTensors } = await import('../../src/update/index.ts');
  fc.assert(fc.property(fc.integer(), fc.integer({ min: 1, max: 6 }), (seed, rank) => {
    const rng = new Rng(seed);
    const before = randomDeltas(manifest, rng, rank, 1);
    const after = randomDeltas(manifest, rng, rank, 1);
    const back = applyDelta(before, tensorDelta(after, before));
    for (const [n, a] of after) if (back.get(n)!.some((v, i) => Math.abs(v - a[i]) > 1e-6)) return false;
    const flat = flattenTensors(after, manifest, rank);
    const un = unflattenTensors(flat, manifest, rank);
    for (const [n, a] of after) if (un.get(n)!.some((v, i) => v !== a[i])) return false;
    return true;
  }), { numRuns: 20 });
  t.pass();
});

test('prototype sums: f16 refuses sums beyond its range instead of saturating; f32 keeps them', (t) => {
  const m = vitTinyManifest(2, 4, 1, 2);
  const deltas = randomDeltas(m, new Rng(1), 2);
  const prototypes = [{ exit: 0, dim: 4, counts: [1000, 0], sums: Float32Array.from([70000, 1, 2, 3, 0, 0, 0, 0]) }];
  const u = makeUpdate(deltas, { loraRank: 2, prototypes });
  t.throws(() => encodeUpdate(u, m, { prototypeBits: 16 }), { message: /f16 range/ });
  const back = decodeUpdate(encodeUpdate(u, m).bytes, m);
  t.deepEqual(Array.from(back.prototypes[0].sums), [70000, 1, 2, 3, 0, 0, 0, 0]);
  t.deepEqual(back.prototypes[0].counts, [1000, 0]);
});

test('encoding is deterministic for a seed (reproducible runs), and differs across seeds for stochastic codecs', (t) => {
  const deltas = randomDeltas(manifest, new Rng(8), 4);
  const u = makeUpdate(deltas, { loraRank: 4 });
  const a = encodeUpdate(u, manifest, { bits: 4, seed: 1, topk: { fraction: 0.3, scope: 'global' } }).bytes;
  const b = encodeUpdate(u, manifest, { bits: 4, seed: 1, topk: { fraction: 0.3, scope: 'global' } }).bytes;
  const c = encodeUpdate(u, manifest, { bits: 4, seed: 2, topk: { fraction: 0.3, scope: 'global' } }).bytes;
  t.deepEqual(a, b);
  t.notDeepEqual(a, c);
  t.throws(() => encodeUpdate(u, manifest, { bits: 8 }), { message: /needs an rng/ });
});

test('format 2 framing: codec ids and consecutive positions are not repeated per tensor', (t) => {
  const m = vitTinyManifest(8, 64, 4, 10);
  const u = makeUpdate(randomDeltas(m, new Rng(9), 8), { loraRank: 8 });
  const enc = encodeUpdate(u, m, { bits: 8, topk: { fraction: 0.1, scope: 'global' }, seed: 1 });
  const framing = enc.accounting.tensors.map((x) => x.totalBytes - x.valueBytes - x.indexBytes);
  // tag + length of the message, nnz, and the tag + length of values and indices: at most 2 + 3 + 3 + 3 (+ 2 for a skip or an odd index codec)
  t.true(framing.every((f) => f <= 13), framing.join(','));
  t.true(framing.reduce((s, f) => s + f, 0) / framing.length <= 10, framing.join(','));
  const dense = encodeUpdate(u, m, { bits: 32 });
  t.true(dense.accounting.tensors.every((x) => x.totalBytes - x.valueBytes <= 2 + 4), 'dense tensors: message tag + length and values tag + length only');
});
