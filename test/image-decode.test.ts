/**
 * sharp decode to upright 8-bit RGB: orientation, colour types, alpha, animations, bad files and
 * decompression bombs. The images are built here, from known pixels; test/image-parity.test.ts
 * compares the same kinds of file with PIL.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import sharp from 'sharp';
import { decodeRgb, ImageError, readHeader, type DecodeOptions } from '../src/image/decode.js';
import type { CropBox } from '../src/image/buckets.js';
import { UserError } from '../src/core/errors.js';

const OPTS: DecodeOptions = { maxPixels: 100_000_000, background: '#ffffff', icc: 'ignore' };

interface Raw {
  data: Buffer;
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
}

/** Deterministic noise, so that any wrong flip, rotation or offset changes pixels. */
function noise(width: number, height: number, channels: Raw['channels'], seed = 1): Raw {
  const data = Buffer.alloc(width * height * channels);
  let s = seed;
  for (let k = 0; k < data.length; k++) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    data[k] = s >> 23;
  }
  return { data, width, height, channels };
}

const fromRaw = (r: Raw) => sharp(r.data, { raw: { width: r.width, height: r.height, channels: r.channels } });

async function decodeAll(bytes: Buffer, opts: DecodeOptions = OPTS) {
  const header = await readHeader(bytes, opts);
  const image = await decodeRgb(bytes, { x: 0, y: 0, w: header.width, h: header.height }, header, opts);
  return { header, image };
}

/**
 * The stored pixels of an image whose EXIF orientation is `o`, such that displaying them per the
 * EXIF definition gives `upright` (e.g. 6: the stored image is upright turned 90° anticlockwise,
 * since the viewer turns it 90° clockwise). Written here from the EXIF table, not with sharp.
 */
function storeForOrientation(upright: Raw, o: number): Raw {
  const { width: W, height: H, channels: c } = upright;
  const swap = o >= 5;
  const sw = swap ? H : W;
  const sh = swap ? W : H;
  const at: Record<number, (x: number, y: number) => [number, number]> = {
    1: (x, y) => [x, y],
    2: (x, y) => [W - 1 - x, y],
    3: (x, y) => [W - 1 - x, H - 1 - y],
    4: (x, y) => [x, H - 1 - y],
    5: (x, y) => [y, x],
    6: (x, y) => [y, W - 1 - x],
    7: (x, y) => [H - 1 - y, W - 1 - x],
    8: (x, y) => [H - 1 - y, x],
  };
  const data = Buffer.alloc(upright.data.length);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const [xs, ys] = at[o]!(x, y);
      upright.data.copy(data, (ys * sw + xs) * c, (y * W + x) * c, (y * W + x + 1) * c);
    }
  }
  return { data, width: sw, height: sh, channels: c };
}

test('EXIF orientations 1-8 decode upright: header and pixels', async () => {
  const upright = noise(24, 16, 3);
  for (let o = 1; o <= 8; o++) {
    const stored = storeForOrientation(upright, o);
    const png = await fromRaw(stored).withMetadata({ orientation: o }).png().toBuffer();
    const { header, image } = await decodeAll(png);
    assert.equal(header.orientation, o);
    assert.deepEqual([header.width, header.height, image.width, image.height], [24, 16, 24, 16], `orientation ${o}`);
    assert.ok(image.data.equals(upright.data), `orientation ${o}: pixels not upright`);
  }
  // JPEG (the usual camera case) with 6 and 8: portrait stored as landscape.
  for (const o of [6, 8]) {
    const jpeg = await fromRaw(storeForOrientation(noise(30, 40, 3), o)).withMetadata({ orientation: o }).jpeg().toBuffer();
    const { header, image } = await decodeAll(jpeg);
    assert.deepEqual([header.width, header.height, image.width, image.height], [30, 40, 30, 40]);
  }
});

test('a crop box is in upright coordinates, also for rotated images', async () => {
  const upright = noise(24, 16, 3, 5);
  const png = await fromRaw(storeForOrientation(upright, 6)).withMetadata({ orientation: 6 }).png().toBuffer();
  const header = await readHeader(png, OPTS);
  const crop: CropBox = { x: 5, y: 3, w: 10, h: 12 };
  const image = await decodeRgb(png, crop, header, OPTS);
  assert.deepEqual([image.width, image.height], [10, 12]);
  for (let y = 0; y < crop.h; y++) {
    const row = upright.data.subarray(((crop.y + y) * 24 + crop.x) * 3, ((crop.y + y) * 24 + crop.x + crop.w) * 3);
    assert.ok(image.data.subarray(y * crop.w * 3, (y + 1) * crop.w * 3).equals(row), `row ${y}`);
  }
});

test('grey, 16-bit, palette and CMYK become 8-bit RGB', async () => {
  // 8-bit grey: three equal channels.
  const grey = noise(20, 10, 1);
  const g = await decodeAll(await fromRaw(grey).png().toBuffer());
  for (let p = 0; p < 200; p++) assert.deepEqual([...g.image.data.subarray(p * 3, p * 3 + 3)], [grey.data[p], grey.data[p], grey.data[p]]);

  // 16-bit RGB: the high byte, as PIL reads 16-bit PNGs.
  const wide = new Uint16Array(64 * 3);
  for (let k = 0; k < wide.length; k++) wide[k] = (k * 5987) % 65536;
  const png16 = await sharp(wide, { raw: { width: 64, height: 1, channels: 3 } }).toColourspace('rgb16').png().toBuffer();
  assert.equal((await sharp(png16).metadata()).depth, 'ushort');
  const d16 = await decodeAll(png16);
  assert.deepEqual([...d16.image.data], [...wide].map((v) => v >> 8));

  // 16-bit grey: scaled to 8 bits (not clipped).
  const grey16 = await sharp(wide.subarray(0, 64), { raw: { width: 64, height: 1, channels: 1 } }).toColourspace('grey16').png().toBuffer();
  const dg16 = await decodeAll(grey16);
  for (let p = 0; p < 64; p++) assert.ok(Math.abs(dg16.image.data[p * 3]! - wide[p]! / 257) <= 1, `grey16 pixel ${p}`);

  // Palette: the palette colours.
  const flat = Buffer.alloc(16 * 16 * 3);
  for (let p = 0; p < 256; p++) flat.set(p % 3 === 0 ? [200, 30, 40] : [10, 120, 250], p * 3);
  const palette = await sharp(flat, { raw: { width: 16, height: 16, channels: 3 } }).png({ palette: true, colours: 2 }).toBuffer();
  assert.equal((await sharp(palette).metadata()).isPalette, true);
  assert.ok((await decodeAll(palette)).image.data.equals(flat));

  // CMYK JPEG: 3 channels; cyan-free white stays white, full K is black.
  const cmyk = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#ffffff' } })
    .composite([{ input: { create: { width: 4, height: 8, channels: 3, background: '#000000' } }, left: 0, top: 0 }])
    .toColourspace('cmyk').jpeg({ quality: 100 }).toBuffer();
  const c = await decodeAll(cmyk);
  assert.equal(c.header.space, 'cmyk');
  assert.equal(c.image.data.length, 8 * 8 * 3);
  assert.ok(c.image.data[7 * 3]! > 250 && c.image.data[0]! < 40, `white ${c.image.data[7 * 3]}, black ${c.image.data[0]}`);
});

test('alpha is flattened on the background colour: white by default, any colour on request', async () => {
  const rgba = noise(32, 8, 4, 9);
  for (let p = 0; p < 256; p++) rgba.data[p * 4 + 3] = p % 32 === 0 ? 0 : p % 32 === 31 ? 255 : (p % 32) * 8;
  for (const [format, bytes] of [
    ['png', await fromRaw(rgba).png().toBuffer()],
    ['webp', await fromRaw(rgba).webp({ lossless: true, exact: true }).toBuffer()],
  ] as const) {
    for (const [background, bg] of [['#ffffff', [255, 255, 255]], ['#ff8000', [255, 128, 0]], ['black', [0, 0, 0]]] as const) {
      const { header, image } = await decodeAll(bytes, { ...OPTS, background });
      assert.equal(header.hasAlpha, true);
      assert.equal(image.data.length, 32 * 8 * 3);
      for (let p = 0; p < 256; p++) {
        const px = [...image.data.subarray(p * 3, p * 3 + 3)];
        const src = [...rgba.data.subarray(p * 4, p * 4 + 3)];
        const a = rgba.data[p * 4 + 3]! / 255;
        if (a === 0) assert.deepEqual(px, bg, `${format} transparent on ${background}`);
        else if (a === 1) assert.deepEqual(px, src, `${format} opaque`);
        else for (let k = 0; k < 3; k++) assert.ok(Math.abs(px[k]! - (src[k]! * a + bg[k]! * (1 - a))) <= 0.5 + 1e-9, `${format} pixel ${p} on ${background}`);
      }
    }
  }
  // Grey + alpha.
  const la = Buffer.from([100, 0, 100, 255, 100, 128]);
  const { image } = await decodeAll(await sharp(la, { raw: { width: 3, height: 1, channels: 2 } }).png().toBuffer());
  assert.deepEqual([...image.data], [255, 255, 255, 100, 100, 100, 177, 177, 177]); // 100·128/255 + 255·127/255 = 177.2
  await assert.rejects(decodeAll(await fromRaw(rgba).png().toBuffer(), { ...OPTS, background: 'no-such-colour' }), UserError);
});

test('animated GIF and WebP: the first frame only', async () => {
  const frames = Buffer.alloc(10 * 30 * 3);
  for (let k = 0; k < 3; k++) for (let p = 0; p < 100; p++) frames[(k * 100 + p) * 3 + k] = 255; // red, green, blue frames
  for (const format of ['gif', 'webp'] as const) {
    const bytes = await sharp(frames, { raw: { width: 10, height: 30, channels: 3, pageHeight: 10 } })[format]().toBuffer();
    assert.equal((await sharp(bytes).metadata()).pages, 3);
    const { header, image } = await decodeAll(bytes);
    assert.deepEqual([header.width, header.height, image.width, image.height], [10, 10, 10, 10], format);
    for (let p = 0; p < 100; p++) {
      const [r, g, b] = image.data.subarray(p * 3, p * 3 + 3);
      assert.ok(r! > 240 && g! < 15 && b! < 15, `${format} pixel ${p}: ${r},${g},${b}`);
    }
  }
});

test('embedded ICC profiles: ignored by default (as PIL does), applied with icc convert', async () => {
  const srgb = noise(16, 16, 3, 4);
  // Pixels converted to Display P3 and tagged with that profile.
  const p3 = await fromRaw(srgb).withIccProfile('p3').png().toBuffer();
  assert.ok((await sharp(p3).metadata()).icc);
  const stored = await sharp(p3, { ignoreIcc: true }).raw().toBuffer();
  const ignored = (await decodeAll(p3)).image.data;
  const converted = (await decodeAll(p3, { ...OPTS, icc: 'convert' })).image.data;
  assert.ok(ignored.equals(stored), 'ignore: the stored values');
  const meanDiff = (a: Buffer, b: Buffer) => a.reduce((s, v, k) => s + Math.abs(v - b[k]!), 0) / a.length;
  assert.ok(meanDiff(stored, srgb.data) > 3, 'P3 values differ from sRGB');
  assert.ok(meanDiff(converted, srgb.data) < 1.5, `convert: back to sRGB (${meanDiff(converted, srgb.data)})`);
});

test('bad files fail with an ImageError naming the stage and the reason; the run is not stopped', async () => {
  const jpeg = await fromRaw(noise(64, 48, 3)).jpeg().toBuffer();
  const png = await fromRaw(noise(64, 48, 3)).png().toBuffer();
  const badCrc = Buffer.from(png);
  badCrc[badCrc.length - 20]! ^= 0xff;
  const cases: Array<[string, Buffer, 'read' | 'decode', RegExp]> = [
    ['zero bytes', Buffer.alloc(0), 'read', /empty file/],
    ['text named .jpg', Buffer.from('not an image\n'), 'decode', /not a readable image/],
    ['truncated JPEG', jpeg.subarray(0, Math.floor(jpeg.length * 0.6)), 'decode', /premature end|truncated/i],
    ['truncated PNG', png.subarray(0, Math.floor(png.length * 0.6)), 'decode', /read error|truncated/i],
    ['PNG with a corrupt CRC', badCrc, 'decode', /png/i],
    ['JPEG header only', jpeg.subarray(0, 200), 'decode', /./],
  ];
  for (const [name, bytes, stage, reason] of cases) {
    await assert.rejects(decodeAll(bytes), (e: unknown) => {
      assert.ok(e instanceof ImageError, `${name}: ${String(e)}`);
      assert.equal(e.stage, stage, name);
      assert.match(e.message, reason, name);
      assert.ok(!e.message.includes('\n'), name);
      return true;
    }, name);
  }
  // A 1x1 image is fine.
  const one = await decodeAll(await sharp({ create: { width: 1, height: 1, channels: 3, background: '#102030' } }).png().toBuffer());
  assert.deepEqual([...one.image.data], [16, 32, 48]);
});

test('decompression bombs are refused from the header, before any pixel is decoded; the limit is configurable', async () => {
  const png = await fromRaw(noise(40, 30, 3)).png().toBuffer();
  // Declared 100000 x 100000 (10 gigapixels) in a valid IHDR over the same tiny data.
  const bomb = Buffer.from(png);
  bomb.writeUInt32BE(100_000, 16);
  bomb.writeUInt32BE(100_000, 20);
  bomb.writeUInt32BE(zlib.crc32(bomb.subarray(12, 29)), 29);
  const started = process.hrtime.bigint();
  const rssBefore = process.memoryUsage().rss;
  await assert.rejects(readHeader(bomb, OPTS), (e: unknown) => e instanceof ImageError && e.stage === 'decode' &&
    /100000x100000 = 10000000000 pixels is over the limit of 100000000 \(--max-pixels\); not decoded/.test(e.message));
  assert.ok(Number(process.hrtime.bigint() - started) / 1e6 < 1000, 'refused quickly');
  assert.ok(process.memoryUsage().rss - rssBefore < 100e6, 'without allocating the pixels');
  // The same declared size in a JPEG frame header.
  const jpeg = await fromRaw(noise(40, 30, 3)).jpeg().toBuffer();
  const sof = jpeg.indexOf(Buffer.from([0xff, 0xc0]));
  const jbomb = Buffer.from(jpeg);
  jbomb.writeUInt16BE(60_000, sof + 5);
  jbomb.writeUInt16BE(60_000, sof + 7);
  await assert.rejects(readHeader(jbomb, OPTS), /60000x60000 = 3600000000 pixels is over the limit/);
  // Configurable: 40x30 = 1200 pixels.
  await assert.rejects(readHeader(png, { maxPixels: 1199 }), /1200 pixels is over the limit of 1199/);
  assert.equal((await readHeader(png, { maxPixels: 1200 })).width, 40);
  // decodeRgb enforces the limit too (for callers that skip the header check).
  const header = { width: 40, height: 30, format: 'png', orientation: 1, space: 'srgb', hasAlpha: false };
  await assert.rejects(decodeRgb(png, { x: 0, y: 0, w: 40, h: 30 }, header, { ...OPTS, maxPixels: 1000 }), ImageError);
});
