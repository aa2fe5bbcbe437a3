import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assignBucket, autoBuckets, cropBox, dinoBucket, formatBucketTable, parseSize, presetBuckets, resolveBuckets } from '../src/image/buckets.js';

test('an explicit bucket must be a multiple of the patch size; the error names the nearest valid sizes', () => {
  assert.deepEqual(resolveBuckets({ bucket: ['832x1216'], dinoScale: 1 }, 16).map((b) => [b.width, b.height]), [[832, 1216]]);
  assert.throws(() => resolveBuckets({ bucket: ['830x1216'], dinoScale: 1 }, 16), /--bucket 830x1216 is not a multiple of the model's patch size 16: use 816x1216 or 832x1216/);
  assert.throws(() => resolveBuckets({ bucket: ['518x500'], dinoScale: 1 }, 14), /use 518x490 or 518x504/);
  assert.doesNotThrow(() => resolveBuckets({ bucket: ['518x518'], dinoScale: 1 }, 14));
  assert.throws(() => parseSize('832*1216'), /expected WIDTHxHEIGHT/);
  assert.throws(() => resolveBuckets({ bucket: ['64x64'], buckets: 'sdxl', dinoScale: 1 }, 16), /either --bucket or --buckets/);
});

test('presets and auto buckets align to the patch size (16 and 14)', () => {
  for (const patch of [16, 14]) {
    for (const preset of ['sdxl', 'sd15', 'auto']) {
      const buckets = resolveBuckets({ buckets: preset, dinoScale: 1 }, patch);
      assert.ok(buckets.length >= 5, preset);
      for (const b of buckets) assert.ok(b.width % patch === 0 && b.height % patch === 0, `${preset} ${b.width}x${b.height} / ${patch}`);
    }
  }
  const sdxl = presetBuckets('sdxl');
  assert.ok(sdxl.some((b) => b.width === 832 && b.height === 1216));
  assert.ok(sdxl.every((b) => b.width * b.height <= 1024 * 1024 * 1.07 && b.width * b.height >= 1024 * 1024 * 0.9));
  for (const b of autoBuckets({ area: 512 * 512, step: 32 })) assert.ok(b.width * b.height <= 512 * 512 && b.width % 32 === 0);
});

test('assignment by nearest aspect ratio on a log scale, both orientations', () => {
  const buckets = resolveBuckets({ buckets: 'sdxl', dinoScale: 1 }, 16);
  const pick = (w: number, h: number) => {
    const b = assignBucket({ width: w, height: h }, buckets);
    return `${b.width}x${b.height}`;
  };
  assert.equal(pick(3000, 3000), '1024x1024');
  assert.equal(pick(4000, 6000), '832x1216'); // 0.667 → 0.684
  assert.equal(pick(6000, 4000), '1216x832');
  assert.equal(pick(1920, 1080), '1344x768');
  // Log scale: 2:1 and 1:2 are equally far from square, each lands on its own side.
  assert.equal(pick(200, 100).split('x').map(Number).reduce((a, b) => a / b) > 1, true);
  const one = resolveBuckets({ bucket: ['832x1216'], dinoScale: 1 }, 16);
  assert.equal(assignBucket({ width: 5000, height: 100 }, one).width, 832);
});

test('--dino-scale maps trainer buckets to DINO sizes rounded to the patch size', () => {
  assert.deepEqual(dinoBucket({ width: 1024, height: 1024 }, 0.5, 16), { width: 512, height: 512, trainer: { width: 1024, height: 1024 } });
  assert.deepEqual(dinoBucket({ width: 832, height: 1216 }, 0.5, 14), { width: 420, height: 602, trainer: { width: 832, height: 1216 } });
  const b = resolveBuckets({ bucket: ['1216x832'], dinoScale: 0.5 }, 16)[0]!;
  assert.deepEqual([b.width, b.height], [608, 416]);
});

test('crop boxes: stretch keeps the whole image, cover is centred with the bucket aspect', () => {
  assert.deepEqual(cropBox({ width: 640, height: 480 }, { width: 224, height: 224 }, 'stretch'), { x: 0, y: 0, w: 640, h: 480 });
  assert.deepEqual(cropBox({ width: 640, height: 480 }, { width: 224, height: 224 }, 'cover'), { x: 80, y: 0, w: 480, h: 480 });
  assert.deepEqual(cropBox({ width: 480, height: 640 }, { width: 832, height: 1216 }, 'cover'), { x: 21, y: 0, w: 438, h: 640 });
  for (const [w, h] of [[1000, 333], [333, 1000], [1217, 831], [50, 5000]] as const) {
    const box = cropBox({ width: w, height: h }, { width: 832, height: 1216 }, 'cover');
    assert.ok(box.x >= 0 && box.y >= 0 && box.x + box.w <= w && box.y + box.h <= h);
    assert.ok(Math.abs(box.w / box.h - 832 / 1216) < 2 / Math.min(box.w, box.h) + 1e-9, `${w}x${h}: ${JSON.stringify(box)}`);
  }
});

test('the bucket table shows grid and tokens', () => {
  const t = formatBucketTable(resolveBuckets({ bucket: ['832x1216'], dinoScale: 1 }, 16), 16);
  assert.match(t, /832x1216\s+832x1216\s+76x52\s+0\.684\s+3953/);
});
