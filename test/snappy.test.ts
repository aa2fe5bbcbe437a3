/**
 * Our snappy decoder against an independent encoder (hysnappy's, the C++ snappy compiled to WASM)
 * on the kinds of page Parquet files hold: incompressible image bytes (long literals), repetitive
 * bytes (copies, overlapping ones included), and a hand-made stream with a 4-byte-offset copy,
 * which that encoder never writes. Corrupt streams throw instead of returning wrong bytes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { snappyCompress } from 'hysnappy';
import { snappyDecompress } from '../src/source/snappy.js';

function roundTrip(data: Uint8Array): void {
  const packed = snappyCompress(data);
  assert.deepEqual(Buffer.from(snappyDecompress(packed, data.length)), Buffer.from(data));
}

test('incompressible bytes (a JPEG page) come back exactly', () => {
  roundTrip(crypto.randomBytes(3 * 2 ** 20 + 17));
});

test('repetitive bytes: short and long copies, overlapping ones, and short literals between them', () => {
  const text = Buffer.from('abcabcabcabc '.repeat(5000) + 'x'.repeat(70_000) + 'the quick brown fox '.repeat(3000));
  const packed = snappyCompress(text);
  assert.ok(packed.length < text.length / 10, 'the encoder wrote copies');
  roundTrip(text);
  // Runs of one byte, then random bytes, then the runs again (copies reaching back over 64 KiB blocks).
  const mixed = Buffer.concat([Buffer.alloc(100_000, 7), crypto.randomBytes(200_000), Buffer.alloc(100_000, 7), crypto.randomBytes(33)]);
  roundTrip(mixed);
  roundTrip(new Uint8Array(0));
  roundTrip(Buffer.from('a'));
});

test('a copy with a 4-byte offset, and a literal with a 2-byte length', () => {
  const literal = crypto.randomBytes(300);
  // varint 320 | literal of 300 (tag 61<<2: one length byte... 2 bytes here: tag 61, len-1 = 299 LE) | copy 20 bytes from 300 back, 4-byte offset
  const stream = Buffer.concat([Buffer.from([0xc0, 0x02]), Buffer.from([61 << 2, 299 & 0xff, 299 >> 8]), literal, Buffer.from([((20 - 1) << 2) | 3, 300 & 0xff, 300 >> 8, 0, 0])]);
  const out = snappyDecompress(stream, 320);
  assert.deepEqual(Buffer.from(out.subarray(0, 300)), literal);
  assert.deepEqual(Buffer.from(out.subarray(300)), literal.subarray(0, 20));
});

test('corrupt streams throw', () => {
  const data = Buffer.from('hello hello hello hello hello hello hello '.repeat(100));
  const packed = snappyCompress(data);
  assert.throws(() => snappyDecompress(packed, data.length + 1), /corrupt snappy page: it holds/);
  assert.throws(() => snappyDecompress(packed.subarray(0, packed.length - 3), data.length), /corrupt snappy page/);
  // A copy reaching before the start of the output.
  assert.throws(() => snappyDecompress(Buffer.from([8, (4 << 2) | 2, 9, 0]), 8), /copy from offset 9 at output byte 0/);
  assert.throws(() => snappyDecompress(Buffer.from([0x80]), 0), /bad length header/);
});
