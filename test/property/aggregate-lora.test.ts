import test from 'ava';
import fc from 'fast-check';
import { flexlora, fedavg, getAggregator, lowRankSvd, mat, matmul, qr, svd, transpose, type AggregateInput, type Mat } from '../../src/aggregate/index.ts';
import type { UpdateManifest } from '../../src/update/index.ts';
import { Rng } from '../../src/util/rng.ts';

const randMat = (rng: Rng, m: number, n: number): Mat => mat(m, n, Array.from({ length: m * n }, () => rng.normal()));
const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
};
const frob = (a: ArrayLike<number>): number => Math.sqrt(Array.from(a).reduce((s, v) => s + v * v, 0));
const dims = fc.record({ m: fc.integer({ min: 1, max: 24 }), n: fc.integer({ min: 1, max: 24 }), seed: fc.integer() });

test('svd: U diag(s) V^T reproduces the matrix, factors are orthonormal, s sorted', (t) => {
  fc.assert(fc.property(dims, fc.integer({ min: 0, max: 4 }), ({ m, n, seed }, lowRank) => {
    const rng = new Rng(seed);
    // optionally rank-deficient: product of thin factors
    const a = lowRank > 0 ? matmul(randMat(rng, m, lowRank), randMat(rng, lowRank, n)) : randMat(rng, m, n);
    const { u, s, v } = svd(a);
    const k = Math.min(m, n);
    if (s.length !== k) return false;
    for (let i = 1; i < k; i++) if (s[i] > s[i - 1]) return false;
    const us = mat(m, k, u.data);
    for (let i = 0; i < m; i++) for (let j = 0; j < k; j++) us.data[i * k + j] *= s[j];
    const rec = matmul(us, transpose(v));
    if (maxAbsDiff(rec.data, a.data) > 1e-9 * Math.max(1, frob(a.data))) return false;
    // Columns belonging to (numerically) zero singular values are arbitrary in a thin SVD (the implementation may
    // leave them zero), so orthonormality is checked on the others, for V as for U.
    const vtv = matmul(transpose(v), v);
    for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) {
      if (s[i] <= 1e-9 * s[0] || s[j] <= 1e-9 * s[0]) continue;
      if (Math.abs(vtv.data[i * k + j] - (i === j ? 1 : 0)) > 1e-9) return false;
    }
    const utu = matmul(transpose(u), u);
    for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) {
      if (s[i] <= 1e-9 * s[0] || s[j] <= 1e-9 * s[0]) continue;
      if (Math.abs(utu.data[i * k + j] - (i === j ? 1 : 0)) > 1e-8) return false;
    }
    return true;
  }), { numRuns: 60 });
  t.pass();
});

test('qr: Q R = A with orthonormal Q', (t) => {
  fc.assert(fc.property(dims, ({ m, n, seed }) => {
    if (m < n) [m, n] = [n, m];
    const a = randMat(new Rng(seed), m, n);
    const { q, r } = qr(a);
    const qtq = matmul(transpose(q), q);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) if (Math.abs(qtq.data[i * n + j] - (i === j ? 1 : 0)) > 1e-10) return false;
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) if (r.data[i * n + j] !== 0) return false;
    return maxAbsDiff(matmul(q, r).data, a.data) < 1e-9 * Math.max(1, frob(a.data));
  }), { numRuns: 60 });
  t.pass();
});

test('lowRankSvd truncation is the best rank-k approximation (Eckart-Young) on both paths', (t) => {
  fc.assert(fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 6 }), fc.integer(), (count, r, k, seed) => {
    const rng = new Rng(seed);
    const m = 12, n = 10;
    const factors = Array.from({ length: count }, () => ({ a: randMat(rng, m, r), b: randMat(rng, r, n) }));
    const P = mat(m, n);
    for (const f of factors) matmul(f.a, f.b).data.forEach((v, i) => { P.data[i] += v; });
    const full = svd(P);
    const lr = lowRankSvd(factors, k);
    const kk = lr.s.length;
    if (kk > k || kk < Math.min(k, count * r, m, n)) return false;
    if (maxAbsDiff(lr.s, full.s.slice(0, kk)) > 1e-8 * full.s[0]) return false;
    const us = mat(m, kk, lr.u.data);
    for (let i = 0; i < m; i++) for (let j = 0; j < kk; j++) us.data[i * kk + j] *= lr.s[j];
    const approx = matmul(us, transpose(lr.v));
    const err2 = approx.data.reduce((s, v, i) => s + (v - P.data[i]) ** 2, 0);
    const tail2 = full.s.slice(kk).reduce((s, v) => s + v * v, 0);
    return Math.abs(err2 - tail2) <= 1e-8 * (full.s[0] ** 2);
  }), { numRuns: 50 });
  t.pass();
});

const manifest: UpdateManifest = {
  tensors: [
    { name: 'w.lora_a', shape: [16, 4], loraAxis: 1 },
    { name: 'w.lora_b', shape: [4, 12], loraAxis: 0 },
    { name: 'head', shape: [3] },
  ],
};

function loraUpdate(rng: Rng, r: number, n: number): AggregateInput {
  const g = (k: number): Float32Array => Float32Array.from({ length: k }, () => rng.normal() * 0.1);
  return { sampleCount: n, loraRank: r, deltas: new Map([['w.lora_a', g(16 * r)], ['w.lora_b', g(r * 12)], ['head', g(3)]]) };
}

function product(a: Float32Array, b: Float32Array, r: number, scale: number): Float64Array {
  const out = new Float64Array(16 * 12);
  for (let i = 0; i < 16; i++) for (let k = 0; k < r; k++) for (let j = 0; j < 12; j++) out[i * 12 + j] += scale * a[i * r + k] * b[k * 12 + j];
  return out;
}

test('flexlora: re-factorized A·B reproduces the weighted mean of (alpha/r_i)·A_i·B_i exactly when the rank allows', (t) => {
  fc.assert(fc.property(fc.array(fc.tuple(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 50 })), { minLength: 1, maxLength: 5 }), fc.integer(), fc.boolean(), fc.boolean(),
    (spec, seed, withBase, withAlpha) => {
      const rng = new Rng(seed);
      const ups = spec.map(([r, n]) => loraUpdate(rng, r, n));
      const baseRank = 3;
      const base = withBase ? new Map([['w.lora_a', Float32Array.from({ length: 16 * baseRank }, () => rng.normal())], ['w.lora_b', Float32Array.from({ length: baseRank * 12 }, () => rng.normal())]]) : undefined;
      const alpha = withAlpha ? 16 : undefined;
      const sumR = spec.reduce((s, [r]) => s + r, 0);
      const target = Math.min(sumR, 12);
      const res = flexlora(ups, { manifest, base, loraAlpha: alpha, targetRank: target });
      const total = spec.reduce((s, [, n]) => s + n, 0);
      const want = new Float64Array(16 * 12);
      ups.forEach((u, i) => {
        const r = u.loraRank!;
        const a = Float32Array.from(u.deltas.get('w.lora_a')!);
        const b = Float32Array.from(u.deltas.get('w.lora_b')!);
        if (base) {
          for (let x = 0; x < 16; x++) for (let k = 0; k < Math.min(r, baseRank); k++) a[x * r + k] += base.get('w.lora_a')![x * baseRank + k];
          for (let k = 0; k < Math.min(r, baseRank); k++) for (let j = 0; j < 12; j++) b[k * 12 + j] += base.get('w.lora_b')![k * 12 + j];
        }
        product(a, b, r, (u.sampleCount / total) * (alpha ? alpha / r : 1)).forEach((v, k) => { want[k] += v; });
      });
      const R = res.loraRank!;
      const A = Float32Array.from(res.deltas.get('w.lora_a')!);
      const B = Float32Array.from(res.deltas.get('w.lora_b')!);
      if (A.length !== 16 * R || B.length !== R * 12) return false;
      if (base) {
        for (let x = 0; x < 16; x++) for (let k = 0; k < Math.min(R, baseRank); k++) A[x * R + k] += base.get('w.lora_a')![x * baseRank + k];
        for (let k = 0; k < Math.min(R, baseRank); k++) for (let j = 0; j < 12; j++) B[k * 12 + j] += base.get('w.lora_b')![k * 12 + j];
      }
      const got = product(A, B, R, alpha ? alpha / R : 1);
      const ok = maxAbsDiff(got, want) <= 1e-5 * Math.max(1, frob(want));
      const head = fedavg(ups.map((u) => ({ sampleCount: u.sampleCount, deltas: new Map([['head', u.deltas.get('head')!]]) })));
      return ok && maxAbsDiff(res.deltas.get('head')!, head.deltas.get('head')!) < 1e-7;
    }), { numRuns: 50 });
  t.pass();
});

test('robust rules stay within the coordinate-wise range; fedavg is permutation invariant', (t) => {
  fc.assert(fc.property(fc.array(fc.float32Array({ minLength: 5, maxLength: 5, noNaN: true, noDefaultInfinity: true, min: Math.fround(-1e3), max: Math.fround(1e3) }), { minLength: 1, maxLength: 9 }), (xs) => {
    const ups = xs.map((x, i) => ({ deltas: new Map([['x', x]]), sampleCount: i + 1 }));
    for (const name of ['median', 'trimmed-mean']) {
      const r = getAggregator(name)(ups).deltas.get('x')!;
      for (let j = 0; j < 5; j++) {
        const col = xs.map((x) => x[j]);
        if (r[j] < Math.min(...col) - 1e-3 || r[j] > Math.max(...col) + 1e-3) return false;
      }
    }
    const a = fedavg(ups).deltas.get('x')!;
    const b = fedavg([...ups].reverse()).deltas.get('x')!;
    return maxAbsDiff(a, b) <= 1e-3;
  }), { numRuns: 60 });
  t.pass();
});
