import { createHash } from 'node:crypto';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { resolveBuckets } from '../src/image/buckets.js';
import { DEFAULT_MAX_PIXELS } from '../src/image/decode.js';
import type { PrepareSettings } from '../src/image/prepare-settings.js';
import { createImagePreparer } from '../src/pipeline/prepare.js';
import { MODEL } from './fixtures/feature-rows.js';
import { writeStructured } from './fixtures/images.js';
import { tempDir } from './helpers/temp.js';

test('a pool of resize workers under a tight pixel budget gives the pixels one worker gives', async () => {
  const dir = tempDir();
  const sizes: Array<[number, number]> = [[200, 120], [90, 150], [128, 128], [300, 100], [64, 64], [150, 90]];
  const files = await Promise.all(sizes.map(async ([w, h], k) => {
    const file = path.join(dir, `img${k}.png`);
    await writeStructured(file, w, h, k);
    return fs.readFileSync(file);
  }));
  const settings: PrepareSettings = {
    buckets: resolveBuckets({ bucket: ['64x64', '96x64', '64x96'], dinoScale: 1 }, MODEL.patchSize),
    resize: 'stretch',
    dinoScale: 1,
    decode: { maxPixels: DEFAULT_MAX_PIXELS, background: '#ffffff', icc: 'ignore' },
  };
  const one = await createImagePreparer(MODEL, settings);
  // 20000 pixels: every image but the smallest is over the budget and so is done alone.
  const pool = await createImagePreparer(MODEL, settings, { workers: 3, pixelBudget: 20_000 });
  try {
    const expected = [];
    for (const bytes of files) expected.push(await one.prepare(bytes));
    const got = await Promise.all(files.map((bytes) => pool.prepare(bytes)));
    for (let k = 0; k < files.length; k++) {
      assert.equal(got[k]!.bucketWidth, expected[k]!.bucketWidth);
      assert.equal(got[k]!.bucketHeight, expected[k]!.bucketHeight);
      assert.deepEqual(got[k]!.pixels, expected[k]!.pixels, `image ${k}`);
    }
  } finally {
    await one.close();
    await pool.close();
  }
});

test('asked to, prepare hashes the file on an image worker: its sha256, also with a flipped copy; not asked, none', async () => {
  const dir = tempDir();
  const files = await Promise.all([[200, 120], [90, 150]].map(async ([w, h], k) => {
    const file = path.join(dir, `hash${k}.png`);
    await writeStructured(file, w!, h!, k);
    return fs.readFileSync(file);
  }));
  const settings: PrepareSettings = {
    buckets: resolveBuckets({ bucket: ['64x64'], dinoScale: 1 }, MODEL.patchSize),
    resize: 'stretch',
    dinoScale: 1,
    decode: { maxPixels: DEFAULT_MAX_PIXELS, background: '#ffffff', icc: 'ignore' },
  };
  const plain = await createImagePreparer(MODEL, settings, { workers: 2 });
  const flipping = await createImagePreparer(MODEL, { ...settings, flipCopies: true });
  try {
    for (const bytes of files) {
      const sha256 = createHash('sha256').update(bytes).digest('hex');
      assert.equal((await plain.prepare(bytes, undefined, true)).sha256, sha256);
      assert.equal((await plain.prepare(bytes)).sha256, undefined);
      const both = await flipping.prepare(bytes, undefined, true);
      assert.ok(both.mirrored, 'the flipped copy rendered too');
      assert.equal(both.sha256, sha256);
    }
  } finally {
    await plain.close();
    await flipping.close();
  }
});
