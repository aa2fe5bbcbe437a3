/**
 * Weight encodings for the low-precision models.
 * int8: symmetric, one scale per output channel, for com.microsoft DynamicQuantizeMatMul (which
 * quantises the activations itself at run time).
 * int4: com.microsoft MatMulNBits layout, asymmetric per block of 32 inputs. For output row n and
 * block b: 16 bytes, element 2t in the low nibble of byte t and 2t+1 in the high nibble; one
 * float scale; a 4-bit zero point, two blocks per byte (low nibble = even block). Dequantised as
 * (q - zero_point) · scale.
 */
export const INT4_BLOCK = 32;

/** w is [inn, out] (MatMul layout); returns int8 values of the same layout and [out] scales. */
export function quantizeInt8PerColumn(w: Float32Array, inn: number, out: number): { values: Int8Array; scales: Float32Array } {
  const scales = new Float32Array(out);
  for (let k = 0; k < inn; k++) {
    for (let o = 0; o < out; o++) scales[o] = Math.max(scales[o]!, Math.abs(w[k * out + o]!));
  }
  for (let o = 0; o < out; o++) scales[o] = scales[o]! / 127 || 1;
  const values = new Int8Array(w.length);
  for (let k = 0; k < inn; k++) {
    for (let o = 0; o < out; o++) values[k * out + o] = Math.round(w[k * out + o]! / scales[o]!);
  }
  return { values, scales };
}

export interface Int4Weights {
  /** [out, blocks, INT4_BLOCK / 2] */
  packed: Uint8Array;
  /** [out * blocks] */
  scales: Float32Array;
  /** [out * ceil(blocks / 2)] */
  zeroPoints: Uint8Array;
}

/**
 * Range [lo, hi] shrink factors tried per block; the one with the least squared error wins.
 * Clipping a block's extremes a little often lowers the error of all its other values.
 */
const RANGE_SHRINK = [1, 0.95, 0.9, 0.85, 0.8, 0.75];

const clamp4 = (v: number) => Math.min(15, Math.max(0, v));

/** w is [out, inn] (checkpoint layout). Blocks past `inn` are padded with the zero point. */
export function quantizeInt4Blocks(w: Float32Array, out: number, inn: number): Int4Weights {
  const blocks = Math.ceil(inn / INT4_BLOCK);
  const zpStride = Math.ceil(blocks / 2);
  const packed = new Uint8Array(out * blocks * (INT4_BLOCK / 2));
  const scales = new Float32Array(out * blocks);
  const zeroPoints = new Uint8Array(out * zpStride);
  const q = new Uint8Array(INT4_BLOCK);
  for (let n = 0; n < out; n++) {
    for (let b = 0; b < blocks; b++) {
      const start = n * inn + b * INT4_BLOCK;
      const end = n * inn + Math.min((b + 1) * INT4_BLOCK, inn);
      // The range always holds 0, so that zero weights stay exact.
      let lo = 0;
      let hi = 0;
      for (let k = start; k < end; k++) {
        lo = Math.min(lo, w[k]!);
        hi = Math.max(hi, w[k]!);
      }
      let bestErr = Infinity;
      let scale = 1;
      let zp = 8;
      for (const f of RANGE_SHRINK) {
        if (hi === lo) break;
        const s = ((hi - lo) * f) / 15;
        const z = clamp4(Math.round((-lo * f) / s));
        let err = 0;
        for (let k = start; k < end; k++) err += (w[k]! - (clamp4(Math.round(w[k]! / s) + z) - z) * s) ** 2;
        if (err < bestErr) {
          bestErr = err;
          scale = s;
          zp = z;
        }
      }
      scales[n * blocks + b] = scale;
      zeroPoints[n * zpStride + (b >> 1)]! |= zp << ((b & 1) * 4);
      q.fill(zp);
      for (let k = start; k < end; k++) q[k - start] = clamp4(Math.round(w[k]! / scale) + zp);
      const base = (n * blocks + b) * (INT4_BLOCK / 2);
      for (let t = 0; t < INT4_BLOCK / 2; t++) packed[base + t] = q[2 * t]! | (q[2 * t + 1]! << 4);
    }
  }
  return { packed, scales, zeroPoints };
}
