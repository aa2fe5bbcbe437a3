/**
 * --decode fast: a JPEG at least three times its bucket's size is decoded through sharp's
 * shrink-on-load (libjpeg's DCT scaling as sharp's own resize to the bucket picks it, then the
 * least reduce sharp allows), then the exact filter; anything else is decoded as in exact mode.
 * The choice is in the preprocessing record (so the fingerprint and shard metadata) only when fast.
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

test('fast decodes a JPEG at 1/(s + 1) of its size, s the DCT scaling sharp picks for the bucket, whole frames only', async () => {
  const header = await readHeader(await photo(), EXACT);
  const size = (w: number, h: number) => fastDecodeSize(header, whole(header), bucket(w, h));
  // 1200x800: the smaller shrink of the two sides decides.
  assert.deepEqual(size(128, 80), { width: 133, height: 88 }, 'shrink 9.4: 1/8');
  assert.deepEqual(size(128, 96), { width: 240, height: 160 }, 'shrink 8.3: sharp halves 1/8 to 1/4');
  assert.deepEqual(size(240, 160), { width: 240, height: 160 }, 'shrink 5: 1/4');
  assert.deepEqual(size(248, 160), { width: 400, height: 266 }, 'shrink 4.8: 1/2');
  assert.deepEqual(size(224, 224), { width: 400, height: 266 }, 'shrink 3.6: 1/2');
  assert.deepEqual(size(400, 266), { width: 400, height: 266 }, 'shrink 3: 1/2');
  assert.equal(size(408, 266), undefined, 'shrink 2.9: decoded whole');
  assert.equal(fastDecodeSize(header, { x: 100, y: 0, w: 1000, h: 800 }, bucket(128, 80)), undefined, 'a crop');
  assert.equal(fastDecodeSize({ ...header, format: 'png' }, whole(header), bucket(128, 80)), undefined, 'not a JPEG');
});

/**
 * Shrink-on-load is really used: the frame equals sharp's own shrink-on-load resize and differs
 * from the same resize of the fully decoded frame (raw input cannot shrink on load) by more than
 * the same filters would without it (measured mean 1.02 levels at both orientations; limit 0.5).
 */
test('fast: the frame comes from libjpeg shrinking on load, and EXIF 6 is still folded into the resampler', async (t) => {
  for (const orientation of [1, 6]) {
    const bytes = await photo(orientation);
    const header = await readHeader(bytes, EXACT);
    const out = bucket(orientation === 6 ? 128 : 192, orientation === 6 ? 192 : 128);
    const size = fastDecodeSize(header, whole(header), out)!;
    const frame = await decodeStored(bytes, whole(header), header, FAST, size);
    assert.deepEqual([frame.width, frame.height], [240, 160], 'decoded as stored, at 1/5 of the source (shrink 6.25: DCT scaling 1/4)');
    assert.equal(frame.axes.transposed, orientation === 6);
    const onLoad = await sharp(bytes).resize(240, 160, { fit: 'fill' }).raw().toBuffer();
    assert.ok(frame.data.equals(onLoad), 'not sharp\'s shrink-on-load path');
    const full = await sharp(bytes).raw().toBuffer({ resolveWithObject: true });
    const afterFullDecode = await sharp(full.data, { raw: full.info }).resize(240, 160, { fit: 'fill' }).raw().toBuffer();
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
    // Measured mean 4.7e-3 in normalised units (about a fifth of an 8-bit level): close, not equal.
    assert.ok(mean > 2e-3 && mean < 1e-2, `mean |fast - exact| ${mean}`);
    const png = await sharp(jpeg).png().toBuffer();
    assert.deepEqual((await fast.prepare(png)).pixels, (await exact.prepare(png)).pixels);
  } finally {
    await exact.close();
    await fast.close();
  }
});

test('the record names the decode only when fast: exact records stay as before, fast ones read back as fast, the earlier fast rule does not', () => {
  const info = MODEL;
  const base: PrepareSettings = { buckets: [bucket(224, 224)], resize: 'stretch', dinoScale: 1, decode: EXACT };
  assert.equal('decode' in describePreprocessing(info, base), false);
  const fast = { ...base, decode: FAST };
  const record = describePreprocessing(info, fast);
  assert.match(JSON.stringify(record), /"orientation":"exif","decode":"fast-dct"}$/);
  const parsed = parsePreprocessing(JSON.parse(JSON.stringify(record)));
  assert.ok('value' in parsed);
  assert.deepEqual(prepareSettingsOf(parsed.value, FAST.maxPixels), fast);
  assert.deepEqual(parsePreprocessing({ ...record, decode: 'fast' }), { problem: 'preprocessing record lacks or garbles decode="fast"' });
});
