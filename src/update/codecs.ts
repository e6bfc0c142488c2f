import { Rng } from '../util/rng.ts';
import { UpdateError, UpdateRefusal, check } from './errors.ts';
import { f16BitsToF32, f32ToF16Bits } from './fp16.ts';
import { IndexCodec, ValueCodec } from './pb/update.ts';
import { varintSize, writeVarint } from './varint.ts';

export { IndexCodec, ValueCodec };

/** Smallest quantization block accepted on the wire. */
export const MIN_BLOCK_SIZE = 8;
/** Largest quantization block accepted on the wire. */
export const MAX_BLOCK_SIZE = 65536;
/**
 * Default quantization block: 128 values share one f32 scale (0.25 bit/value of overhead). Block-wise absmax
 * scaling as in Dettmers et al., "8-bit Optimizers via Block-wise Quantization" (ICLR 2022), who use 2048;
 * smaller blocks suit LoRA factors of a few hundred values.
 */
export const DEFAULT_BLOCK_SIZE = 128;

/**
 * Default block of the scaled-sign codec: 1024 values share one mean-|x| scale, so every vit-tiny LoRA or head
 * tensor (at most 640 values) has one scale. Sign coding keeps 1 bit per value, so per-block scales would be
 * the largest overhead (a 128-value block adds a quarter bit per value).
 */
export const DEFAULT_SIGN_BLOCK_SIZE = 1024;

/** The block size a codec uses when neither the caller nor the wire (block_size 0) names one. */
export function defaultBlockSize(codec: ValueCodec): number {
  return codec === ValueCodec.VALUE_SIGN ? DEFAULT_SIGN_BLOCK_SIZE : DEFAULT_BLOCK_SIZE;
}

/** Options for a value encoder. */
export interface ValueEncodeOptions {
  /** Values per quantization block (Q8/Q4); default {@link DEFAULT_BLOCK_SIZE}. */
  blockSize?: number;
  /** Source of the stochastic-rounding draws (Q8/Q4). Required unless `stochastic` is false. */
  rng?: Rng;
  /** Stochastic (unbiased) rounding, default true; false rounds to nearest (biased, half the error). */
  stochastic?: boolean;
}

/** What the value decoder needs besides the bytes: taken from the (already range-checked) TensorDelta. */
export interface ValueDecodeParams {
  /** Number of values coded. */
  count: number;
  /** Block size from the wire (Q8/Q4), else ignored. */
  blockSize: number;
}

/** A value codec: one wire enum value, a byte layout, an encoder and a validating decoder. */
export interface ValueCodecImpl {
  readonly id: ValueCodec;
  /** Bits per value, excluding per-block scales. */
  readonly bits: number;
  /** Bytes `encode` produces for `count` values. */
  byteLength(count: number, blockSize: number): number;
  encode(values: Float32Array, opts?: ValueEncodeOptions): { bytes: Uint8Array; blockSize: number };
  /** Decode and validate; throws only {@link UpdateError}. */
  decode(bytes: Uint8Array, params: ValueDecodeParams): Float32Array;
}

/** An index codec: positions of the transmitted values of a sparse tensor. */
export interface IndexCodecImpl {
  readonly id: IndexCodec;
  /** Bytes `encode` produces for these strictly increasing positions in a tensor of `n` elements. */
  byteLength(indices: Uint32Array, n: number): number;
  encode(indices: Uint32Array, n: number): Uint8Array;
  /** Decode and validate (strictly increasing, all < n, exactly nnz); throws only {@link UpdateError}. */
  decode(bytes: Uint8Array, n: number, nnz: number): Uint32Array;
}

const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;
/** 2^-32: turns a uniform u32 into a uniform draw in [0, 1) (32 bits are plenty for stochastic rounding). */
const U32_UNIT = 2 ** -32;

function assertFinite(values: Float32Array): void {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) {
      throw new UpdateError(UpdateRefusal.INVALID_ARGUMENT, `value ${i} is ${values[i]}; updates must be finite`);
    }
  }
}

const f32Codec: ValueCodecImpl = {
  id: ValueCodec.VALUE_F32,
  bits: 32,
  byteLength: (count) => count * 4,
  encode(values) {
    assertFinite(values);
    if (LITTLE_ENDIAN) return { bytes: new Uint8Array(Float32Array.from(values).buffer), blockSize: 0 };
    const out = new Uint8Array(values.length * 4);
    const dv = new DataView(out.buffer);
    for (let i = 0; i < values.length; i++) dv.setFloat32(i * 4, values[i], true);
    return { bytes: out, blockSize: 0 };
  },
  decode(bytes, { count }) {
    check(bytes.length === count * 4, UpdateRefusal.BAD_LENGTH, () => `f32 values: ${bytes.length} bytes for ${count} values`);
    let out: Float32Array;
    if (LITTLE_ENDIAN) {
      out = new Float32Array(count);
      new Uint8Array(out.buffer).set(bytes);
    } else {
      const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      out = Float32Array.from({ length: count }, (_, i) => dv.getFloat32(i * 4, true));
    }
    for (let i = 0; i < count; i++) {
      if (!Number.isFinite(out[i])) throw new UpdateError(UpdateRefusal.NON_FINITE, `f32 value ${i} is not finite`);
    }
    return out;
  },
};

const f16Codec: ValueCodecImpl = {
  id: ValueCodec.VALUE_F16,
  bits: 16,
  byteLength: (count) => count * 2,
  encode(values) {
    assertFinite(values);
    const out = new Uint8Array(values.length * 2);
    for (let i = 0; i < values.length; i++) {
      const h = f32ToF16Bits(values[i]);
      out[2 * i] = h & 0xff;
      out[2 * i + 1] = h >>> 8;
    }
    return { bytes: out, blockSize: 0 };
  },
  decode(bytes, { count }) {
    check(bytes.length === count * 2, UpdateRefusal.BAD_LENGTH, () => `f16 values: ${bytes.length} bytes for ${count} values`);
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) {
      const h = bytes[2 * i] | (bytes[2 * i + 1] << 8);
      check((h & 0x7c00) !== 0x7c00, UpdateRefusal.NON_FINITE, () => `f16 value ${i} is not finite`);
      out[i] = f16BitsToF32(h);
    }
    return out;
  },
};

/**
 * Layout shared by the block-scaled codecs (Q8, Q4, SIGN): ⌈n/bs⌉ little-endian f32 block scales, then the
 * codec's payload. Validates the block size (a caller error) and allocates the output.
 */
function blockedLayout(n: number, bs: number, payloadBytes: number): { out: Uint8Array; scales: DataView; payload: Uint8Array; nb: number } {
  check(Number.isInteger(bs) && bs >= MIN_BLOCK_SIZE && bs <= MAX_BLOCK_SIZE, UpdateRefusal.INVALID_ARGUMENT,
    `block size ${bs} outside [${MIN_BLOCK_SIZE}, ${MAX_BLOCK_SIZE}]`);
  const nb = Math.ceil(n / bs);
  const out = new Uint8Array(4 * nb + payloadBytes);
  return { out, scales: new DataView(out.buffer), payload: out.subarray(4 * nb), nb };
}

/**
 * The decoding side of {@link blockedLayout}: validates the wire block size and the byte length, and returns the
 * payload and a reader of block b's scale that refuses non-finite or negative scales.
 */
function blockedParse(bytes: Uint8Array, count: number, blockSize: number, payloadBytes: number, what: string): { payload: Uint8Array; nb: number; scale: (b: number) => number } {
  check(Number.isInteger(blockSize) && blockSize >= MIN_BLOCK_SIZE && blockSize <= MAX_BLOCK_SIZE,
    UpdateRefusal.BAD_CODEC_PARAMS, () => `block size ${blockSize} outside [${MIN_BLOCK_SIZE}, ${MAX_BLOCK_SIZE}]`);
  const nb = Math.ceil(count / blockSize);
  check(bytes.length === 4 * nb + payloadBytes, UpdateRefusal.BAD_LENGTH,
    () => `${what} values: ${bytes.length} bytes for ${count} values in blocks of ${blockSize}`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const scale = (b: number): number => {
    const v = dv.getFloat32(4 * b, true);
    check(Number.isFinite(v), UpdateRefusal.NON_FINITE, () => `${what} block ${b} scale is not finite`);
    check(v >= 0, UpdateRefusal.BAD_CODEC_PARAMS, () => `${what} block ${b} scale is negative`);
    return v;
  };
  return { payload: bytes.subarray(4 * nb), nb, scale };
}

/**
 * Block-wise absmax stochastic quantization to `levels` = 2^(bits-1) - 1 symmetric steps (QSGD-style,
 * Alistarh et al., NeurIPS 2017, with per-block scales). Unbiased: E[decode] = x. Error per value < scale/levels
 * (stochastic) or ≤ scale/(2·levels) (nearest).
 */
function quantCodec(id: ValueCodec, bits: 8 | 4): ValueCodecImpl {
  const levels = (1 << (bits - 1)) - 1;
  const codeBytes = (count: number): number => (bits === 8 ? count : Math.ceil(count / 2));
  return {
    id,
    bits,
    byteLength: (count, bs) => 4 * Math.ceil(count / bs) + codeBytes(count),
    encode(values, opts = {}) {
      assertFinite(values);
      const bs = opts.blockSize ?? DEFAULT_BLOCK_SIZE;
      const stochastic = opts.stochastic ?? true;
      const rng = opts.rng;
      if (stochastic && rng === undefined) {
        throw new UpdateError(UpdateRefusal.INVALID_ARGUMENT, `${bits}-bit stochastic quantization needs an rng (pass opts.rng)`);
      }
      const n = values.length;
      const { out, scales, payload: codes, nb } = blockedLayout(n, bs, codeBytes(n));
      for (let b = 0; b < nb; b++) {
        const lo = b * bs;
        const hi = Math.min(n, lo + bs);
        let amax = 0;
        for (let i = lo; i < hi; i++) {
          const a = Math.abs(values[i]);
          if (a > amax) amax = a;
        }
        scales.setFloat32(4 * b, amax, true);
        const scale = Math.fround(amax);
        const inv = scale > 0 ? levels / scale : 0;
        for (let i = lo; i < hi; i++) {
          const q = values[i] * inv;
          let c = stochastic ? Math.floor(q + rng!.nextU32() * U32_UNIT) : Math.round(q);
          if (c > levels) c = levels;
          else if (c < -levels) c = -levels;
          if (bits === 8) codes[i] = c & 0xff;
          else codes[i >> 1] |= (c & 0xf) << ((i & 1) * 4);
        }
      }
      return { bytes: out, blockSize: bs };
    },
    decode(bytes, { count, blockSize }) {
      const { payload: codes, nb, scale } = blockedParse(bytes, count, blockSize, codeBytes(count), `q${bits}`);
      const out = new Float32Array(count);
      for (let b = 0; b < nb; b++) {
        const step = scale(b) / levels;
        const lo = b * blockSize;
        const hi = Math.min(count, lo + blockSize);
        for (let i = lo; i < hi; i++) {
          let c: number;
          if (bits === 8) c = (codes[i] << 24) >> 24;
          else c = (((codes[i >> 1] >> ((i & 1) * 4)) & 0xf) << 28) >> 28;
          check(c >= -levels, UpdateRefusal.NON_FINITE, () => `q${bits} code ${c} at ${i} outside [-${levels}, ${levels}]`);
          out[i] = c * step;
        }
      }
      if (bits === 4 && count % 2 === 1) {
        check((codes[codes.length - 1] & 0xf0) === 0, UpdateRefusal.BAD_LENGTH, 'q4 padding nibble is not zero');
      }
      return out;
    },
  };
}

/**
 * Block-wise scaled sign, 1 bit per value (signSGD with a per-block scale; with error feedback it converges like
 * the uncompressed method: Karimireddy et al., "Error Feedback Fixes SignSGD", ICML 2019). The block scale is the
 * mean |x|, the least-squares scale for the signs; a value decodes to ±scale (zero encodes as +). Deterministic and
 * biased, so it is meant to run with error feedback. For the near-uniform magnitudes of AdamW-trained deltas it
 * keeps more of the update's energy per byte than top-k with 8-bit values.
 */
const signCodec: ValueCodecImpl = {
  id: ValueCodec.VALUE_SIGN,
  bits: 1,
  byteLength: (count, bs) => 4 * Math.ceil(count / bs) + Math.ceil(count / 8),
  encode(values, opts = {}) {
    assertFinite(values);
    const bs = opts.blockSize ?? DEFAULT_SIGN_BLOCK_SIZE;
    const n = values.length;
    const { out, scales, payload: signs, nb } = blockedLayout(n, bs, Math.ceil(n / 8));
    for (let b = 0; b < nb; b++) {
      const lo = b * bs;
      const hi = Math.min(n, lo + bs);
      let sum = 0;
      for (let i = lo; i < hi; i++) sum += Math.abs(values[i]);
      scales.setFloat32(4 * b, sum / (hi - lo), true);
      for (let i = lo; i < hi; i++) if (values[i] < 0) signs[i >> 3] |= 1 << (i & 7);
    }
    return { bytes: out, blockSize: bs };
  },
  decode(bytes, { count, blockSize }) {
    const { payload: signs, nb, scale: scaleOf } = blockedParse(bytes, count, blockSize, Math.ceil(count / 8), 'sign');
    if (count % 8 !== 0) check((signs[signs.length - 1] >> (count % 8)) === 0, UpdateRefusal.BAD_LENGTH, 'sign padding bits are not zero');
    const out = new Float32Array(count);
    for (let b = 0; b < nb; b++) {
      const scale = scaleOf(b);
      const hi = Math.min(count, (b + 1) * blockSize);
      for (let i = b * blockSize; i < hi; i++) out[i] = (signs[i >> 3] >> (i & 7)) & 1 ? -scale : scale;
    }
    return out;
  },
};

/** Varint byte size of the gap coding of `indices`. */
function deltaVarintSize(indices: Uint32Array): number {
  let size = 0;
  let prev = -1;
  for (let i = 0; i < indices.length; i++) {
    size += varintSize(indices[i] - prev - 1);
    prev = indices[i];
  }
  return size;
}

const deltaVarintCodec: IndexCodecImpl = {
  id: IndexCodec.INDEX_DELTA_VARINT,
  byteLength: (indices) => deltaVarintSize(indices),
  encode(indices) {
    const out = new Uint8Array(deltaVarintSize(indices));
    let pos = 0;
    let prev = -1;
    for (let i = 0; i < indices.length; i++) {
      pos = writeVarint(out, pos, indices[i] - prev - 1);
      prev = indices[i];
    }
    return out;
  },
  decode(bytes, n, nnz) {
    const out = new Uint32Array(nnz);
    let pos = 0;
    let prev = -1;
    for (let k = 0; k < nnz; k++) {
      let v = 0;
      let shift = 0;
      for (;;) {
        check(pos < bytes.length, UpdateRefusal.BAD_INDEX, () => `index varints end after ${k} of ${nnz}`);
        const b = bytes[pos++];
        check(shift < 28 || (b & 0xf0) === 0, UpdateRefusal.BAD_INDEX, 'index varint exceeds 32 bits');
        v += (b & 0x7f) * 2 ** shift;
        if ((b & 0x80) === 0) break;
        shift += 7;
      }
      const idx = prev + 1 + v;
      check(idx < n, UpdateRefusal.BAD_INDEX, () => `index ${idx} out of range [0, ${n})`);
      out[k] = idx;
      prev = idx;
    }
    check(pos === bytes.length, UpdateRefusal.BAD_INDEX, () => `${bytes.length - pos} trailing bytes after ${nnz} index varints`);
    return out;
  },
};

const bitmapCodec: IndexCodecImpl = {
  id: IndexCodec.INDEX_BITMAP,
  byteLength: (_indices, n) => Math.ceil(n / 8),
  encode(indices, n) {
    const out = new Uint8Array(Math.ceil(n / 8));
    for (let i = 0; i < indices.length; i++) out[indices[i] >>> 3] |= 1 << (indices[i] & 7);
    return out;
  },
  decode(bytes, n, nnz) {
    check(bytes.length === Math.ceil(n / 8), UpdateRefusal.BAD_LENGTH, () => `bitmap of ${bytes.length} bytes for ${n} elements`);
    if (n % 8 !== 0 && bytes.length > 0) {
      check((bytes[bytes.length - 1] >> (n % 8)) === 0, UpdateRefusal.BAD_INDEX, 'bitmap has bits set past the tensor end');
    }
    const out = new Uint32Array(nnz);
    let k = 0;
    for (let byte = 0; byte < bytes.length; byte++) {
      let b = bytes[byte];
      while (b !== 0) {
        const bit = 31 - Math.clz32(b & -b);
        check(k < nnz, UpdateRefusal.BAD_INDEX, () => `bitmap has more than nnz=${nnz} bits set`);
        out[k++] = byte * 8 + bit;
        b &= b - 1;
      }
    }
    check(k === nnz, UpdateRefusal.BAD_INDEX, () => `bitmap has ${k} bits set, nnz says ${nnz}`);
    return out;
  },
};

/** Largest Golomb-Rice parameter accepted on the wire (gaps of a 2^26-element tensor need at most 26 bits). */
export const MAX_RICE_K = 20;

/** Bits of the Rice code of `indices` with parameter k (without the k byte and padding). */
function riceBits(indices: Uint32Array, k: number): number {
  let bits = indices.length * (k + 1);
  let prev = -1;
  for (let i = 0; i < indices.length; i++) {
    bits += (indices[i] - prev - 1) >>> k;
    prev = indices[i];
  }
  return bits;
}

/** The Rice parameter in [0, MAX_RICE_K] with the fewest bits (ties: the smaller k) and that bit count. */
function bestRiceK(indices: Uint32Array): { k: number; bits: number } {
  if (lastRice.indices === indices && lastRice.length === indices.length) return lastRice.best;
  let best = { k: 0, bits: riceBits(indices, 0) };
  for (let k = 1; k <= MAX_RICE_K; k++) {
    const bits = riceBits(indices, k);
    if (bits >= best.bits) break; // the cost is convex in k: Δ(k) = nnz - Σ ceil((g >> k) / 2) never decreases
    best = { k, bits };
  }
  lastRice = { indices, length: indices.length, best };
  return best;
}
/** chooseIndexCodec then encode ask for the same k: remember the last answer (keyed by array identity). */
let lastRice: { indices: Uint32Array | null; length: number; best: { k: number; bits: number } } = { indices: null, length: 0, best: { k: 0, bits: 0 } };

/**
 * Golomb-Rice gap coding (Golomb 1966, Rice 1979): byte 0 is k; then per gap g (first position, then
 * position - previous - 1) the quotient g >> k in unary as one-bits closed by a zero bit, then the k low bits of
 * g, least significant first. Bits are packed LSB-first (bit j of the stream is bit j & 7 of byte j >> 3); the
 * last byte is padded with zero bits. Near-optimal for geometric gaps, i.e. positions spread like top-k picks.
 */
const riceCodec: IndexCodecImpl = {
  id: IndexCodec.INDEX_RICE,
  byteLength: (indices) => 1 + Math.ceil(bestRiceK(indices).bits / 8),
  encode(indices) {
    const { k } = bestRiceK(indices);
    const bits = riceBits(indices, k); // recounted: the cached k stays valid (if not optimal) for a reused array
    const out = new Uint8Array(1 + Math.ceil(bits / 8));
    out[0] = k;
    let p = 8;
    let prev = -1;
    const mask = k === 0 ? 0 : (2 ** k) - 1;
    for (let i = 0; i < indices.length; i++) {
      const g = indices[i] - prev - 1;
      prev = indices[i];
      for (let q = g >>> k; q > 0; q--, p++) out[p >>> 3] |= 1 << (p & 7);
      p++; // terminating zero bit
      if (k > 0) {
        // k <= 20 bits at offset <= 7: at most 27 bits, i.e. 4 bytes (writes past the end are dropped; they are 0)
        const v = (g & mask) << (p & 7);
        const at = p >>> 3;
        out[at] |= v & 0xff;
        out[at + 1] |= (v >>> 8) & 0xff;
        out[at + 2] |= (v >>> 16) & 0xff;
        out[at + 3] |= v >>> 24;
        p += k;
      }
    }
    return out;
  },
  decode(bytes, n, nnz) {
    check(bytes.length >= 1, UpdateRefusal.BAD_LENGTH, 'rice indices without the parameter byte');
    const k = bytes[0];
    check(k <= MAX_RICE_K, UpdateRefusal.BAD_CODEC_PARAMS, () => `rice parameter ${k} > ${MAX_RICE_K}`);
    const end = bytes.length * 8;
    const len = bytes.length;
    const unit = 2 ** k;
    const mask = unit - 1;
    const out = new Uint32Array(nnz);
    let p = 8;
    let prev = -1;
    for (let i = 0; i < nnz; i++) {
      // the quotient may not point past the tensor: prev + 1 + q * 2^k < n
      const maxQ = Math.floor((n - prev - 2) / unit);
      let q = 0;
      for (;;) {
        check(p < end, UpdateRefusal.BAD_INDEX, () => `rice indices end after ${i} of ${nnz}`);
        const sh = p & 7;
        const rest = bytes[p >>> 3] >>> sh; // 8 - sh stream bits, zero-extended
        const ones = 31 - Math.clz32(~rest & (rest + 1)); // trailing one-bits of rest
        if (ones < 8 - sh) {
          q += ones;
          p += ones + 1;
          break;
        }
        q += 8 - sh;
        p += 8 - sh;
        check(q <= maxQ, UpdateRefusal.BAD_INDEX, () => `rice gap ${i} runs past the tensor end (${n})`);
      }
      check(q <= maxQ, UpdateRefusal.BAD_INDEX, () => `rice gap ${i} runs past the tensor end (${n})`);
      let low = 0;
      if (k > 0) {
        check(p + k <= end, UpdateRefusal.BAD_INDEX, () => `rice indices end inside gap ${i} of ${nnz}`);
        const at = p >>> 3;
        const w = bytes[at] | (at + 1 < len ? bytes[at + 1] << 8 : 0) | (at + 2 < len ? bytes[at + 2] << 16 : 0) | (at + 3 < len ? bytes[at + 3] << 24 : 0);
        low = (w >>> (p & 7)) & mask;
        p += k;
      }
      const idx = prev + 1 + q * unit + low;
      check(idx < n, UpdateRefusal.BAD_INDEX, () => `index ${idx} out of range [0, ${n})`);
      out[i] = idx;
      prev = idx;
    }
    check(bytes.length === Math.ceil(p / 8), UpdateRefusal.BAD_INDEX, () => `${bytes.length - Math.ceil(p / 8)} trailing bytes after ${nnz} rice gaps`);
    check((p & 7) === 0 || (bytes[bytes.length - 1] >>> (p & 7)) === 0, UpdateRefusal.BAD_LENGTH, 'rice padding bits are not zero');
    return out;
  },
};

/** Every value codec; {@link assertCodecRegistry} checks it covers the wire enum exactly once. */
const VALUE_CODECS: readonly ValueCodecImpl[] = [f32Codec, f16Codec, quantCodec(ValueCodec.VALUE_Q8, 8), quantCodec(ValueCodec.VALUE_Q4, 4), signCodec];
/** Every sparse index codec (INDEX_DENSE carries no bytes and has no codec). */
const INDEX_CODECS: readonly IndexCodecImpl[] = [deltaVarintCodec, bitmapCodec, riceCodec];

/**
 * Start-up check: every wire enum value (except the reserved 0 = unspecified / dense) has exactly one codec,
 * and no codec claims an id outside the enum. Throws a plain Error: this is a programming error, not input.
 */
export function assertCodecRegistry(): void {
  const want = (e: Record<string, unknown>, skip: string): string[] =>
    Object.values(e).filter((v): v is string => typeof v === 'string' && v !== skip);
  const one = (ids: string[], have: readonly { id: string }[], what: string): void => {
    for (const id of ids) {
      const n = have.filter((c) => c.id === id).length;
      if (n !== 1) throw new Error(`${what} registry: ${n} codecs for wire id ${id}, expected exactly 1`);
    }
    for (const c of have) if (!ids.includes(c.id)) throw new Error(`${what} registry: codec id ${c.id} is not in the wire enum`);
  };
  one(want(ValueCodec as unknown as Record<string, unknown>, ValueCodec.VALUE_CODEC_UNSPECIFIED), VALUE_CODECS, 'value codec');
  one(want(IndexCodec as unknown as Record<string, unknown>, IndexCodec.INDEX_DENSE), INDEX_CODECS, 'index codec');
}
assertCodecRegistry();

const VALUE_BY_ID = new Map(VALUE_CODECS.map((c) => [c.id, c]));
const INDEX_BY_ID = new Map(INDEX_CODECS.map((c) => [c.id, c]));

/** The value codec for a wire id; throws {@link UpdateError} UNKNOWN_CODEC for unspecified / unknown ids. */
export function valueCodec(id: ValueCodec): ValueCodecImpl {
  const c = VALUE_BY_ID.get(id);
  if (c === undefined) throw new UpdateError(UpdateRefusal.UNKNOWN_CODEC, `no value codec for ${String(id)}`);
  return c;
}

/** The index codec for a wire id; throws {@link UpdateError} UNKNOWN_CODEC for unknown ids. */
export function indexCodec(id: IndexCodec): IndexCodecImpl {
  const c = INDEX_BY_ID.get(id);
  if (c === undefined) throw new UpdateError(UpdateRefusal.UNKNOWN_CODEC, `no index codec for ${String(id)}`);
  return c;
}

/** Value bit widths offered to users (`--bits`): 32 = f32, 16 = f16, 8 / 4 = stochastic block quantization, 1 = scaled sign. */
export type ValueBits = 32 | 16 | 8 | 4 | 1;

/** The wire codec for a bit width. */
export function valueCodecForBits(bits: ValueBits): ValueCodec {
  switch (bits) {
    case 32: return ValueCodec.VALUE_F32;
    case 16: return ValueCodec.VALUE_F16;
    case 8: return ValueCodec.VALUE_Q8;
    case 4: return ValueCodec.VALUE_Q4;
    case 1: return ValueCodec.VALUE_SIGN;
    default: throw new UpdateError(UpdateRefusal.INVALID_ARGUMENT, `bits must be 32, 16, 8, 4 or 1, got ${String(bits)}`);
  }
}

/**
 * Index coding for a sparse tensor: INDEX_DENSE when every element is sent, else the smallest of bitmap,
 * delta-varint and Golomb-Rice (ties go to the faster decoder: bitmap, then delta-varint, then Rice).
 */
export function chooseIndexCodec(indices: Uint32Array, n: number): IndexCodec {
  if (indices.length === n) return IndexCodec.INDEX_DENSE;
  let best = IndexCodec.INDEX_BITMAP;
  let size = Math.ceil(n / 8);
  const varint = deltaVarintSize(indices);
  if (varint < size) { best = IndexCodec.INDEX_DELTA_VARINT; size = varint; }
  if (riceCodec.byteLength(indices, n) < size) best = IndexCodec.INDEX_RICE;
  return best;
}
