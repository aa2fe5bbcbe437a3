/**
 * float32 <-> IEEE float16 conversion for whole arrays (fp16 weights, float16 shards).
 * float32 → float16 rounds to nearest even; both directions handle subnormals, inf and NaN.
 */
import { HALF_WASM } from './half-wasm.js';
import { instantiateKernel } from './wasm.js';

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

/** half.wat's layout: up to CHUNK float32 values at 0, their float16 bits at HALVES_AT. */
const CHUNK = 32768;
const HALVES_AT = 131072;

interface HalfKernel {
  floats: Float32Array;
  halves: Uint16Array;
  toHalf(n: number): void;
}

let kernel: HalfKernel | undefined;

/** One instance per thread, compiled on first use; its memory never grows, so the views stay valid. */
function halfKernel(): HalfKernel {
  if (!kernel) {
    const exports = instantiateKernel<{ memory: { buffer: ArrayBuffer }; toHalf(n: number): void }>(HALF_WASM);
    kernel = {
      floats: new Float32Array(exports.memory.buffer, 0, CHUNK),
      halves: new Uint16Array(exports.memory.buffer, HALVES_AT, CHUNK),
      toHalf: exports.toHalf,
    };
  }
  return kernel;
}

/**
 * Every feature value written goes through here (a ViT-S row at 1024² is 1.6 M values; extract
 * does it on its row encoder thread, shard/row-encoder.ts), so whole groups of four go through
 * half.wat (SIMD, the same rounding) in chunks that stay in cache: 3.1 → 1.8–1.9 ms for that row
 * (bench-host.mjs). The last few values take the general path.
 */
export function float32ToFloat16(src: Float32Array): Uint16Array {
  const out = new Uint16Array(src.length);
  const simd = src.length - (src.length % 4);
  if (simd > 0) {
    const wasm = halfKernel();
    for (let k = 0; k < simd; k += CHUNK) {
      const n = Math.min(CHUNK, simd - k);
      wasm.floats.set(src.subarray(k, k + n));
      wasm.toHalf(n);
      out.set(wasm.halves.subarray(0, n), k);
    }
  }
  for (let k = simd; k < src.length; k++) out[k] = toHalfBits(src[k]!);
  return out;
}
