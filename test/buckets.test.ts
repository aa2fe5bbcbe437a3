import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  assignBucket, autoBuckets, checkAligned, cropBox, dinoBucket, formatBucketTable, parseSize, presetBuckets, resolveBuckets,
  type Bucket, type Size,
} from '../src/image/buckets.js';
import { UserError } from '../src/core/errors.js';

const size = (width: number, height: number): Size => ({ width, height });
const wxh = (b: Size) => `${b.width}x${b.height}`;
/** A bucket whose DINO size is the trainer size (--dino-scale 1). */
const bucket = (width: number, height: number): Bucket => ({ width, height, trainer: { width, height } });

/** Deterministic pseudo-random integers in [lo, hi]. */
function randomInts(seed: number) {
  let state = seed;
  return (lo: number, hi: number) => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return lo + (state % (hi - lo + 1));
  };
}

test('parseSize reads WIDTHxHEIGHT and rejects anything else in one line', () => {
  assert.deepEqual(parseSize('832x1216'), size(832, 1216));
  assert.deepEqual(parseSize(' 832X1216 '), size(832, 1216));
  assert.deepEqual(parseSize('832×1216'), size(832, 1216));
  for (const bad of ['832*1216', '832x', 'x1216', '832x1216x3', 'abc', '-16x16', '8.5x16']) {
    assert.throws(() => parseSize(bad), (e: unknown) => e instanceof UserError && /expected WIDTHxHEIGHT/.test(e.message), bad);
  }
  assert.throws(() => parseSize('0x64'), /at least 1/);
});

test('an explicit bucket off the patch grid names the nearest valid sizes, nearest first', () => {
  const message = (w: number, h: number, patch: number) => {
    try {
      checkAligned(size(w, h), patch);
    } catch (e) {
      assert.ok(e instanceof UserError);
      assert.ok(!e.message.includes('\n'));
      return e.message;
    }
    return 'aligned';
  };
  assert.equal(message(832, 1216, 16), 'aligned');
  assert.equal(message(518, 518, 14), 'aligned');
  assert.equal(message(830, 1216, 16), "--bucket 830x1216 is not a multiple of the model's patch size 16: use 832x1216 or 816x1216");
  // Halfway: both, the smaller first.
  assert.match(message(824, 1216, 16), /use 816x1216 or 832x1216$/);
  // Both sides off: every combination, by total distance.
  assert.match(message(830, 1210, 16), /use 832x1216 or 832x1200 or 816x1216 or 816x1200$/);
  assert.match(message(518, 500, 14), /patch size 14: use 518x504 or 518x490$/);
  // Below one patch there is only one way up.
  assert.match(message(10, 64, 16), /use 16x64$/);
  // Every size offered really is aligned, and for every side the nearest multiple comes first.
  const rand = randomInts(7);
  for (let k = 0; k < 200; k++) {
    const patch = rand(0, 1) ? 16 : 14;
    const [w, h] = [rand(1, 3000), rand(1, 3000)];
    const m = message(w, h, patch);
    if (m === 'aligned') continue;
    const offered = m.split(': use ')[1]!.split(' or ').map((t) => t.split('x').map(Number) as [number, number]);
    for (const [ow, oh] of offered) assert.ok(ow % patch === 0 && oh % patch === 0 && ow >= patch && oh >= patch);
    const best = Math.max(patch, Math.round(w / patch) * patch);
    assert.ok(Math.abs(offered[0]![0] - w) <= Math.abs(best - w), `${w}x${h}/${patch}: ${m}`);
  }
  // resolveBuckets applies the check to --bucket, and the two bucket flags exclude each other.
  assert.throws(() => resolveBuckets({ bucket: ['830x1216'], dinoScale: 1 }, 16), /830x1216 is not a multiple/);
  assert.throws(() => resolveBuckets({ bucket: ['64x64'], buckets: 'sdxl', dinoScale: 1 }, 16), /either --bucket or --buckets/);
  assert.throws(() => resolveBuckets({ buckets: 'sdxxl', dinoScale: 1 }, 16), /unknown preset; use one of sdxl, sd15, auto/);
});

test('the sdxl preset is the published 1024² list: 64-aligned, about one megapixel, both orientations', () => {
  const sdxl = presetBuckets('sdxl');
  assert.equal(sdxl.length, 41);
  for (const expected of ['1024x1024', '1152x896', '896x1152', '1216x832', '832x1216', '1344x768', '768x1344', '1536x640', '640x1536', '2048x512', '512x2048']) {
    assert.ok(sdxl.some((b) => wxh(b) === expected), expected);
  }
  assert.equal(new Set(sdxl.map(wxh)).size, sdxl.length);
  for (const b of sdxl) {
    assert.ok(b.width % 64 === 0 && b.height % 64 === 0, wxh(b));
    assert.ok(b.width * b.height >= 0.9 * 1024 ** 2 && b.width * b.height <= 1024 ** 2 + 64 * 1024, wxh(b));
    assert.ok(sdxl.some((o) => o.width === b.height && o.height === b.width), `mirror of ${wxh(b)}`);
  }
});

test('auto buckets: on the step grid, within the area, the largest height that fits, inside the side and aspect limits', () => {
  const o = { area: 768 * 768, step: 48, minSide: 384, maxSide: 1536, maxAspect: 3 };
  const buckets = autoBuckets(o);
  assert.ok(buckets.length >= 10);
  for (const b of buckets) {
    assert.ok(b.width % 48 === 0 && b.height % 48 === 0, wxh(b));
    assert.ok(b.width * b.height <= o.area, wxh(b));
    assert.ok(b.width * (b.height + o.step) > o.area, `${wxh(b)} leaves a whole step of area unused`);
    assert.ok(Math.min(b.width, b.height) >= o.minSide && Math.max(b.width, b.height) <= o.maxSide, wxh(b));
    assert.ok(Math.max(b.width / b.height, b.height / b.width) <= o.maxAspect, wxh(b));
  }
  // Every width on the grid whose best height satisfies the limits is present.
  for (let w = 384; w <= 1536; w += 48) {
    const h = Math.floor(o.area / w / 48) * 48;
    const allowed = h >= 384 && h <= 1536 && Math.max(w / h, h / w) <= 3;
    assert.equal(buckets.some((b) => b.width === w && b.height === h), allowed, `${w}x${h}`);
  }
  assert.throws(() => autoBuckets({ area: 64 * 64, step: 64, minSide: 512 }), (e: unknown) => e instanceof UserError && /made no buckets/.test(e.message));
  assert.throws(() => resolveBuckets({ buckets: 'auto', auto: { step: 40 }, dinoScale: 1 }, 16), /--bucket-step 40 is not a multiple of the model's patch size 16/);
});

test('every preset lands on the patch grid, for patch 16 (DINOv3) and 14 (DINOv2), at any --dino-scale', () => {
  for (const patch of [16, 14]) {
    for (const preset of ['sdxl', 'sd15', 'auto']) {
      for (const dinoScale of [1, 0.5, 0.75]) {
        const buckets = resolveBuckets({ buckets: preset, dinoScale }, patch);
        assert.ok(buckets.length >= 5, preset);
        for (const b of buckets) assert.ok(b.width % patch === 0 && b.height % patch === 0 && b.width > 0 && b.height > 0, `${preset} ${wxh(b)} / ${patch}`);
      }
    }
  }
  // sdxl's sizes are multiples of 16 already; for 14 they are rounded to the nearest multiple.
  const sdxl16 = resolveBuckets({ buckets: 'sdxl', dinoScale: 1 }, 16);
  assert.ok(sdxl16.every((b) => b.width === b.trainer.width && b.height === b.trainer.height));
  const b14 = resolveBuckets({ buckets: 'sdxl', dinoScale: 1 }, 14).find((b) => wxh(b.trainer) === '832x1216')!;
  assert.equal(wxh(b14), '826x1218');
  assert.equal(resolveBuckets({ dinoScale: 1 }, 16).length, 41, 'sdxl is the default');
});

test('assignment: nearest aspect ratio on a log scale, ties broken the same way whatever the order', () => {
  const buckets = resolveBuckets({ buckets: 'sdxl', dinoScale: 1 }, 16);
  const pick = (w: number, h: number, list = buckets) => wxh(assignBucket(size(w, h), list));
  assert.equal(pick(3000, 3000), '1024x1024');
  assert.equal(pick(4000, 6000), '832x1216');
  assert.equal(pick(6000, 4000), '1216x832');
  assert.equal(pick(1920, 1080), '1344x768');
  assert.equal(pick(1080, 1920), '768x1344');
  assert.equal(pick(10000, 10), '2048x512');
  // Log scale, not linear: 1:2 and 2:1 are equally far from 1:1. With only 1:1 and 4:1 on offer a
  // 2:1 image is exactly halfway (log 2 from each) and a 2.1:1 image is nearer 4:1 in log terms
  // although nearer 1:1 in linear terms (1.1 against 1.9).
  const two = [bucket(512, 512), bucket(1024, 256)];
  assert.equal(pick(2100, 1000, two), '1024x256');
  assert.equal(pick(1900, 1000, two), '512x512');
  // Ties: the larger area, then the wider bucket, in either order.
  const tie = [bucket(512, 1024), bucket(1024, 512)];
  assert.equal(pick(700, 700, tie), '1024x512');
  assert.equal(pick(700, 700, [...tie].reverse()), '1024x512');
  const areaTie = [bucket(256, 256), bucket(512, 512)];
  assert.equal(pick(50, 50, areaTie), '512x512');
  assert.equal(pick(50, 50, [...areaTie].reverse()), '512x512');
  // Against a brute-force search: no bucket is nearer than the one chosen.
  const rand = randomInts(11);
  for (let k = 0; k < 500; k++) {
    const s = size(rand(1, 8000), rand(1, 8000));
    const chosen = assignBucket(s, buckets);
    const d = (b: Bucket) => Math.abs(Math.log(b.trainer.width / b.trainer.height) - Math.log(s.width / s.height));
    for (const b of buckets) assert.ok(d(chosen) <= d(b) + 1e-12, `${wxh(s)}: ${wxh(chosen)} but ${wxh(b)} is nearer`);
  }
  // One explicit bucket takes everything.
  const one = resolveBuckets({ bucket: ['832x1216'], dinoScale: 1 }, 16);
  assert.equal(pick(5000, 100, one), '832x1216');
});

test('--dino-scale maps trainer buckets to DINO sizes rounded to the patch size; the grid is size / patch', () => {
  assert.deepEqual(dinoBucket(size(1024, 1024), 0.5, 16), { width: 512, height: 512, trainer: size(1024, 1024) });
  assert.deepEqual(dinoBucket(size(832, 1216), 0.5, 16), { width: 416, height: 608, trainer: size(832, 1216) });
  assert.deepEqual(dinoBucket(size(832, 1216), 0.5, 14), { width: 420, height: 602, trainer: size(832, 1216) });
  assert.deepEqual(dinoBucket(size(64, 64), 0.1, 16), { width: 16, height: 16, trainer: size(64, 64) }, 'never below one patch');
  const b = resolveBuckets({ bucket: ['1216x832'], dinoScale: 0.5 }, 16)[0]!;
  assert.deepEqual([b.width, b.height, b.width / 16, b.height / 16], [608, 416, 38, 26]);
  // With a scale the explicit bucket need not be aligned itself: its DINO size is.
  assert.equal(wxh(resolveBuckets({ bucket: ['1000x1000'], dinoScale: 0.5 }, 16)[0]!), '496x496');
});

test('crop boxes: stretch is the whole image; cover is centred, spans one full side, the bucket aspect to the nearest pixel', () => {
  assert.deepEqual(cropBox(size(640, 480), bucket(224, 224), 'stretch'), { x: 0, y: 0, w: 640, h: 480 });
  assert.deepEqual(cropBox(size(640, 480), bucket(224, 224), 'cover'), { x: 80, y: 0, w: 480, h: 480 });
  assert.deepEqual(cropBox(size(480, 640), bucket(832, 1216), 'cover'), { x: 21, y: 0, w: 438, h: 640 }); // 437.9
  assert.deepEqual(cropBox(size(640, 480), bucket(832, 1216), 'cover'), { x: 156, y: 0, w: 328, h: 480 }); // 328.4
  assert.deepEqual(cropBox(size(1216, 832), bucket(832, 1216), 'cover'), { x: 323, y: 0, w: 569, h: 832 }); // 569.26
  assert.deepEqual(cropBox(size(832, 1216), bucket(832, 1216), 'cover'), { x: 0, y: 0, w: 832, h: 1216 });
  assert.deepEqual(cropBox(size(1664, 2432), bucket(832, 1216), 'cover'), { x: 0, y: 0, w: 1664, h: 2432 });
  assert.deepEqual(cropBox(size(1, 1000), bucket(1024, 1024), 'cover'), { x: 0, y: 499, w: 1, h: 1 });
  // Halves round up: 3 wide at 1:2 → height 1.5 → 2.
  assert.deepEqual(cropBox(size(3, 100), bucket(512, 256), 'cover'), { x: 0, y: 49, w: 3, h: 2 });
  // With --dino-scale the crop keeps the trainer bucket's aspect (the latent's region).
  const scaled = dinoBucket(size(832, 1216), 0.5, 14);
  assert.deepEqual(cropBox(size(480, 640), scaled, 'cover'), cropBox(size(480, 640), bucket(832, 1216), 'cover'));
  const rand = randomInts(3);
  const sdxl = resolveBuckets({ buckets: 'sdxl', dinoScale: 1 }, 16);
  for (let k = 0; k < 2000; k++) {
    const [W, H] = [rand(1, 6000), rand(1, 6000)];
    const b = sdxl[rand(0, sdxl.length - 1)]!;
    const box = cropBox(size(W, H), b, 'cover');
    const where = `${W}x${H} → ${wxh(b)}: ${JSON.stringify(box)}`;
    assert.ok(box.w >= 1 && box.h >= 1 && box.x + box.w <= W && box.y + box.h <= H, where);
    assert.equal(box.x, Math.floor((W - box.w) / 2), where);
    assert.equal(box.y, Math.floor((H - box.h) / 2), where);
    // Exact rational check (integers only): the box spans the side that limits it, and its other
    // side is within half a pixel of the bucket's aspect.
    if (W * b.height > H * b.width) {
      assert.equal(box.h, H, where);
      if (box.w > 1 && box.w < W) assert.ok(Math.abs(2 * box.w * b.height - 2 * H * b.width) <= b.height, where);
    } else {
      assert.equal(box.w, W, where);
      if (box.h > 1 && box.h < H) assert.ok(Math.abs(2 * box.h * b.width - 2 * W * b.height) <= b.width, where);
    }
  }
});

test('the bucket table: trainer bucket, DINO input, grid (rows x columns), aspect and token count', () => {
  const t = formatBucketTable(resolveBuckets({ bucket: ['832x1216', '1024x1024'], dinoScale: 0.5 }, 16), 16).split('\n');
  assert.equal(t.length, 3);
  assert.match(t[0]!, /^bucket\s+dino input\s+grid \(h x w\)\s+aspect\s+tokens/);
  assert.match(t[1]!, /^832x1216\s+416x608\s+38x26\s+0\.684\s+989$/);
  assert.match(t[2]!, /^1024x1024\s+512x512\s+32x32\s+1\.000\s+1025$/);
  // Columns line up.
  assert.equal(t[1]!.indexOf('416x608'), t[0]!.indexOf('dino input'));
});
