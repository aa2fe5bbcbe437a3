/**
 * `dinofeat inspect`: the summary of a 300-row shard is right and is computed without reading a
 * single patch byte (the patch column chunks are overwritten with garbage and the summary does not
 * change, while a full read fails); --row / --key find the row written; --pca writes a PNG of the
 * expected layout whose PCA panel has one colour per patch and whose crop box sits where the row
 * says; the PCA itself matches numpy's SVD.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { asyncBufferFromFile, parquetMetadataAsync } from 'hyparquet';
import { readShardRows } from '../src/shard/shard-reader.js';
import { decodeRow, type FeatureRow, type ShardFormat, type ShardMeta } from '../src/shard/schema.js';
import { createShardWriter } from '../src/shard/shard-writer.js';
import { runInspect } from '../src/commands/inspect.js';
import { inspect } from '../src/inspect/inspect.js';
import { UserError } from '../src/core/errors.js';
import { TINY_TEST_MODEL } from '../src/convert/test-model.js';
import { principalComponents, scoresToRgb } from '../src/inspect/pca.js';
import { pcaPanelPixels, PANEL_GAP } from '../src/inspect/pca-picture.js';
import { readRowAt, locateRow } from '../src/inspect/row-view.js';
import { summarize } from '../src/inspect/summary.js';
import { openReadOnly } from '../src/cache/open-read-only.js';
import { extractCache, onlyShard } from './fixtures/damaged-cache.js';
import { fakeModelInfo } from './fixtures/fake-vit.js';
import { writeStructured } from './fixtures/images.js';
import { makeTinyModel } from './fixtures/tiny-model.js';
import { pythonJson } from './helpers/python.js';
import { tempDir } from './helpers/temp.js';

const HIDDEN = 64;
const REGISTERS = 4;
const ROWS = 300;
/** (grid_h, grid_w) by row; buckets are these times the patch size 16. */
const GRIDS: ReadonlyArray<[number, number]> = [[16, 16], [12, 20], [20, 12]];

const META: ShardMeta = {
  dinofeatVersion: '0.0.0-test', dtype: 'float16', hiddenSize: HIDDEN, numRegisters: REGISTERS, registersKept: true,
  model: fakeModelInfo({ patchSize: 16, hidden: HIDDEN, registers: REGISTERS }),
  preprocessing: { resize: 'stretch', buckets: ['256x256→256x256', '320x192→320x192', '192x320→192x320'] },
  fingerprint: 'fp-inspect',
};

function values(n: number, seed: number): Float32Array {
  let x = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x / 2 ** 31 - 1;
  });
}

function makeRow(i: number): FeatureRow {
  const [gridH, gridW] = GRIDS[i % GRIDS.length]!;
  return {
    key: `img_${i}.png`, sha256: i.toString(16).padStart(64, '0'), width: 400 + i, height: 300 + i,
    bucketWidth: gridW * 16, bucketHeight: gridH * 16, gridH, gridW, cropX: 0, cropY: 0, cropW: 400 + i, cropH: 300 + i,
    cls: values(HIDDEN, 7 * i + 1), registers: values(REGISTERS * HIDDEN, 7 * i + 2), patches: values(gridH * gridW * HIDDEN, 7 * i + 3),
  };
}

async function writeShard(file: string, format: ShardFormat): Promise<void> {
  const writer = createShardWriter(format);
  await writer.open(file, META);
  for (let i = 0; i < ROWS; i += 50) await writer.append(Array.from({ length: 50 }, (_, k) => makeRow(i + k)));
  await writer.close();
}

let dir: string;
let parquet: string;
let arrow: string;
let images: string;
/** Extracted from `images` with cover crops. */
let cache: string;

before(async () => {
  dir = tempDir();
  parquet = path.join(dir, 'rows.parquet');
  arrow = path.join(dir, 'rows.arrow');
  await writeShard(parquet, 'parquet');
  await writeShard(arrow, 'arrow');
  images = path.join(dir, 'images');
  await writeStructured(path.join(images, 'a.png'), 200, 120, 1);
  await writeStructured(path.join(images, 'b.jpg'), 90, 150, 2);
  const model = await makeTinyModel(dir);
  cache = await extractCache(images, model.onnx, ['--bucket', '64x64', '--bucket', '96x64', '--bucket', '64x96', '--resize', 'cover']);
});

function expectedSummary() {
  const buckets: Record<string, number> = {};
  let tensorBytes = 0;
  let normSum = 0;
  for (let i = 0; i < ROWS; i++) {
    const r = makeRow(i);
    const label = `${r.bucketWidth}x${r.bucketHeight}`;
    buckets[label] = (buckets[label] ?? 0) + 1;
    tensorBytes += (r.gridH * r.gridW + REGISTERS) * HIDDEN * 2 + HIDDEN * 4;
    normSum += Math.hypot(...r.cls);
  }
  return { buckets, tensorBytes, meanNorm: normSum / ROWS };
}

/** Overwrites every byte of the `patches` column chunks (page headers included) with 0xff. */
async function destroyPatchColumn(file: string): Promise<number> {
  const metadata = await parquetMetadataAsync(await asyncBufferFromFile(file));
  const fd = fs.openSync(file, 'r+');
  let destroyed = 0;
  try {
    for (const group of metadata.row_groups) {
      const chunk = group.columns.find((c) => c.meta_data?.path_in_schema.join('.') === 'patches')!.meta_data!;
      const size = Number(chunk.total_compressed_size);
      fs.writeSync(fd, Buffer.alloc(size, 0xff), 0, size, Number(chunk.data_page_offset));
      destroyed += size;
    }
  } finally {
    fs.closeSync(fd);
  }
  return destroyed;
}

test('summary of a 300-row shard: counts, buckets, sizes and CLS norms, without reading any patch byte', async (t) => {
  const expected = expectedSummary();
  const started = performance.now();
  const s = await summarize(await openReadOnly(parquet), parquet);
  const summaryMs = performance.now() - started;
  assert.equal(s.rows, ROWS);
  assert.equal(s.shards, 1);
  assert.deepEqual(s.buckets, expected.buckets);
  assert.equal(s.tensorBytes, expected.tensorBytes);
  assert.equal(s.fileBytes, fs.statSync(parquet).size);
  assert.equal(s.compressionRatio, s.fileBytes / expected.tensorBytes);
  assert.equal(s.bytesPerImage, s.fileBytes / ROWS);
  assert.ok(Math.abs(s.clsNorm!.mean - expected.meanNorm) < 1e-9 * expected.meanNorm);
  assert.deepEqual(s.fingerprints, ['fp-inspect']);
  assert.equal(s.meta.dtype, 'float16');

  const fullStart = performance.now();
  const full = (await readShardRows(parquet)).map((r) => decodeRow(r, 'float16'));
  const fullMs = performance.now() - fullStart;
  assert.equal(full.length, ROWS);
  t.diagnostic(`summary ${summaryMs.toFixed(0)} ms, full read + decode ${fullMs.toFixed(0)} ms of a ${(s.fileBytes / 2 ** 20).toFixed(1)} MiB shard`);

  // The proof: with every patch byte destroyed the summary is unchanged, while a full read fails.
  const broken = path.join(dir, 'broken.parquet');
  fs.copyFileSync(parquet, broken);
  const destroyed = await destroyPatchColumn(broken);
  const patchBytes = Array.from({ length: ROWS }, (_, i) => makeRow(i).patches.length * 2).reduce((a, b) => a + b);
  assert.ok(destroyed >= patchBytes, `destroyed ${destroyed} bytes, the patches hold ${patchBytes}`);
  await assert.rejects(readShardRows(broken));
  const again = await summarize(await openReadOnly(broken), parquet);
  assert.deepEqual(again, s);
});

test('an Arrow shard of the same rows summarises the same', async () => {
  const p = await summarize(await openReadOnly(parquet), 'x');
  const a = await summarize(await openReadOnly(arrow), 'x');
  assert.equal(a.format, 'arrow');
  assert.deepEqual({ ...a, format: 'parquet', fileBytes: 0, bytesPerImage: 0, compressionRatio: 0 }, { ...p, fileBytes: 0, bytesPerImage: 0, compressionRatio: 0 });
});

test('--row and --key find the row that was written', async () => {
  const byIndex = await inspect(parquet, { row: 123 });
  const want = makeRow(123);
  assert.equal(byIndex.row!.key, want.key);
  assert.deepEqual(byIndex.row!.grid, { h: want.gridH, w: want.gridW });
  assert.deepEqual(byIndex.row!.bucket, { width: want.bucketWidth, height: want.bucketHeight });
  assert.deepEqual(byIndex.row!.crop, { x: 0, y: 0, w: want.cropW, h: want.cropH });
  assert.deepEqual(byIndex.row!.cls.first, Array.from(want.cls.subarray(0, 8)));
  assert.deepEqual(byIndex.row!.patches.shape, [want.gridH * want.gridW, HIDDEN]);
  assert.deepEqual(byIndex.row!.registers?.shape, [REGISTERS, HIDDEN]);

  const byKey = await inspect(arrow, { key: 'img_250.png' });
  assert.equal(byKey.row!.index, 250);
  const inCache = await inspect(cache, { key: 'b.jpg' });
  assert.equal(inCache.row!.key, 'b.jpg');
  assert.deepEqual(inCache.row!.size, { width: 90, height: 150 });

  await assert.rejects(inspect(parquet, { row: ROWS }), (e: unknown) => e instanceof UserError && /has 300 rows/.test(e.message));
  await assert.rejects(inspect(parquet, { key: 'nope.png' }), (e: unknown) => e instanceof UserError && /no such key/.test(e.message));
  await assert.rejects(inspect(parquet, { row: 1, key: 'x' }), UserError);
});

test('--pca: input | PCA | original with the crop box, at the expected size; PCA panel one colour per patch', async () => {
  const out = path.join(dir, 'a.png');
  const report = await inspect(cache, { key: 'a.png', pca: out, images });
  // a.png is 200x120: cover crop into the 96x64 bucket is 180x120 at x = 10. Panels are enlarged
  // 4x (ceil(256 / 64)) to 384x256; the original is 200x120 scaled to height 256: 427 wide.
  assert.deepEqual(report.row!.crop, { x: 10, y: 0, w: 180, h: 120 });
  const width = 384 + PANEL_GAP + 384 + PANEL_GAP + 427;
  const { data, info } = await sharp(out).raw().toBuffer({ resolveWithObject: true });
  const meta = await sharp(out).metadata();
  assert.deepEqual([meta.format, meta.width, meta.height], ['png', width, 256]);
  assert.deepEqual([report.pca!.width, report.pca!.height, report.pca!.withImage], [width, 256, true]);
  const px = (x: number, y: number) => Array.from(data.subarray((y * info.width + x) * info.channels, (y * info.width + x) * info.channels + 3));

  // PCA panel: 6x4 patches of 64x64 pixels, each one flat colour, the colours of the row's PCA.
  const { row, meta: shardMeta } = await readRowAt(await locateRow(await openReadOnly(cache), { key: 'a.png' }, cache));
  const expected = scoresToRgb(principalComponents(row.patches, 24, TINY_TEST_MODEL.hiddenSize, 3), 24);
  const left = 384 + PANEL_GAP;
  for (let i = 0; i < 4; i++) {
    for (let j = 0; j < 6; j++) {
      const colour = Array.from(expected.subarray((i * 6 + j) * 3, (i * 6 + j) * 3 + 3));
      for (const [dx, dy] of [[0, 0], [63, 0], [0, 63], [63, 63], [31, 17]]) assert.deepEqual(px(left + j * 64 + dx!, i * 64 + dy!), colour, `patch (${i}, ${j})`);
    }
  }
  assert.equal(shardMeta.model.patchSize, 16);

  // Original panel: the crop box's left edge is at x = 10 * 256/120 = 21.3 (stroke 2 px), its
  // right edge at 190 * 256/120 = 405.3; left of the box is image, not box colour.
  const orig = 2 * (384 + PANEL_GAP);
  const isBox = ([r, g, b]: number[]) => r! > 200 && g! < 90 && b! > 40 && b! < 130;
  assert.ok(isBox(px(orig + 22, 128)), `left edge ${px(orig + 22, 128)}`);
  assert.ok(isBox(px(orig + 404, 128)), `right edge ${px(orig + 404, 128)}`);
  assert.ok(!isBox(px(orig + 10, 128)) && !isBox(px(orig + 415, 128)), 'outside the box is the image');

  // Without the image: the PCA panel alone.
  const alone = await inspect(cache, { key: 'a.png', pca: path.join(dir, 'alone.png'), images: path.join(dir, 'nowhere') });
  assert.equal(alone.imageNotFound, path.join(dir, 'nowhere', 'a.png'));
  const m = await sharp(path.join(dir, 'alone.png')).metadata();
  assert.deepEqual([m.width, m.height], [384, 256]);
});

test('PCA matches numpy: variances and components of a matrix with a planted spectrum', async () => {
  const n = 200;
  const d = 48;
  const x = new Float32Array(n * d);
  const noise = values(n * d, 11);
  const dirs = [values(d, 21), values(d, 22), values(d, 23), values(d, 24)];
  const coef = values(n * 4, 31);
  for (let r = 0; r < n; r++) {
    for (let i = 0; i < d; i++) {
      let v = 0.05 * noise[r * d + i]! + 3;
      for (let c = 0; c < 4; c++) v += (8 / (c + 1)) * coef[r * 4 + c]! * dirs[c]![i]!;
      x[r * d + i] = v;
    }
  }
  const file = path.join(dir, 'matrix.f32');
  fs.writeFileSync(file, x);
  const reference = await pythonJson<{ variances: number[]; components: number[][]; total: number }>(['-c', `
import json, sys, numpy as np
x = np.fromfile(sys.argv[1], dtype='<f4').astype(np.float64).reshape(${n}, ${d})
xc = x - x.mean(axis=0)
u, s, vt = np.linalg.svd(xc, full_matrices=False)
print(json.dumps({"variances": (s[:3] ** 2 / (${n} - 1)).tolist(), "components": vt[:3].tolist(), "total": float((xc ** 2).sum() / (${n} - 1))}))
`, file]);
  const pca = principalComponents(x, n, d, 3);
  for (let c = 0; c < 3; c++) {
    assert.ok(Math.abs(pca.variances[c]! - reference.variances[c]!) < 1e-6 * reference.variances[0]!, `variance ${c}: ${pca.variances[c]} vs ${reference.variances[c]}`);
    let dot = 0;
    for (let i = 0; i < d; i++) dot += pca.components[c * d + i]! * reference.components[c]![i]!;
    assert.ok(Math.abs(Math.abs(dot) - 1) < 1e-8, `component ${c}: |cos| = ${Math.abs(dot)}`);
  }
  assert.ok(Math.abs(pca.totalVariance - reference.total) < 1e-6 * reference.total);
  const rgb = scoresToRgb(pca, n);
  for (let c = 0; c < 3; c++) {
    const channel = Array.from({ length: n }, (_, r) => rgb[r * 3 + c]!);
    assert.deepEqual([Math.min(...channel), Math.max(...channel)], [0, 255]);
  }
  // Fewer rows than components: finite, and a flat component is mid-grey.
  const tiny = principalComponents(x.subarray(0, 2 * d), 2, d, 3);
  assert.ok(Array.from(tiny.scores).every(Number.isFinite));
  assert.deepEqual(Array.from(scoresToRgb(tiny, 2)), [255, 128, 128, 0, 128, 128]);
});

test('the PCA panel of a row with one patch is grey, not an error', () => {
  const { rgb } = pcaPanelPixels({ patches: values(HIDDEN, 5), gridH: 1, gridW: 1 }, HIDDEN, 2);
  assert.deepEqual(Array.from(rgb), Array(12).fill(128));
});

test('runInspect prints the summary, a row, and JSON', async () => {
  const capture = async (opts: Parameters<typeof runInspect>[1], target = parquet) => {
    let out = '';
    assert.equal(await runInspect(target, opts, { write: (chunk: string) => ((out += chunk), true) }), 0);
    return out;
  };
  const summary = await capture({});
  assert.match(summary, /rows {8}300 in 1 shard/);
  assert.match(summary, /buckets {5}256x256: 100, 320x192: 100, 192x320: 100/);
  const row = await capture({ row: 0 }, cache);
  assert.match(row, /shards\/part-0-00001\.parquet row 0\n {2}key/);
  const json = JSON.parse(await capture({ json: true }, cache)) as { summary: { rows: number; failed: number } };
  assert.deepEqual([json.summary.rows, json.summary.failed], [2, 0]);
  const { name } = await onlyShard(cache);
  assert.equal(name, 'shards/part-0-00001.parquet');
});
