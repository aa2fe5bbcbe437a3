/**
 * extract's image-stage flags through the CLI, each checked against what it must change: the
 * buckets and crop boxes `--dino-scale` gives (the row keeps the DINO grid, the record maps it to
 * the trainer's bucket), the SDXL default and `--buckets auto`, `--background` on a transparent
 * image, `--icc convert` on an image tagged Display P3, and `--list FILE`.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { TINY_TEST_MODEL } from '../src/convert/test-model.js';
import { readErrorsFile, summaryCounts } from './fixtures/cache-reads.js';
import { structuredImage, structuredRgb, writeStructured } from './fixtures/images.js';
import { maxAbsDiff, readShardTable, recordedPreprocessing, shardRowsByKey } from './fixtures/shard-table.js';
import { makeTinyModel } from './fixtures/tiny-model.js';
import { runCli } from './helpers/cli.js';
import type { Completed } from './helpers/process.js';
import { tempDir } from './helpers/temp.js';

const PATCH = TINY_TEST_MODEL.patchSize;
const HIDDEN = TINY_TEST_MODEL.hiddenSize;

let dir: string;
let model: string;
/** land.jpg 200x100, port.png 90x150, square.jpg 128x128, wide.png 300x100, tall.jpg 60x140. */
let images: string;

before(async () => {
  dir = tempDir();
  model = (await makeTinyModel(dir)).onnx;
  images = path.join(dir, 'images');
  let seed = 1;
  for (const [key, w, h] of [['land.jpg', 200, 100], ['port.png', 90, 150], ['square.jpg', 128, 128], ['wide.png', 300, 100], ['tall.jpg', 60, 140]] as const) {
    await writeStructured(path.join(images, key), w, h, seed++);
  }
});

async function extract(inputs: string[], out: string, ...flags: string[]): Promise<Completed> {
  const r = await runCli(['extract', ...inputs, '--out', out, '--model', model, '--quiet', ...flags]);
  assert.equal(r.code, 0, `extract ${flags.join(' ')} exited ${r.code}:\n${r.stdout}${r.stderr}`);
  return r;
}

/** key → [bucket WxH, grid HxW, crop x,y,w,h] as stored. */
async function layout(out: string): Promise<Record<string, string[]>> {
  const rows = await readShardTable(out);
  return Object.fromEntries(rows.map((r) => [r.key, [
    `${r.bucket_width}x${r.bucket_height}`, `${r.grid_h}x${r.grid_w}`, [r.crop_x, r.crop_y, r.crop_w, r.crop_h].join(),
  ]]));
}

test('--dino-scale 0.5 with --resize cover: trainer buckets off the patch grid are accepted, DINO runs at half size rounded to patches, crops keep the trainer aspect', async () => {
  // Unscaled, 104x64 is not whole patches of 16 and is refused.
  const refused = await runCli(['extract', images, '--out', path.join(dir, 'refused'), '--model', model, '--bucket', '104x64']);
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /--bucket 104x64 is not a multiple of the model's patch size 16/);

  // between.png (1.45) is nearer 48x32's aspect (1.5) than 64x48's (1.333), but nearer the trainer
  // bucket 128x96 (1.333) than 104x64 (1.625): the trainer's buckets decide.
  const extra = path.join(dir, 'half-extra');
  await writeStructured(path.join(extra, 'between.png'), 145, 100, 21);
  const out = path.join(dir, 'cache-half');
  const buckets = ['104x64', '64x104', '96x96', '128x96'].flatMap((b) => ['--bucket', b]);
  const r = await extract([images, extra], out, ...buckets, '--dino-scale', '0.5', '--resize', 'cover', '--dtype', 'float32');
  // 104x64 → 52x32 → 48x32 (52/16 = 3.25 patches rounds to 3); 64x104 → 32x48; 96x96 → 48x48; 128x96 → 64x48.
  const record = recordedPreprocessing(out);
  assert.deepEqual(record.buckets, ['104x64→48x32', '64x104→32x48', '96x96→48x48', '128x96→64x48']);
  assert.deepEqual([record.dinoScale, record.resize], [0.5, 'cover']);
  // Rows hold the DINO input size and its grid; the crop is the centred box of the trainer
  // bucket's aspect (104:64 = 1.625, not the DINO input's 1.5), worked out by hand (halves up):
  // land 200x100: w = round(100·104/64) = round(162.5) = 163, x = ⌊37/2⌋ = 18; wide 300x100:
  // w = 163, x = 68. port 90x150 and tall 60x140 are narrower than 64:104, so the full width:
  // port h = round(90·104/64) = 146, y = 2; tall h = round(97.5) = 98, y = 21. between 145x100
  // in 4:3: w = round(133.3) = 133, x = 6.
  assert.deepEqual(await layout(out), {
    'between.png': ['64x48', '3x4', '6,0,133,100'],
    'land.jpg': ['48x32', '2x3', '18,0,163,100'],
    'port.png': ['32x48', '3x2', '0,2,90,146'],
    'square.jpg': ['48x48', '3x3', '0,0,128,128'],
    'tall.jpg': ['32x48', '3x2', '0,21,60,98'],
    'wide.png': ['48x32', '2x3', '68,0,163,100'],
  });
  for (const row of await readShardTable(out)) {
    assert.equal(row.patch_bytes, row.grid_h * row.grid_w * HIDDEN * 4, `${row.key}: [grid_h, grid_w, hidden] float32`);
    assert.deepEqual([row.bucket_width / PATCH, row.bucket_height / PATCH], [row.grid_w, row.grid_h]);
  }
  // The summary counts per DINO input size (equal counts in no fixed order).
  const perBucket = /per bucket: (.*)\n/.exec(r.stdout)?.[1]?.split(', ').sort();
  assert.deepEqual(perBucket, ['32x48: 2', '48x32: 2', '48x48: 1', '64x48: 1']);
});

test('no bucket flags: the SDXL set, each image in the SDXL bucket of its aspect ratio', async () => {
  const few = path.join(dir, 'sdxl');
  fs.mkdirSync(few);
  // 1.667 is 1280x768 and 0.6 is 768x1280 exactly; 1:1 is 1024x1024.
  await writeStructured(path.join(few, 'land.png'), 100, 60, 11);
  await writeStructured(path.join(few, 'port.png'), 60, 100, 12);
  await writeStructured(path.join(few, 'square.png'), 50, 50, 13);
  const out = path.join(dir, 'cache-sdxl');
  await extract([few], out);
  const buckets = recordedPreprocessing(out).buckets;
  assert.equal(buckets.length, 41, 'SDXL lists 41 buckets');
  assert.deepEqual([buckets[0], buckets[20], buckets[40]], ['512x2048→512x2048', '1024x1024→1024x1024', '2048x512→2048x512']);
  assert.deepEqual(await layout(out), {
    'land.png': ['1280x768', '48x80', '0,0,100,60'],
    'port.png': ['768x1280', '80x48', '0,0,60,100'],
    'square.png': ['1024x1024', '64x64', '0,0,50,50'],
  });
});

test('--buckets auto --bucket-area 4096 --bucket-step 16: the area grid, each image in the nearest aspect', async () => {
  const out = path.join(dir, 'cache-auto');
  await extract([images], out, '--buckets', 'auto', '--bucket-area', '4096', '--bucket-step', '16');
  // Sides 32..128 (half and twice √4096), each width with the tallest multiple of 16 whose area is
  // at most 4096, aspect at most 4.
  assert.deepEqual(recordedPreprocessing(out).buckets, ['32x128', '48x80', '64x64', '80x48', '96x32', '112x32', '128x32'].map((b) => `${b}→${b}`));
  assert.deepEqual(Object.fromEntries(Object.entries(await layout(out)).map(([k, v]) => [k, v[0]])), {
    'land.jpg': '80x48', // 2: ln(2/1.667) = 0.18 beats ln(3/2) = 0.41
    'port.png': '48x80', // 0.6 exactly
    'square.jpg': '64x64',
    'tall.jpg': '48x80', // 0.43: ln(0.6/0.43) = 0.34 beats ln(0.43/0.25) = 0.54
    'wide.png': '96x32', // 3 exactly
  });
});

/** RGBA pixels: structured, with a transparent left third and an opaque rest (alpha 0 or 255, so flattening needs no rounding). */
function halfTransparent(width: number, height: number, seed: number): Buffer {
  const rgb = structuredRgb(width, height, seed);
  const rgba = Buffer.alloc(width * height * 4);
  for (let p = 0; p < width * height; p++) {
    rgb.copy(rgba, p * 4, p * 3, p * 3 + 3);
    rgba[p * 4 + 3] = p % width < width / 3 ? 0 : 255;
  }
  return rgba;
}

/** The same pixels with the transparent ones replaced by `bg`, opaque RGB. */
function flattenedOn(rgba: Buffer, bg: readonly [number, number, number]): Buffer {
  const rgb = Buffer.alloc((rgba.length / 4) * 3);
  for (let p = 0; p < rgba.length / 4; p++) {
    for (let c = 0; c < 3; c++) rgb[p * 3 + c] = rgba[p * 4 + 3] === 0 ? bg[c]! : rgba[p * 4 + c]!;
  }
  return rgb;
}

test('--background #ff0000: a transparent PNG is seen on red (as the same image flattened on red beforehand), the default on white', async () => {
  const [w, h] = [96, 64];
  const few = path.join(dir, 'alpha');
  fs.mkdirSync(few);
  const rgba = halfTransparent(w, h, 31);
  await sharp(rgba, { raw: { width: w, height: h, channels: 4 } }).png().toFile(path.join(few, 'alpha.png'));
  await sharp(flattenedOn(rgba, [255, 0, 0]), { raw: { width: w, height: h, channels: 3 } }).png().toFile(path.join(few, 'on-red.png'));
  await sharp(flattenedOn(rgba, [255, 255, 255]), { raw: { width: w, height: h, channels: 3 } }).png().toFile(path.join(few, 'on-white.png'));

  const caches = { white: path.join(dir, 'cache-white'), red: path.join(dir, 'cache-red') };
  await extract([few], caches.white, '--bucket', '96x64', '--dtype', 'float32');
  await extract([few], caches.red, '--bucket', '96x64', '--dtype', 'float32', '--background', '#ff0000');
  assert.equal(recordedPreprocessing(caches.white).background, '#ffffff');
  assert.equal(recordedPreprocessing(caches.red).background, '#ff0000');

  const cls = async (out: string) => new Map([...(await shardRowsByKey(out))].map(([k, r]) => [k, r.cls]));
  const white = await cls(caches.white);
  const red = await cls(caches.red);
  // Same pixels give the same CLS up to ONNX Runtime's batch arithmetic (measured 0; 1e-5 allows
  // for another batch make-up); the backgrounds differ by 1.25 measured (bound 0.5); the opaque
  // images do not depend on the flag.
  const SAME = 1e-5;
  assert.ok(maxAbsDiff(red.get('alpha.png')!, red.get('on-red.png')!) <= SAME, 'on red with --background #ff0000');
  assert.ok(maxAbsDiff(white.get('alpha.png')!, white.get('on-white.png')!) <= SAME, 'on white by default');
  assert.ok(maxAbsDiff(red.get('alpha.png')!, white.get('alpha.png')!) > 0.5, 'the background changes what the model sees');
  for (const key of ['on-red.png', 'on-white.png']) assert.ok(maxAbsDiff(red.get(key)!, white.get(key)!) <= SAME, `${key} is opaque`);
});

test('--icc convert: an image tagged Display P3 is converted to sRGB first (close to the sRGB original), --icc ignore reads its numbers as sRGB', async () => {
  const few = path.join(dir, 'icc');
  fs.mkdirSync(few);
  await structuredImage(96, 64, 41).png().toFile(path.join(few, 'srgb.png'));
  // sharp converts the pixels into P3 and embeds the profile: the stored numbers differ, the colours do not.
  await structuredImage(96, 64, 41).withIccProfile('p3').png().toFile(path.join(few, 'p3.png'));
  assert.ok((await sharp(path.join(few, 'p3.png')).metadata()).icc, 'p3.png carries an ICC profile');

  const caches = { convert: path.join(dir, 'cache-icc-convert'), ignore: path.join(dir, 'cache-icc-ignore') };
  await extract([few], caches.convert, '--bucket', '96x64', '--dtype', 'float32', '--icc', 'convert');
  await extract([few], caches.ignore, '--bucket', '96x64', '--dtype', 'float32');
  assert.equal(recordedPreprocessing(caches.convert).icc, 'convert');
  assert.equal(recordedPreprocessing(caches.ignore).icc, 'ignore');

  const convert = await shardRowsByKey(caches.convert);
  const ignore = await shardRowsByKey(caches.ignore);
  const gap = (a: Map<string, { cls: number[] }>, ka: string, b: Map<string, { cls: number[] }>, kb: string) => maxAbsDiff(a.get(ka)!.cls, b.get(kb)!.cls);
  // An untagged image is the same either way.
  assert.ok(gap(convert, 'srgb.png', ignore, 'srgb.png') <= 1e-5, 'untagged: same features');
  // Converted, P3 is the sRGB original up to 8-bit rounding on the way in and out (CLS max |Δ|
  // 0.0074 measured, bound 0.02); read as sRGB its colours are washed out (0.216 measured, bound 0.1).
  const converted = gap(convert, 'p3.png', convert, 'srgb.png');
  const ignored = gap(ignore, 'p3.png', ignore, 'srgb.png');
  assert.ok(converted < 0.02, `converted P3 vs sRGB original: ${converted}`);
  assert.ok(ignored > 0.1, `P3 numbers read as sRGB vs sRGB original: ${ignored}`);
});

test('--list FILE: entries resolved against the list\'s folder, keys as written (./ dropped), comments and blank lines skipped, a missing file an error row', async () => {
  const listed = path.join(dir, 'listed');
  await writeStructured(path.join(listed, 'a.jpg'), 80, 64, 51);
  await writeStructured(path.join(listed, 'sub', 'b.png'), 64, 80, 52);
  const outside = path.join(images, 'square.jpg');
  const list = path.join(listed, 'images.txt');
  fs.writeFileSync(list, ['# photos for the run', 'a.jpg', '', './sub/b.png', outside, 'gone.jpg', ''].join('\n'));
  const out = path.join(dir, 'cache-list');
  const r = await runCli(['extract', '--list', list, '--out', out, '--model', model, '--bucket', '64x64', '--quiet']);
  assert.equal(r.code, 1, 'one listed file is missing');
  assert.deepEqual(summaryCounts(r.stdout), { extracted: 3, skipped: 0, failed: 1, found: 4 });
  const rows = await readShardTable(out);
  assert.deepEqual(rows.map((row) => [row.key, row.width, row.height]), [
    ['a.jpg', 80, 64],
    [outside.slice(1), 128, 128], // an absolute entry keys as its path without the leading /
    ['sub/b.png', 64, 80],
  ].sort((x, y) => String(x[0]).localeCompare(String(y[0]))));
  const errors = readErrorsFile(out);
  assert.deepEqual(errors.map((e) => [e.key, e.path, e.stage]), [['gone.jpg', path.join(listed, 'gone.jpg'), 'read']]);
  assert.match(errors[0]!.reason, /ENOENT|no such file/);
});

test('--batch-size auto (the default) fits the largest bucket into the CPU token budget; an explicit size wins', async () => {
  // The tiny model (patch 16, 4 registers): 128x128 is 1 + 4 + 64 = 69 tokens, 14 a call in 1024;
  // with 256x256 in the set too (261 tokens) the largest decides: 3.
  const small = await extract([images], path.join(dir, 'batch-auto'), '--bucket', '128x128');
  assert.match(small.stdout, /\n {2}batch: 14 images a call \(auto: 1024 tokens a call on cpu, 69 an image\)\n/);
  const mixed = await extract([images], path.join(dir, 'batch-mixed'), '--bucket', '128x128', '--bucket', '256x256');
  assert.match(mixed.stdout, /batch: 3 images a call \(auto: 1024 tokens a call on cpu, 261 an image\)/);
  const fixed = await extract([images], path.join(dir, 'batch-fixed'), '--bucket', '128x128', '--batch-size', '2');
  assert.match(fixed.stdout, /batch: 2 images a call \(--batch-size\)/);
  const bad = await runCli(['extract', images, '--out', path.join(dir, 'batch-bad'), '--model', model, '--batch-size', 'many']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--batch-size must be a whole number of at least 1 \(got many\)/);
});
