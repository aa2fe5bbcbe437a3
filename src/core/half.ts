/**
 * float32 <-> IEEE float16 conversion for whole arrays (fp16 weights, float16 shards).
 * float32 → float16 rounds to nearest even; both directions handle subnormals, inf and NaN.
 */
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Lookup table: every one of the 65536 half bit patterns as float32 (256 KiB, built once). */
const HALF_TO_FLOAT = (() => {
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) table[h] = sign * mant * 2 ** -24;
    else if (exp === 31) table[h] = mant ? NaN : sign * Infinity;
    else table[h] = sign * (1 + mant / 1024) * 2 ** (exp - 15);
  }
  return table;
})();

export function float16ToFloat32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  for (let k = 0; k < src.length; k++) out[k] = HALF_TO_FLOAT[src[k]!]!;
  return out;
}

function toHalfBits(x: number): number {
  f32[0] = x;
  const bits = u32[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // inf / NaN (quiet)
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00; // overflow → inf
  if (e <= 0) {
    if (e < -10) return sign; // underflows to ±0
    // Subnormal half: shift the mantissa (with its implicit 1) and round to nearest even.
    const m = mant | 0x800000;
    const shift = 14 - e;
    const half = m >>> shift;
    const rest = m & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    return sign | (half + (rest > mid || (rest === mid && half & 1) ? 1 : 0));
  }
  const half = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (up to inf).
  return sign | (half + (rest > 0x1000 || (rest === 0x1000 && half & 1) ? 1 : 0));
}

/**
 * Normal halves are converted on the bits alone: rebias the exponent, then round the 13 dropped
 * mantissa bits to nearest even by adding 0xfff plus the lowest kept bit (a carry correctly bumps
 * the exponent, up to inf). This loop runs over every feature value written, so it avoids the
 * per-value call; subnormals (|x| < 2^-14, rare in features) take the exact general path.
 */
export function float32ToFloat16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let k = 0; k < bits.length; k++) {
    const x = bits[k]!;
    const a = x & 0x7fffffff;
    if (a < 0x38800000) out[k] = toHalfBits(src[k]!);
    else if (a >= 0x47800000) out[k] = ((x >>> 16) & 0x8000) | (a > 0x7f800000 ? 0x7e00 : 0x7c00);
    else out[k] = ((x >>> 16) & 0x8000) | ((a - 0x38000000 + 0xfff + ((a >>> 13) & 1)) >>> 13);
  }
  return out;
}
