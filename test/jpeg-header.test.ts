import { test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { readJpegHeader } from '../src/image/jpeg-header.js';

const SPACE_OF = { 1: 'b-w', 3: 'srgb', 4: 'cmyk' } as const;

/** sharp's own reading of the same bytes, in readJpegHeader's terms. */
async function sharpSays(bytes: Buffer) {
  const m = await sharp(bytes).metadata();
  return { width: m.width, height: m.height, space: m.space, orientation: m.orientation ?? 1 };
}

/** A JPEG with `segments` (APPn bodies, marker first) inserted right after SOI. */
function withSegments(jpeg: Buffer, segments: Array<[number, Buffer]>): Buffer {
  const parts = segments.map(([marker, body]) => Buffer.concat([Buffer.from([0xff, marker, (body.length + 2) >> 8, (body.length + 2) & 0xff]), body]));
  return Buffer.concat([jpeg.subarray(0, 2), ...parts, jpeg.subarray(2)]);
}

/** An EXIF APP1 body whose IFD0 holds `entries` ([tag, type, count, value]), in either byte order. */
function exif(entries: Array<[number, number, number, number]>, little: boolean): Buffer {
  const tiff = Buffer.alloc(8 + 2 + entries.length * 12 + 4);
  const u16 = (v: number, at: number) => (little ? tiff.writeUInt16LE(v, at) : tiff.writeUInt16BE(v, at));
  const u32 = (v: number, at: number) => (little ? tiff.writeUInt32LE(v, at) : tiff.writeUInt32BE(v, at));
  tiff.write(little ? 'II' : 'MM', 0, 'latin1');
  u16(42, 2);
  u32(8, 4);
  u16(entries.length, 8);
  entries.forEach(([tag, type, count, value], e) => {
    u16(tag, 10 + e * 12);
    u16(type, 12 + e * 12);
    u32(count, 14 + e * 12);
    u16(value, 18 + e * 12);
  });
  return Buffer.concat([Buffer.from('Exif\0\0', 'latin1'), tiff]);
}

test('a plain JPEG is read from its markers as sharp reads it: size, channels, every EXIF orientation, both byte orders', async () => {
  const rgb = await sharp({ create: { width: 37, height: 23, channels: 3, background: '#336699' } }).jpeg().toBuffer();
  const cases: Array<[string, Buffer]> = [
    ['no EXIF', rgb],
    ['progressive', await sharp(rgb).jpeg({ progressive: true }).toBuffer()],
    ['greyscale', await sharp(rgb).greyscale().jpeg().toBuffer()],
    ['CMYK', await sharp(rgb).toColourspace('cmyk').jpeg().toBuffer()],
  ];
  for (let o = 1; o <= 8; o++) cases.push([`orientation ${o}, written by sharp`, await sharp(rgb).withMetadata({ orientation: o }).jpeg().toBuffer()]);
  for (const little of [true, false]) {
    cases.push([`orientation 6, ${little ? 'little' : 'big'}-endian`, withSegments(rgb, [[0xe1, exif([[0x010f, 2, 1, 0], [0x0112, 3, 1, 6]], little)]])]);
  }
  for (const [name, bytes] of cases) {
    const mine = readJpegHeader(bytes);
    assert.ok(mine, `${name}: read from the markers`);
    const theirs = await sharpSays(bytes);
    assert.deepEqual({ width: mine.width, height: mine.height, space: SPACE_OF[mine.components], orientation: mine.orientation }, theirs, name);
  }
});

test('anything but the plain case is left to sharp', async () => {
  const rgb = await sharp({ create: { width: 37, height: 23, channels: 3, background: '#336699' } }).jpeg().toBuffer();
  const cases: Array<[string, Buffer]> = [
    ['not a JPEG', await sharp(rgb).png().toBuffer()],
    ['cut inside the header', rgb.subarray(0, 30)],
    ['EXIF without an orientation in IFD0', withSegments(rgb, [[0xe1, exif([[0x010f, 2, 1, 0]], true)]])],
    ['an orientation that is not one SHORT', withSegments(rgb, [[0xe1, exif([[0x0112, 4, 1, 6]], true)]])],
    ['an orientation out of 1-8', withSegments(rgb, [[0xe1, exif([[0x0112, 3, 1, 9]], true)]])],
    ['two EXIF blocks', withSegments(rgb, [[0xe1, exif([[0x0112, 3, 1, 6]], true)], [0xe1, exif([[0x0112, 3, 1, 3]], true)]])],
    ['an EXIF directory past its block', withSegments(rgb, [[0xe1, exif([[0x0112, 3, 1, 6]], true).subarray(0, 20)]])],
  ];
  // A 12-bit frame: the precision byte of the SOF0 segment changed.
  const sof = rgb.indexOf(Buffer.from([0xff, 0xc0]));
  const twelveBit = Buffer.from(rgb);
  twelveBit[sof + 4] = 12;
  cases.push(['12 bits a sample', twelveBit]);
  for (const [name, bytes] of cases) assert.equal(readJpegHeader(bytes), undefined, name);
});
