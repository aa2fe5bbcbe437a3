/**
 * Weight encodings for the low-precision models. int8: symmetric, one scale per output channel
 * (DynamicQuantizeMatMul quantises activations itself at run time). int4: com.microsoft
 * MatMulNBits layout, per output row n and block b of 32 inputs: 16 bytes, element 2t in the low
 * nibble of byte t and 2t+1 in the high nibble, stored as q = round(w/scale) + 8 (the default
 * zero point when no zero_points input is given), dequantised as (q - 8)·scale.
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

/** w is [out, inn] (checkpoint layout); returns packed [out, blocks, 16] bytes and [out*blocks] scales. */
export function quantizeInt4Blocks(w: Float32Array, out: number, inn: number): { packed: Uint8Array; scales: Float32Array } {
  const blocks = Math.ceil(inn / INT4_BLOCK);
  const packed = new Uint8Array(out * blocks * (INT4_BLOCK / 2));
  const scales = new Float32Array(out * blocks);
  const q = new Uint8Array(INT4_BLOCK);
  for (let n = 0; n < out; n++) {
    for (let b = 0; b < blocks; b++) {
      const start = b * INT4_BLOCK;
      const end = Math.min(start + INT4_BLOCK, inn);
      // Symmetric around the zero point 8, so q - 8 spans [-7, 7] over the block's largest magnitude.
      let amax = 0;
      for (let k = start; k < end; k++) amax = Math.max(amax, Math.abs(w[n * inn + k]!));
      const scale = amax === 0 ? 1 : amax / 7;
      scales[n * blocks + b] = scale;
      q.fill(8);
      for (let k = start; k < end; k++) q[k - start] = Math.min(15, Math.max(0, Math.round(w[n * inn + k]! / scale) + 8));
      const base = (n * blocks + b) * (INT4_BLOCK / 2);
      for (let t = 0; t < INT4_BLOCK / 2; t++) packed[base + t] = q[2 * t]! | (q[2 * t + 1]! << 4);
    }
  }
  return { packed, scales };
}
