/**
 * --decode fast: a JPEG at least twice its bucket's size is decoded at twice the bucket through
 * sharp's shrink-on-load, then the exact filter; anything else is decoded as in exact mode. The
 * choice is in the preprocessing record (so the fingerprint and shard metadata) only when fast.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import type { Bucket, CropBox } from '../src/image/buckets.js';
import { decodeStored, fastDecodeSize, readHeader, type DecodeOptions, type ImageHeader } from '../src/image/decode.js';
import type { PrepareSettings } from '../src/image/prepare-settings.js';
import { describePreprocessing, parsePreprocessing, prepareSettingsOf } from '../src/image/preprocessing-record.js';
import { createImagePreparer } from '../src/pipeline/prepare.js';
import { MODEL } from './fixtures/feature-rows.js';
import { structuredRgb } from './fixtures/images.js';

const EXACT: DecodeOptions = { maxPixels: 100_000_000, background: '#ffffff', icc: 'ignore' };
const FAST: DecodeOptions = { ...EXACT, mode: 'fast' };

/** A 1200x800 JPEG with detail at every scale (structure plus grain), stored rotated (EXIF 6). */
async function photo(orientation = 1): Promise<Buffer> {
  const [w, h] = [1200, 800];
  const px = structuredRgb(w, h, 5);
  let s = 7;
  for (let k = 0; k < px.length; k++) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    px[k] = Math.max(0, Math.min(255, px[k]! + (s % 41) - 20));
  }
  return sharp(px, { raw: { width: w, height: h, channels: 3 } }).withMetadata({ orientation }).jpeg({ quality: 92 }).toBuffer();
}

const whole = (h: ImageHeader): CropBox => ({ x: 0, y: 0, w: h.width, h: h.height });
const bucket = (width: number, height: number): Bucket => ({ width, height, trainer: { width, height } });

test('fast decodes a JPEG at twice the bucket only when the bucket is at most half of it on both sides, whole frames only', async () => {
  const header = await readHeader(await photo(), EXACT);
  assert.deepEqual(fastDecodeSize(header, whole(header), bucket(224, 224)), { width: 448, height: 448 });
  assert.deepEqual(fastDecodeSize(header, whole(header), bucket(600, 400)), { width: 1200, height: 800 });
  assert.equal(fastDecodeSize(header, whole(header), bucket(608, 400)), undefined, 'more than half the width');
  assert.equal(fastDecodeSize(header, { x: 100, y: 0, w: 1000, h: 800 }, bucket(224, 224)), undefined, 'a crop');
  assert.equal(fastDecodeSize({ ...header, format: 'png' }, whole(header), bucket(224, 224)), undefined, 'not a JPEG');
});

/**
 * Shrink-on-load is really used: the frame equals sharp's own shrink-on-load resize and differs
 * from the same resize of the fully decoded frame (raw input cannot shrink on load) by more than
 * the same filters would without it (measured mean 0.97 levels at both orientations; limit 0.5).
 */
test('fast: the frame comes from libjpeg shrinking on load, and EXIF 6 is still folded into the resampler', async (t) => {
  for (const orientation of [1, 6]) {
    const bytes = await photo(orientation);
    const header = await readHeader(bytes, EXACT);
    const out = bucket(orientation === 6 ? 128 : 192, orientation === 6 ? 192 : 128);
    const size = fastDecodeSize(header, whole(header), out)!;
    const frame = await decodeStored(bytes, whole(header), header, FAST, size);
    assert.deepEqual([frame.width, frame.height], [384, 256], 'decoded as stored, at twice the bucket');
    assert.equal(frame.axes.transposed, orientation === 6);
    const onLoad = await sharp(bytes).resize(384, 256, { fit: 'fill' }).raw().toBuffer();
    assert.ok(frame.data.equals(onLoad), 'not sharp\'s shrink-on-load path');
    const full = await sharp(bytes).raw().toBuffer({ resolveWithObject: true });
    const afterFullDecode = await sharp(full.data, { raw: full.info }).resize(384, 256, { fit: 'fill' }).raw().toBuffer();
    let sum = 0;
    for (let k = 0; k < onLoad.length; k++) sum += Math.abs(onLoad[k]! - afterFullDecode[k]!);
    t.diagnostic(`EXIF ${orientation}: shrink-on-load vs full decode, mean |d| ${(sum / onLoad.length).toFixed(2)} levels`);
    assert.ok(sum / onLoad.length > 0.5, `mean ${sum / onLoad.length}: no sign of shrink-on-load`);
  }
});

test('fast vs exact pixels: close for a large JPEG, identical where fast does not apply (PNG)', async (t) => {
  const settings = (decode: DecodeOptions): PrepareSettings => ({ buckets: [bucket(96, 64)], resize: 'stretch', dinoScale: 1, decode });
  const exact = await createImagePreparer(MODEL, settings(EXACT));
  const fast = await createImagePreparer(MODEL, settings(FAST));
  try {
    const jpeg = await photo(6);
    const [a, b] = [await exact.prepare(jpeg), await fast.prepare(jpeg)];
    let sum = 0;
    for (let k = 0; k < a.pixels.length; k++) sum += Math.abs(a.pixels[k]! - b.pixels[k]!);
    const mean = sum / a.pixels.length;
    t.diagnostic(`mean |fast - exact| ${mean.toExponential(2)}`);
    // Measured mean 3.9e-3 in normalised units (about a fifth of an 8-bit level): close, not equal.
    assert.ok(mean > 1e-4 && mean < 2e-2, `mean |fast - exact| ${mean}`);
    const png = await sharp(jpeg).png().toBuffer();
    assert.deepEqual((await fast.prepare(png)).pixels, (await exact.prepare(png)).pixels);
  } finally {
    await exact.close();
    await fast.close();
  }
});

test('the record names the decode only when fast: exact records stay as before, fast ones read back as fast', () => {
  const info = MODEL;
  const base: PrepareSettings = { buckets: [bucket(224, 224)], resize: 'stretch', dinoScale: 1, decode: EXACT };
  assert.equal('decode' in describePreprocessing(info, base), false);
  const fast = { ...base, decode: FAST };
  const record = describePreprocessing(info, fast);
  assert.match(JSON.stringify(record), /"orientation":"exif","decode":"fast"}$/);
  const parsed = parsePreprocessing(JSON.parse(JSON.stringify(record)));
  assert.ok('value' in parsed);
  assert.deepEqual(prepareSettingsOf(parsed.value, FAST.maxPixels), fast);
  assert.deepEqual(parsePreprocessing({ ...record, decode: 'quick' }), { problem: 'preprocessing record lacks or garbles decode="quick"' });
});
