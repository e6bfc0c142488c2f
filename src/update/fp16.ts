const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/** Largest finite IEEE-754 binary16 value. */
export const F16_MAX = 65504;

/**
 * IEEE-754 binary32 → binary16 bits, round to nearest even. Saturating: magnitudes beyond {@link F16_MAX}
 * (and ±Infinity) become ±65504, so the result is always finite. NaN is the caller's to refuse.
 */
export function f32ToF16Bits(v: number): number {
  F32[0] = v;
  const x = U32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7bff;
  const e = exp - 112;
  if (e >= 31) return sign | 0x7bff;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (half & 1) === 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1) === 1)) half++;
  if (half >= 0x7c00) half = 0x7bff;
  return sign | half;
}

const HALF_TABLE = (() => {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const s = (h & 0x8000) !== 0 ? -1 : 1;
    const e = (h >>> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 0) t[h] = s * m * 2 ** -24;
    else if (e === 31) t[h] = m === 0 ? s * Infinity : NaN;
    else t[h] = s * (1 + m / 1024) * 2 ** (e - 15);
  }
  return t;
})();

/** binary16 bits → number (NaN / ±Infinity for exponent 31: the decoder refuses those). */
export function f16BitsToF32(h: number): number {
  return HALF_TABLE[h & 0xffff];
}
