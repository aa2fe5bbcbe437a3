/**
 * Snappy decompression for Parquet pages of image bytes. JPEG/PNG/WebP bytes do not compress, so a
 * snappy page of images is almost all long literals (one per 64 KiB block): copying those with
 * `Uint8Array.set` makes decompression about a memcpy. hysnappy (hyparquet-compressors' default)
 * builds a new WASM instance per page and copies in and out; hyparquet's own decoder copies byte by
 * byte; both measured slower (README, "Why hyparquet-writer and not parquetjs-lite").
 *
 * Format: a varint of the uncompressed length, then elements: a literal (tag 00, length in the tag
 * or in 1–4 following bytes) or a copy of earlier output (tags 01/10/11: 1-, 2- or 4-byte offset).
 */

/** Below this many bytes a loop beats the call into `set` / `copyWithin`. */
const SHORT = 16;

function fail(why: string): never {
  throw new Error(`corrupt snappy page: ${why}`);
}

/** Decompresses `input` into a new array of `outputLength` bytes (the page header's size). */
export function snappyDecompress(input: Uint8Array, outputLength: number): Uint8Array {
  let pos = 0;
  let declared = 0;
  for (let shift = 0; ; shift += 7) {
    if (pos >= input.length || shift > 28) fail('bad length header');
    const b = input[pos++]!;
    declared += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) break;
  }
  if (declared !== outputLength) fail(`it holds ${declared} bytes, the page header says ${outputLength}`);
  // Every byte is written below (checked at the end), so the buffer need not be zeroed first.
  const out = Buffer.allocUnsafeSlow(outputLength);
  let at = 0;
  while (pos < input.length) {
    const tag = input[pos++]!;
    const kind = tag & 3;
    if (kind === 0) {
      let len = (tag >>> 2) + 1;
      if (len > 60) {
        const bytes = len - 60;
        if (pos + bytes > input.length) fail('literal length cut off');
        len = 0;
        for (let k = 0; k < bytes; k++) len += input[pos + k]! * 2 ** (8 * k);
        len += 1;
        pos += bytes;
      }
      if (pos + len > input.length) fail('literal runs past the input');
      if (at + len > outputLength) fail('output longer than declared');
      if (len < SHORT) for (let k = 0; k < len; k++) out[at + k] = input[pos + k]!;
      else out.set(input.subarray(pos, pos + len), at);
      pos += len;
      at += len;
      continue;
    }
    let len: number;
    let offset: number;
    if (kind === 1) {
      if (pos >= input.length) fail('copy cut off');
      len = ((tag >>> 2) & 7) + 4;
      offset = ((tag >>> 5) << 8) | input[pos++]!;
    } else {
      const bytes = kind === 2 ? 2 : 4;
      if (pos + bytes > input.length) fail('copy cut off');
      len = (tag >>> 2) + 1;
      offset = 0;
      for (let k = 0; k < bytes; k++) offset += input[pos + k]! * 2 ** (8 * k);
      pos += bytes;
    }
    if (offset === 0 || offset > at) fail(`copy from offset ${offset} at output byte ${at}`);
    if (at + len > outputLength) fail('output longer than declared');
    // An offset shorter than the length repeats the last `offset` bytes: that must go byte by byte.
    if (offset >= len && len >= SHORT) out.copyWithin(at, at - offset, at - offset + len);
    else for (let k = 0; k < len; k++) out[at + k] = out[at - offset + k]!;
    at += len;
  }
  if (at !== outputLength) fail(`${at} of ${outputLength} bytes`);
  return out;
}
