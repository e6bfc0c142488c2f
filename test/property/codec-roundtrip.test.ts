import test from 'ava';
import fc from 'fast-check';
import {
  ValueCodec, IndexCodec, valueCodec, indexCodec, chooseIndexCodec, assertCodecRegistry, selectTopK,
  f32ToF16Bits, f16BitsToF32, F16_MAX, MAX_RICE_K, UpdateError,
} from '../../src/update/index.ts';
import { Rng } from '../../src/util/rng.ts';

const RUNS = { numRuns: 60 };
const finiteF32 = fc.float({ noNaN: true, noDefaultInfinity: true, min: Math.fround(-1e30), max: Math.fround(1e30) });
const vec = (max = 400) => fc.float32Array({ noNaN: true, noDefaultInfinity: true, min: Math.fround(-1e6), max: Math.fround(1e6), maxLength: max });

test('registry covers every wire enum value exactly once', (t) => {
  t.notThrows(() => assertCodecRegistry());
  for (const id of [ValueCodec.VALUE_F32, ValueCodec.VALUE_F16, ValueCodec.VALUE_Q8, ValueCodec.VALUE_Q4, ValueCodec.VALUE_SIGN]) t.is(valueCodec(id).id, id);
  for (const id of [IndexCodec.INDEX_DELTA_VARINT, IndexCodec.INDEX_BITMAP, IndexCodec.INDEX_RICE]) t.is(indexCodec(id).id, id);
  t.throws(() => valueCodec(ValueCodec.VALUE_CODEC_UNSPECIFIED), { message: /unknown-codec/ });
});

test('f32 round trip is exact', (t) => {
  fc.assert(fc.property(vec(), (v) => {
    const c = valueCodec(ValueCodec.VALUE_F32);
    const { bytes } = c.encode(v);
    const back = c.decode(bytes, { count: v.length, blockSize: 0 });
    return bytes.length === 4 * v.length && back.every((x, i) => Object.is(x, v[i]) || (x === 0 && v[i] === 0));
  }), RUNS);
  t.pass();
});

test('f16 round trip: relative error <= 2^-11 in the normal range, absolute <= 2^-25 below it, saturating above', (t) => {
  fc.assert(fc.property(finiteF32, (x) => {
    const y = f16BitsToF32(f32ToF16Bits(x));
    const ax = Math.abs(x);
    if (ax > F16_MAX) return Math.abs(y) === F16_MAX && Math.sign(y) === Math.sign(x);
    if (ax >= 2 ** -14) return Math.abs(y - x) <= ax * 2 ** -11;
    return Math.abs(y - x) <= 2 ** -25;
  }), { numRuns: 2000 });
  t.is(f16BitsToF32(f32ToF16Bits(1)), 1);
  t.is(f16BitsToF32(f32ToF16Bits(-2.5)), -2.5);
  t.is(f16BitsToF32(f32ToF16Bits(65504)), 65504);
});

test('sign: each value decodes to ±(its block\'s mean |x|) with its own sign, in 4·blocks + ⌈n/8⌉ bytes', (t) => {
  fc.assert(fc.property(vec(), fc.constantFrom(8, 16, 64, 128), (v, bs) => {
    const c = valueCodec(ValueCodec.VALUE_SIGN);
    const { bytes, blockSize } = c.encode(v, { blockSize: bs });
    if (bytes.length !== c.byteLength(v.length, bs) || bytes.length !== 4 * Math.ceil(v.length / bs) + Math.ceil(v.length / 8)) return false;
    const back = c.decode(bytes, { count: v.length, blockSize });
    for (let b = 0; b * bs < v.length; b++) {
      const lo = b * bs;
      const hi = Math.min(v.length, lo + bs);
      let sum = 0;
      for (let i = lo; i < hi; i++) sum += Math.abs(v[i]);
      const scale = Math.fround(sum / (hi - lo));
      for (let i = lo; i < hi; i++) if (back[i] !== (v[i] < 0 ? -scale : scale)) return false;
    }
    return true;
  }), RUNS);
  t.pass();
});

test('sign: the mean-|x| scale is the least-squares scale, so the error never exceeds the signal', (t) => {
  fc.assert(fc.property(vec(200), (v) => {
    const c = valueCodec(ValueCodec.VALUE_SIGN);
    const { bytes, blockSize } = c.encode(v, { blockSize: 64 });
    const back = c.decode(bytes, { count: v.length, blockSize });
    let err = 0;
    let sig = 0;
    for (let i = 0; i < v.length; i++) {
      err += (back[i] - v[i]) ** 2;
      sig += v[i] ** 2;
    }
    return err <= sig * (1 + 1e-5) + 1e-30;
  }), RUNS);
  t.pass();
});

test('sign: decoding rejects wrong lengths, non-finite or negative scales and set padding bits with UpdateError', (t) => {
  const c = valueCodec(ValueCodec.VALUE_SIGN);
  const { bytes } = c.encode(Float32Array.of(1, -2, 3), { blockSize: 8 });
  t.deepEqual([...c.decode(bytes, { count: 3, blockSize: 8 })], [2, -2, 2]);
  t.throws(() => c.decode(bytes.subarray(1), { count: 3, blockSize: 8 }), { instanceOf: UpdateError });
  const pad = Uint8Array.from(bytes);
  pad[4] |= 0x80;
  t.throws(() => c.decode(pad, { count: 3, blockSize: 8 }), { instanceOf: UpdateError, message: /padding/ });
  for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, -1]) {
    const b = Uint8Array.from(bytes);
    new DataView(b.buffer).setFloat32(0, bad, true);
    t.throws(() => c.decode(b, { count: 3, blockSize: 8 }), { instanceOf: UpdateError });
  }
});

for (const [id, levels] of [[ValueCodec.VALUE_Q8, 127], [ValueCodec.VALUE_Q4, 7]] as const) {
  test(`${id}: stochastic error < block absmax / ${levels}, nearest error <= absmax / ${2 * levels}`, (t) => {
    fc.assert(fc.property(vec(), fc.constantFrom(8, 16, 64, 128), fc.integer(), (v, bs, seed) => {
      const c = valueCodec(id);
      for (const stochastic of [true, false]) {
        const { bytes, blockSize } = c.encode(v, { blockSize: bs, rng: new Rng(seed), stochastic });
        if (bytes.length !== c.byteLength(v.length, bs)) return false;
        const back = c.decode(bytes, { count: v.length, blockSize });
        for (let b = 0; b * bs < v.length; b++) {
          let amax = 0;
          for (let i = b * bs; i < Math.min(v.length, (b + 1) * bs); i++) amax = Math.max(amax, Math.abs(v[i]));
          const bound = stochastic ? amax / levels : amax / (2 * levels);
          for (let i = b * bs; i < Math.min(v.length, (b + 1) * bs); i++) {
            const err = Math.abs(back[i] - v[i]);
            if (!(stochastic ? err < bound * (1 + 1e-6) || err === 0 : err <= bound * (1 + 1e-6))) return false;
          }
        }
      }
      return true;
    }), RUNS);
    t.pass();
  });

  test(`${id}: stochastic quantization is unbiased (mean over draws)`, (t) => {
    const rng = new Rng(11);
    const n = 64;
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) x[i] = rng.normal();
    const amax = x.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    const step = amax / levels;
    const draws = 3000;
    const mean = new Float64Array(n);
    const c = valueCodec(id);
    for (let d = 0; d < draws; d++) {
      const { bytes } = c.encode(x, { blockSize: 64, rng });
      const y = c.decode(bytes, { count: n, blockSize: 64 });
      for (let i = 0; i < n; i++) mean[i] += y[i] / draws;
    }
    // Each draw lies within one step of x with variance <= step^2/4, so the mean's std is <= step/(2 sqrt(draws)).
    const tol = 5 * step / (2 * Math.sqrt(draws));
    let worst = 0;
    for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(mean[i] - x[i]));
    t.true(worst < tol, `max |mean - x| = ${worst}, tolerance ${tol}`);
    // Deterministic rounding is biased for values between levels: the check above would catch it.
    const { bytes } = c.encode(x, { blockSize: 64, stochastic: false });
    const near = c.decode(bytes, { count: n, blockSize: 64 });
    t.true(near.some((v, i) => Math.abs(v - x[i]) > tol));
  });
}

const INDEX_IDS = [IndexCodec.INDEX_BITMAP, IndexCodec.INDEX_DELTA_VARINT, IndexCodec.INDEX_RICE] as const;

/** Random sorted positions in [0, n): uniform density or clustered runs (Rice and varint then differ). */
const positions = fc.record({
  n: fc.integer({ min: 1, max: 3000 }),
  density: fc.oneof(fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 0.02, noNaN: true })),
  clustered: fc.boolean(),
  seed: fc.integer(),
}).map(({ n, density, clustered, seed }) => {
  const rng = new Rng(seed);
  const idx: number[] = [];
  let on = false;
  for (let i = 0; i < n; i++) {
    if (clustered) { if (rng.next() < 0.05) on = !on; if (on && rng.next() < 0.8) idx.push(i); } else if (rng.next() < density) idx.push(i);
  }
  return { n, indices: Uint32Array.from(idx) };
});

test('index codecs round trip; the chosen one is the smallest (ties: bitmap, delta-varint, Rice)', (t) => {
  fc.assert(fc.property(positions, ({ n, indices }) => {
    const sizes: number[] = [];
    for (const id of INDEX_IDS) {
      const c = indexCodec(id);
      const bytes = c.encode(indices, n);
      sizes.push(bytes.length);
      if (bytes.length !== c.byteLength(indices, n)) return false;
      const back = c.decode(bytes, n, indices.length);
      if (back.length !== indices.length || back.some((v, i) => v !== indices[i])) return false;
    }
    const chosen = chooseIndexCodec(indices, n);
    if (indices.length === n) return chosen === IndexCodec.INDEX_DENSE;
    const min = Math.min(...sizes);
    return chosen === INDEX_IDS[sizes.indexOf(min)];
  }), { numRuns: 200 });
  t.pass();
});

test('rice: the stored k is the best in [0, 20]; 10 % density costs about the entropy', (t) => {
  // exhaustive k search against the codec's pick
  fc.assert(fc.property(positions, ({ n, indices }) => {
    const bytes = indexCodec(IndexCodec.INDEX_RICE).encode(indices, n);
    let best = Infinity;
    for (let k = 0; k <= MAX_RICE_K; k++) {
      let bits = indices.length * (k + 1);
      let prev = -1;
      for (const i of indices) { bits += (i - prev - 1) >>> k; prev = i; }
      best = Math.min(best, 1 + Math.ceil(bits / 8));
    }
    return bytes[0] <= MAX_RICE_K && bytes.length === best;
  }), { numRuns: 100 });
  const rng = new Rng(4);
  const n = 100_000;
  const idx: number[] = [];
  for (let i = 0; i < n; i++) if (rng.next() < 0.1) idx.push(i);
  const bytes = indexCodec(IndexCodec.INDEX_RICE).encode(Uint32Array.from(idx), n);
  const entropyBytes = (n * -(0.1 * Math.log2(0.1) + 0.9 * Math.log2(0.9))) / 8;
  t.true(bytes.length < 1.05 * entropyBytes, `${bytes.length} B vs entropy ${entropyBytes.toFixed(0)} B`);
  t.is(bytes[0], 3);
});

test('rice decoding is validation: hostile bytes only raise UpdateError, successes are valid positions', (t) => {
  const c = indexCodec(IndexCodec.INDEX_RICE);
  const check = (bytes: Uint8Array, n: number, nnz: number): boolean => {
    try {
      const out = c.decode(bytes, n, nnz);
      if (out.length !== nnz) return false;
      for (let i = 0; i < out.length; i++) if (out[i] >= n || (i > 0 && out[i] <= out[i - 1])) return false;
      return true;
    } catch (err) {
      return err instanceof UpdateError;
    }
  };
  fc.assert(fc.property(fc.uint8Array({ maxLength: 40 }), fc.integer({ min: 0, max: 400 }), fc.nat({ max: 60 }), (b, n, nnz) => check(b, n, nnz)), { numRuns: 2000 });
  // mutated valid encodings
  fc.assert(fc.property(positions, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 3 }), fc.integer({ min: -2, max: 2 }),
    ({ n, indices }, edits, dn) => {
      const b = Uint8Array.from(c.encode(indices, n));
      for (const [pos, v] of edits) b[pos % b.length] = v;
      return check(b, n, Math.max(0, indices.length + dn));
    }), { numRuns: 300 });
  const reason = (bytes: number[], n: number, nnz: number): string | undefined =>
    t.throws(() => c.decode(Uint8Array.from(bytes), n, nnz), { instanceOf: UpdateError })?.reason;
  t.is(reason([], 10, 0), 'bad-length');
  t.is(reason([21, 0], 10, 1), 'bad-codec-params');
  t.is(reason([0, 0xff, 0xff], 10, 1), 'bad-index'); // unary run past the tensor end
  t.is(reason([2, 0b0000_0000], 10, 3), 'bad-index'); // truncated: 3 gaps of 3 bits need 9 bits
  t.is(reason([0, 0b0000_0000, 0], 10, 2), 'bad-index'); // trailing byte
  t.is(reason([0, 0b1000_0000], 10, 2), 'bad-length'); // non-zero padding
  t.is(reason([0, 0b0000_0111], 3, 1), 'bad-index'); // position 3 >= n
  // k=1, LSB-first: gap 2 = bits 1,0 (q=1) then low bit 0; gap 0 = bit 0 (q=0) then low bit 0
  t.deepEqual([...c.decode(Uint8Array.of(1, 0b0000_0001), 10, 2)], [2, 3]);
  t.deepEqual([...c.encode(Uint32Array.of(2, 3), 10)], [0, 0b0000_0011]); // the encoder prefers k=0 here (4 bits)
});

test('top-k keeps the largest magnitudes, per tensor and globally', (t) => {
  fc.assert(fc.property(fc.array(vec(300), { minLength: 1, maxLength: 4 }), fc.double({ min: 0.001, max: 1, noNaN: true }), fc.constantFrom('tensor', 'global') as fc.Arbitrary<'tensor' | 'global'>, (ts, fraction, scope) => {
    const sel = selectTopK(ts, { fraction, scope });
    if (fraction === 1) return sel.every((s) => s === null);
    const kept: number[] = [];
    const dropped: number[] = [];
    let total = 0;
    for (let j = 0; j < ts.length; j++) {
      const s = sel[j]!;
      for (let i = 1; i < s.length; i++) if (s[i] <= s[i - 1]) return false;
      const set = new Set(s);
      const keptHere: number[] = [];
      const droppedHere: number[] = [];
      ts[j].forEach((v, i) => (set.has(i) ? keptHere : droppedHere).push(Math.abs(v)));
      if (keptHere.some((m) => m === 0)) return false;
      const nz = ts[j].filter((v) => v !== 0).length;
      if (scope === 'tensor') {
        if (s.length !== Math.min(Math.ceil(fraction * ts[j].length), nz)) return false;
        if (keptHere.length > 0 && droppedHere.length > 0 && Math.min(...keptHere) < Math.max(...droppedHere)) return false;
      }
      kept.push(...keptHere);
      dropped.push(...droppedHere);
      total += s.length;
    }
    if (scope === 'global') {
      const n = ts.reduce((s, a) => s + a.length, 0);
      const nz = ts.reduce((s, a) => s + a.filter((v) => v !== 0).length, 0);
      if (total !== Math.min(Math.ceil(fraction * n), nz)) return false;
      if (kept.length > 0 && dropped.length > 0 && Math.min(...kept) < Math.max(...dropped)) return false;
    }
    return true;
  }), RUNS);
  t.pass();
});
