/**
 * The extract run's stages, each alone through its seam: the scheduler with a scripted model and
 * no cache, the row writer on a real cache with no model, the tally with a real errors log.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { ErrorsLog } from '../src/cache/errors-log.js';
import { CacheState } from '../src/cache/manifest.js';
import { ShardSink } from '../src/cache/shard-sink.js';
import type { WireTensor } from '../src/model/ort-worker.js';
import { createProgress } from '../src/pipeline/progress.js';
import { RowWriter } from '../src/pipeline/row-writer.js';
import { ModelScheduler, type ModelRunner, type PendingImage } from '../src/pipeline/scheduler.js';
import { AUTO_TOKEN_BUDGET, MAX_AUTO_BATCH, MODEL_QUEUE_DEPTH, autoBatchSize, queueSizes } from '../src/pipeline/sizing.js';
import { RunTally } from '../src/pipeline/tally.js';
import { FatalError, FirstError } from '../src/pipeline/tasks.js';
import type { FeatureRow } from '../src/shard/schema.js';
import { readFeatureRows } from '../src/shard/shard-reader.js';
import { HIDDEN, MODEL, NUM_REGISTERS, makeRow, shardMeta } from './fixtures/feature-rows.js';
import { tempDir } from './helpers/temp.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const quiet = () => createProgress({ label: 'test', quiet: true });

/** An image of `id` in a 32x32 bucket: every pixel holds the id, so its row can be traced. */
function pending(id: number, side = 32): PendingImage {
  return {
    key: `img${id}`, sha256: String(id).padStart(64, '0'), display: `img${id}.png`, origin: { file: `img${id}.png` }, bucketKey: `${side}x${side}`,
    width: 100, height: 90, bucketWidth: side, bucketHeight: side, crop: { x: 1, y: 2, w: 98, h: 87 },
    pixels: new Float32Array(3 * side * side).fill(id),
  };
}

/**
 * A model taking `ms` a batch that answers each image with tokens equal to its id; it counts how
 * many batches it holds at once. `sequential`: calls run one after another, as on the ONNX Runtime
 * worker (a call sent while another runs waits for it), and it counts the calls sent that way.
 */
function scriptedModel(ms: number, opts: { failOn?: number; extraTokens?: number; sequential?: boolean } = {}) {
  let running = 0;
  let previous: Promise<unknown> = Promise.resolve();
  const seen = { mostAtOnce: 0, sentWhileBusy: 0, batches: [] as number[][] };
  const model: ModelRunner = {
    async run(feeds) {
      const x = feeds.pixel_values!;
      const [n, , h, w] = x.dims as [number, number, number, number];
      const plane = 3 * h * w;
      const ids = Array.from({ length: n }, (_, b) => (x.data as Float32Array)[b * plane]!);
      seen.batches.push(ids);
      if (running > 0) seen.sentWhileBusy++;
      running++;
      seen.mostAtOnce = Math.max(seen.mostAtOnce, running);
      const turn = opts.sequential ? previous.then(() => sleep(ms)) : sleep(ms);
      previous = turn;
      await turn;
      running--;
      if (ids.includes(opts.failOn ?? -1)) throw new Error('out of memory on this batch\nstack...');
      const tokens = 1 + NUM_REGISTERS + (h / MODEL.patchSize) * (w / MODEL.patchSize) + (opts.extraTokens ?? 0);
      const out = new Float32Array(n * tokens * HIDDEN);
      ids.forEach((id, b) => out.fill(id, b * tokens * HIDDEN, (b + 1) * tokens * HIDDEN));
      return { last_hidden_state: { type: 'float32', data: out, dims: [n, tokens, HIDDEN] } satisfies WireTensor };
    },
  };
  return { model, seen };
}

function scheduler(model: ModelRunner, batchSize: number, recycle?: (plane: Float32Array) => void, slowCallMs?: number) {
  const rows: FeatureRow[] = [];
  const failed: Array<{ keys: string[]; reason: string }> = [];
  const failure = new FirstError();
  const s = new ModelScheduler({
    model, info: MODEL, batchSize, maxWaiting: batchSize * 4, keepRegisters: true, failure, recycle, slowCallMs,
    onRows: async (_batch, r) => void rows.push(...r),
    onBatchFailed: async (batch, reason) => void failed.push({ keys: batch.map((p) => p.key), reason }),
  });
  return { s, rows, failed, failure };
}

test('scheduler: every image becomes one row of its own tokens; the model never holds more than its queue depth', async () => {
  const { model, seen } = scriptedModel(20);
  const { s, rows, failure } = scheduler(model, 2);
  for (let id = 1; id <= 7; id++) s.add(pending(id));
  await s.finish();
  assert.equal(failure.failed, false);
  assert.deepEqual(rows.map((r) => r.key).sort(), ['img1', 'img2', 'img3', 'img4', 'img5', 'img6', 'img7']);
  for (const r of rows) {
    const id = Number(r.key.slice(3));
    assert.deepEqual([r.gridH, r.gridW, r.cropX, r.cropY, r.cropW, r.cropH, r.width, r.height], [2, 2, 1, 2, 98, 87, 100, 90]);
    assert.ok(r.cls.every((v) => v === id) && r.patches.every((v) => v === id) && r.registers!.every((v) => v === id), r.key);
    assert.equal(r.patches.length, 4 * HIDDEN);
    assert.equal(r.registers!.length, NUM_REGISTERS * HIDDEN);
  }
  assert.equal(seen.mostAtOnce, MODEL_QUEUE_DEPTH, `batches at the model at once: ${seen.mostAtOnce}`);
  assert.equal(seen.batches[0]!.length, 1, 'the first image goes to the idle model alone');
  assert.equal(seen.batches.flat().length, 7);
});

test('scheduler: while the model\'s calls are slow (slowCallMs or more) it holds one batch, never a second ready behind it', async () => {
  for (const { slowCallMs, most } of [{ slowCallMs: 10, most: 1 }, { slowCallMs: 1000, most: MODEL_QUEUE_DEPTH }]) {
    const { model, seen } = scriptedModel(30);
    const { s, rows, failure } = scheduler(model, 2, undefined, slowCallMs);
    const full: boolean[] = [];
    for (let id = 1; id <= 7; id++) {
      s.add(pending(id));
      full.push(s.queue.full);
      await sleep(12);
    }
    await s.finish();
    assert.equal(failure.failed, false);
    assert.equal(rows.length, 7);
    assert.equal(seen.mostAtOnce, most, `slowCallMs ${slowCallMs}: batches at the model at once`);
    // The image stage paces itself on this: with slow calls one batch at the model already fills it.
    if (most === 1) assert.ok(full.slice(1).every(Boolean), JSON.stringify(full));
  }
  // A call's time is its own, not its wait behind the one before: 100 ms calls queued two deep
  // answer 200 ms after they were sent, yet stay short against 150 ms (50 ms for timer lateness on
  // a busy machine), so the model never idles after its first call (the second is sent to an idle
  // model, every later one behind another).
  const { model, seen } = scriptedModel(100, { sequential: true });
  const { s, rows } = scheduler(model, 1, undefined, 150);
  for (let id = 1; id <= 9; id++) s.add(pending(id));
  await s.finish();
  assert.equal(rows.length, 9);
  assert.equal(seen.sentWhileBusy, 7, JSON.stringify(seen));
});

test('scheduler: flipped copies go to the model with their images, at most batchSize per call; each row gets its own', async () => {
  for (const batchSize of [1, 3]) {
    const { model, seen } = scriptedModel(1);
    const { s, rows, failure } = scheduler(model, batchSize);
    // A copy's pixels hold 100 + the id (scriptedModel fails a batch holding -1).
    for (let id = 1; id <= 3; id++) s.add({ ...pending(id), mirrored: new Float32Array(3 * 32 * 32).fill(100 + id) });
    await s.finish();
    assert.equal(failure.failed, false);
    // batch 1 (an int8 model) still sees one image a call; batch 3 runs 6 images as 3 + 3.
    assert.ok(seen.batches.every((b) => b.length <= batchSize), JSON.stringify(seen.batches));
    assert.deepEqual(seen.batches.flat().sort((a, b) => a - b), [1, 2, 3, 101, 102, 103], 'every image and every copy once');
    assert.equal(rows.length, 3);
    for (const r of rows) {
      const id = Number(r.key.slice(3));
      assert.equal(r.flip, false);
      assert.ok(r.patches.every((v) => v === id) && r.mirrored!.patches.every((v) => v === 100 + id) && r.mirrored!.cls.every((v) => v === 100 + id), r.key);
      assert.ok(r.mirrored!.registers!.every((v) => v === 100 + id));
    }
  }
});

test('scheduler: planes go back for reuse once copied into a batch, single planes once the model gives them back; batch tensors are reused, whatever their size', async () => {
  // 1024²: a batch of three is a 38 MB tensor, as large as the slow model's batches that are kept too.
  for (const [batchSize, side] of [[1, 32], [3, 32], [3, 1024]] as const) {
    const { model, seen } = scriptedModel(2);
    const inputs: ArrayBufferLike[] = [];
    // The model gives its input back, as an OrtWorker does.
    const givingBack: ModelRunner = {
      async run(feeds, outputs, inputsBack) {
        const answer = await model.run(feeds, outputs);
        inputs.push(feeds.pixel_values!.data.buffer);
        inputsBack?.([feeds.pixel_values!.data.buffer as ArrayBuffer]);
        return answer;
      },
    };
    const recycled: Float32Array[] = [];
    // A later image's pixels overwrite a plane given back: the batch must already hold its copy.
    const { s, rows, failure } = scheduler(givingBack, batchSize, (plane) => recycled.push(plane.fill(-1)));
    for (let id = 1; id <= 12; id++) s.add(pending(id, side));
    await s.finish();
    assert.equal(failure.failed, false);
    assert.equal(rows.length, 12);
    for (const r of rows) assert.ok(r.patches.every((v) => v === Number(r.key.slice(3))), `${r.key}, batch ${batchSize}`);
    assert.equal(recycled.length, 12, `every plane given back once, batch ${batchSize}`);
    assert.ok(recycled.every((p) => p.length === 3 * side * side));
    const full = seen.batches.map((ids, k) => ({ ids, buffer: inputs[k] })).filter((b) => b.ids.length === batchSize);
    if (batchSize > 1) {
      assert.ok(full.length >= 3, JSON.stringify(seen.batches));
      assert.ok(new Set(full.map((b) => b.buffer)).size < full.length, `a batch tensor given back carried a later batch (${side}²)`);
    }
  }
});

test('scheduler: a batch the model fails on is reported image by image; the other batches still become rows', async () => {
  const { model } = scriptedModel(5, { failOn: 3 });
  const { s, rows, failed, failure } = scheduler(model, 1);
  for (let id = 1; id <= 4; id++) s.add(pending(id));
  await s.finish();
  assert.equal(failure.failed, false);
  assert.deepEqual(failed, [{ keys: ['img3'], reason: 'out of memory on this batch' }]);
  assert.deepEqual(rows.map((r) => r.key).sort(), ['img1', 'img2', 'img4']);
});

test('scheduler: a model that breaks the token layout ends the run with one line, and no batch is fed after it', async () => {
  const { model, seen } = scriptedModel(5, { extraTokens: 1 });
  const { s, rows, failure } = scheduler(model, 1);
  for (let id = 1; id <= 6; id++) s.add(pending(id));
  await s.finish();
  assert.ok(failure.error instanceof FatalError, String(failure.error));
  assert.match((failure.error as Error).message, /the model does not fit its metadata; check --patch-size\/--num-registers or reconvert it/);
  assert.deepEqual(rows, []);
  assert.ok(seen.batches.length <= MODEL_QUEUE_DEPTH + 1, `batches run after the failure: ${seen.batches.length}`);
});

async function openCache() {
  const dir = tempDir();
  const state = await CacheState.open(dir, '0');
  const errors = await ErrorsLog.open(dir, '0');
  const sink = new ShardSink({ state, partId: '0', format: 'parquet', meta: shardMeta('float32', false), maxShardRows: 1 });
  const tally = new RunTally(errors, quiet());
  return { dir, state, sink, tally, writer: new RowWriter({ state, partId: '0', sink, tally }) };
}

const asPending = (row: FeatureRow): PendingImage => ({ ...pending(0), key: row.key, sha256: row.sha256, bucketKey: `${row.bucketWidth}x${row.bucketHeight}` });

/** The rows committed so far, read back from the shards (the sink's open shard is closed first). */
async function storedRows(dir: string, state: CacheState, sink: ShardSink): Promise<FeatureRow[]> {
  await sink.close();
  const rows: FeatureRow[] = [];
  for (const file of [...state.shards.keys()].sort()) rows.push(...(await readFeatureRows(path.join(dir, file))));
  return rows;
}

test('row writer: a changed image loses its old row before the new one is written; stale keys whose image then failed leave too', async () => {
  const { dir, state, sink, writer, tally } = await openCache();
  const old = [makeRow(1, false, 'a.jpg'), makeRow(2, false, 'b.jpg'), makeRow(3, false, 'c.jpg')];
  await writer.write(old.map(asPending), old);
  await writer.finish();
  assert.deepEqual((await storedRows(dir, state, sink)).map((r) => r.key).sort(), ['a.jpg', 'b.jpg', 'c.jpg']);

  // a.jpg changed and is extracted again; b.jpg changed but failed to decode; c.jpg is untouched.
  writer.markStale('a.jpg');
  writer.markStale('b.jpg');
  const fresh = { ...makeRow(4, false, 'a.jpg') };
  await writer.write([asPending(fresh)], [fresh]);
  const afterWrite = await storedRows(dir, state, sink);
  assert.deepEqual(afterWrite.map((r) => r.key).sort(), ['a.jpg', 'c.jpg'], 'every stale key known by then goes in the same rewrite');
  assert.equal(afterWrite.find((r) => r.key === 'a.jpg')!.sha256, fresh.sha256);
  // c.jpg changes after the last batch and then fails: only finish() can take its old row out.
  writer.markStale('c.jpg');
  await writer.finish();
  assert.deepEqual((await storedRows(dir, state, sink)).map((r) => r.key).sort(), ['a.jpg']);
  assert.equal(state.keyToEntry.get('a.jpg')!.sha256, fresh.sha256);
  assert.deepEqual([state.keyToEntry.has('b.jpg'), state.keyToEntry.has('c.jpg')], [false, false]);
  assert.deepEqual([tally.stats.extracted, tally.stats.replaced], [4, 1]);
});

test('row writer: a key marked stale while a rewrite runs is removed before its new row, not forgotten', async () => {
  const { dir, state, sink, writer } = await openCache();
  const old = [makeRow(1, false, 'a.jpg'), makeRow(2, false, 'b.jpg')];
  await writer.write(old.map(asPending), old);
  await writer.finish();

  writer.markStale('a.jpg');
  const freshA = makeRow(3, false, 'a.jpg');
  let rewritten = false;
  const writing = writer.write([asPending(freshA)], [freshA]).then(() => (rewritten = true));
  // One turn of the event loop: a.jpg's shard is being rewritten (that takes file I/O and fsyncs) when b.jpg turns out changed.
  await new Promise((r) => setImmediate(r));
  assert.equal(rewritten, false, 'the rewrite is still running');
  writer.markStale('b.jpg');
  await writing;
  const freshB = makeRow(4, false, 'b.jpg');
  await writer.write([asPending(freshB)], [freshB]);
  await writer.finish();
  const stored = await storedRows(dir, state, sink);
  assert.deepEqual(stored.map((r) => [r.key, r.sha256]).sort(), [['a.jpg', freshA.sha256], ['b.jpg', freshB.sha256]]);
});

test('row writer: batches are committed in the order they were handed over, one at a time', async () => {
  const { dir, state, sink, writer } = await openCache();
  const rows = [1, 2, 3, 4].map((i) => makeRow(i, false, `k${i}`));
  await Promise.all(rows.map((r) => writer.write([asPending(r)], [r])));
  await writer.finish();
  // One row per shard (maxShardRows 1): shard order is commit order.
  assert.deepEqual((await storedRows(dir, state, sink)).map((r) => r.key), ['k1', 'k2', 'k3', 'k4']);
});

test('tally: failures are logged with their reason and grouped by kind, numbers and decoder names aside', async () => {
  const dir = tempDir();
  const errors = await ErrorsLog.open(dir, '0');
  const tally = new RunTally(errors, quiet());
  tally.found();
  tally.found();
  tally.found();
  await tally.failed('x.png', '/in/x.png', 'decode', 'vipspng: 40000x30000 is over the pixel limit 178956970');
  await tally.failed('y.png', '/in/y.png', 'decode', 'vipsjpeg: 9000x9000 is over the pixel limit 50000000');
  await tally.failed('z.png', '/in/z.png', 'read', 'EACCES: permission denied');
  tally.skipped('w.png');
  const stats = tally.finish(false);
  assert.deepEqual(stats.failuresByReason, { 'decode: NxN is over the pixel limit N': 2, 'read: permission denied': 1 });
  assert.deepEqual([stats.found, stats.failed, stats.skipped], [3, 3, 1]);
  assert.deepEqual([...errors.entries.keys()], ['x.png', 'y.png', 'z.png']);
  assert.equal(errors.entries.get('y.png')!.reason, 'vipsjpeg: 9000x9000 is over the pixel limit 50000000');
});

test('batch auto: the provider\'s token budget over the largest image\'s tokens, at least one image, at most MAX_AUTO_BATCH', () => {
  // ViT-S/16 with 4 registers: 224² is 201 tokens, 1024² is 4101.
  assert.deepEqual(autoBatchSize('cpu', 201), { size: 5, budget: AUTO_TOKEN_BUDGET.cpu });
  assert.equal(autoBatchSize('cpu', 1029).size, 1, '512² and up: one image a call on CPU');
  assert.equal(autoBatchSize('cpu', 4101).size, 1);
  assert.deepEqual(autoBatchSize('cuda', 4101), { size: 7, budget: AUTO_TOKEN_BUDGET.accelerator });
  assert.equal(autoBatchSize('webgpu', 1029).size, 31);
  assert.equal(autoBatchSize('cuda', 201).size, MAX_AUTO_BATCH);
  assert.equal(autoBatchSize('cuda', 100_000).size, 1, 'an image over the budget still goes, alone');
});

test('queue sizes: at most 64 MiB of tensors wait for the model, never less than one batch, never more than four', () => {
  const tensor = (side: number) => 3 * side * side * 4;
  // 1024²: 12.6 MB an image, so 5 wait (not 16); slots = waiting + decoders + the model's two batches.
  assert.deepEqual(queueSizes(4, 4, tensor(1024)), { maxWaiting: 5, imageSlots: 5 + 4 + MODEL_QUEUE_DEPTH * 4 });
  assert.equal(queueSizes(16, 4, tensor(1024)).maxWaiting, 16, 'a whole batch can always fill');
  assert.equal(queueSizes(4, 4, tensor(224)).maxWaiting, 16, 'small images: four batches wait, across buckets');
  assert.equal(queueSizes(1, 4, tensor(1024)).maxWaiting, 4);
});
