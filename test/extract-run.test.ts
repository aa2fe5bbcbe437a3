import { createHash } from 'node:crypto';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { CacheState } from '../src/cache/manifest.js';
import { ErrorsLog } from '../src/cache/errors-log.js';
import { ShardSink } from '../src/cache/shard-sink.js';
import { readFeatureRows } from '../src/shard/shard-reader.js';
import type { WireTensor } from '../src/model/ort-worker.js';
import { runExtraction } from '../src/pipeline/extract-run.js';
import type { PreparedPixels } from '../src/pipeline/prepare.js';
import type { ModelRunner } from '../src/pipeline/scheduler.js';
import { createProgress } from '../src/pipeline/progress.js';
import type { SourceItem } from '../src/source/types.js';
import { fileImage } from '../src/source/file-image.js';
import { HIDDEN, MODEL, NUM_REGISTERS, shardMeta } from './fixtures/feature-rows.js';
import { tempDir } from './helpers/temp.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A model that takes `ms` per batch (`serial`: one batch at a time, in order, as the ORT worker runs them) and answers, for each image, tokens whose every value is the
 * image's id (the first pixel its preparer wrote): rows can be traced back to their images.
 */
function scriptedModel(ms: number, serial = false) {
  const batches: Array<{ size: number; shape: string; startedBeforeNext: boolean }> = [];
  let prepared = 0;
  let given = 0;
  let handed = 0;
  let previous: Promise<unknown> = Promise.resolve();
  const model: ModelRunner = {
    async run(feeds) {
      const x = feeds.pixel_values!;
      const [n, , h, w] = x.dims as [number, number, number, number];
      batches.push({ size: n, shape: `${w}x${h}`, startedBeforeNext: given === handed + n });
      handed += n;
      const turn = serial ? previous.then(() => sleep(ms)) : sleep(ms);
      previous = turn;
      await turn;
      const tokens = 1 + NUM_REGISTERS + (h / MODEL.patchSize) * (w / MODEL.patchSize);
      const out = new Float32Array(n * tokens * HIDDEN);
      const plane = 3 * h * w;
      for (let b = 0; b < n; b++) out.fill((x.data as Float32Array)[b * plane]!, b * tokens * HIDDEN, (b + 1) * tokens * HIDDEN);
      return { last_hidden_state: { type: 'float32', data: out, dims: [n, tokens, HIDDEN] } satisfies WireTensor };
    },
  };
  /** countPrepared: images prepared and not yet handed to the model, counting the one just prepared; sourceGave: the source yielded one more. */
  return { model, batches, countPrepared: () => ++prepared - handed, sourceGave: () => given++ };
}

async function extractWith(images: number, bucketOf: (k: number) => [number, number], modelMs: number, prepareMs: number, serial = false, sourceMs = 0) {
  const dir = tempDir();
  const files = path.join(dir, 'files');
  fs.mkdirSync(files);
  const ids = new Map<string, number>();
  const sources: SourceItem[] = [];
  for (let k = 0; k < images; k++) {
    const key = `img${k}.png`;
    fs.writeFileSync(path.join(files, key), `image ${k}`);
    ids.set(key, k + 1);
    sources.push({ image: fileImage(key, path.join(files, key), key) });
  }
  const out = path.join(dir, 'cache');
  fs.mkdirSync(out);
  const state = await CacheState.open(out, '0');
  const sink = new ShardSink({ state, partId: '0', format: 'parquet', meta: shardMeta('float32', false) });
  const fake = scriptedModel(modelMs, serial);
  let preparing = 0;
  /** Most images prepared at once after the start (the model has had three batches), and most prepared ahead of it. */
  const most = { preparing: 0, ahead: 0 };
  const stats = await runExtraction({
    sources: (async function* () {
      for (const item of sources) {
        if (sourceMs) await sleep(sourceMs);
        fake.sourceGave();
        yield item;
      }
    })(),
    partId: '0',
    model: fake.model,
    info: MODEL,
    prepare: async (bytes, _image, hash): Promise<PreparedPixels> => {
      if (++preparing && fake.batches.length >= 3) most.preparing = Math.max(most.preparing, preparing);
      await sleep(prepareMs);
      preparing--;
      const k = Number(/image (\d+)/.exec(bytes.toString())![1]);
      const [w, h] = bucketOf(k);
      most.ahead = Math.max(most.ahead, fake.countPrepared());
      return {
        width: w, height: h, bucketWidth: w, bucketHeight: h, crop: { x: 0, y: 0, w, h }, pixels: new Float32Array(3 * w * h).fill(k + 1),
        ...(hash ? { sha256: createHash('sha256').update(bytes).digest('hex') } : {}),
      };
    },
    state, sink, errors: await ErrorsLog.open(out, '0'), keepRegisters: false, batchSize: 4, imageBytes: 3 * 64 * 64 * 4, decodeConcurrency: 4,
    progress: createProgress({ label: 'test', quiet: true }), stopRequested: () => false,
  });
  const shards = await sink.close();
  const rows = [];
  for (const s of shards) rows.push(...(await readFeatureRows(path.join(out, s.file))));
  return { stats, batches: fake.batches, rows, ids, most };
}

test('an idle model waits for the images on their way to fill a batch; once it is the bottleneck, batches are full', async () => {
  // Decoding (5 ms an image, four at once) outpaces the model (60 ms a batch): one bucket, 16 images.
  const { stats, batches, rows, ids } = await extractWith(16, () => [32, 32], 60, 5);
  assert.equal(stats.extracted, 16);
  assert.deepEqual(batches.map((b) => b.size), [4, 4, 4, 4], 'the first four were decoding together: one call, not one each');
  assert.equal(batches.reduce((a, b) => a + b.size, 0), 16);
  // Every image once, each row holding its own image's features (batch order kept).
  assert.deepEqual(rows.map((r) => r.key).sort(), [...ids.keys()].sort());
  for (const r of rows) {
    assert.equal(r.cls[0], ids.get(r.key), r.key);
    assert.equal(r.patches[r.patches.length - 1], ids.get(r.key), r.key);
  }
});

test('with no image on its way, an idle model gets a partial batch at once: a slow source is never waited for', async () => {
  // The source yields an image every 40 ms; preparing takes 2 ms and the model 5 ms.
  const { stats, batches } = await extractWith(5, () => [32, 32], 5, 2, false, 40);
  assert.equal(stats.extracted, 5);
  assert.deepEqual(batches.map((b) => b.size), [1, 1, 1, 1, 1]);
  assert.ok(batches.every((b) => b.startedBeforeNext), 'each image reached the model before the source gave the next');
});

test('over several buckets, an idle model waits for no more than a batch\'s worth of images', async () => {
  // Decoding is the slow stage (10 ms an image, four at once; the model 1 ms a batch) and images
  // cycle over three buckets, so partial batches would otherwise wait for maxWaiting (16) images.
  const shapes: Array<[number, number]> = [[32, 32], [48, 32], [32, 48]];
  const { stats, most } = await extractWith(30, (k) => shapes[k % 3]!, 1, 10);
  assert.equal(stats.extracted, 30);
  // Measured 4-5 (a batch, and one more while the model answered); waiting for every image on its way gave 10.
  assert.ok(most.ahead <= 6, `images prepared ahead of the model: ${most.ahead}`);
});

test('with many buckets and a slow model, images are batched per bucket and none is lost', async () => {
  const shapes: Array<[number, number]> = [[32, 32], [48, 32], [32, 48]];
  const { stats, batches, rows } = await extractWith(30, (k) => shapes[k % 3]!, 30, 1);
  assert.equal(stats.extracted, 30);
  assert.equal(rows.length, 30);
  for (const b of batches) assert.ok(b.size >= 1 && b.size <= 4);
  const perShape = new Map<string, number>();
  for (const b of batches) perShape.set(b.shape, (perShape.get(b.shape) ?? 0) + b.size);
  assert.deepEqual([...perShape.values()], [10, 10, 10]);
});

test('while the model is the slow stage, images are prepared one at a time and at most a batch ahead', async () => {
  // Preparing (10 ms an image) is far faster than the model (150 ms a batch of 4): without a bound
  // every decoder would work and prepared tensors would fill every image slot.
  const { stats, batches, most } = await extractWith(24, () => [32, 32], 150, 10, true);
  assert.equal(stats.extracted, 24);
  assert.equal(batches.reduce((a, b) => a + b.size, 0), 24);
  assert.ok(batches.slice(1, -1).every((b) => b.size === 4), `and batches stay full: ${batches.map((b) => b.size)}`);
  assert.equal(most.preparing, 1, 'once the model holds its queue, one image is prepared at a time');
  assert.ok(most.ahead <= 4, `at most one batch waits for the model: ${most.ahead}`);
});
