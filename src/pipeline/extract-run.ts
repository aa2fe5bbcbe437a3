/**
 * The extract run, as stages handed to each other: one image travels source → read + hash → (skip
 * if cached) → image stage (decode, resize, normalise) → scheduler (batch, model, split) → row
 * writer (shard). Stages overlap: decoding runs on sharp's threads and the resize workers while
 * the model computes, and rows are written while the next batch runs. A fixed number of image
 * slots (sizing.ts) bounds memory.
 */
import { createHash } from 'node:crypto';
import pLimit from 'p-limit';
import type { CacheState } from '../cache/manifest.js';
import type { ErrorsLog } from '../cache/errors-log.js';
import type { ShardSink } from '../cache/shard-sink.js';
import type { ModelInfo } from '../model/info.js';
import { releaseBuffer } from '../core/release-buffer.js';
import { describeOrigin, sameOrigin, type SourceImage, type SourceItem } from '../source/types.js';
import { ImageFailure, type PreparedPixels } from './prepare.js';
import type { Progress } from './progress.js';
import { Lookahead } from './lookahead.js';
import { RowWriter } from './row-writer.js';
import { ModelScheduler, type ModelRunner } from './scheduler.js';
import { Semaphore } from './semaphore.js';
import { queueSizes } from './sizing.js';
import { RunTally, type ExtractStats } from './tally.js';
import { FatalError, FirstError, TaskGroup } from './tasks.js';

export interface ExtractRunOptions {
  /** This worker's share of the inputs, only the failed ones with --retry-failed (source/inputs.ts picks them). */
  sources: AsyncIterable<SourceItem>;
  partId: string;
  model: ModelRunner;
  info: ModelInfo;
  /** With `hash`, the result carries the bytes' sha256 (ImagePreparer.prepare makes it off the main thread). */
  prepare: (bytes: Buffer, image: SourceImage, hash: boolean) => Promise<PreparedPixels>;
  /** Takes pixels back once the model is done with them (ImagePreparer.recycle). */
  recycle?: (plane: Float32Array) => void;
  state: CacheState;
  sink: ShardSink;
  errors: ErrorsLog;
  keepRegisters: boolean;
  /** --pool (default 1). */
  pool?: number;
  batchSize: number;
  /** Bytes of the largest bucket's input tensor (float32), for the queue sizes. */
  imageBytes: number;
  /** Images decoded at once (sharp + preprocessing). */
  decodeConcurrency: number;
  progress: Progress;
  /** Set when SIGINT/SIGTERM asks the run to stop after the work in flight. */
  stopRequested: () => boolean;
}

export async function runExtraction(o: ExtractRunOptions): Promise<ExtractStats> {
  const tally = new RunTally(o.errors, o.progress);
  const failure = new FirstError();
  const sizes = queueSizes(o.batchSize, o.decodeConcurrency, o.imageBytes);
  const slots = new Semaphore(sizes.imageSlots);
  const lookahead = new Lookahead(o.batchSize, () => scheduler.queue);
  const writer = new RowWriter({ state: o.state, partId: o.partId, sink: o.sink, tally });
  const scheduler = new ModelScheduler({
    model: o.model, info: o.info, batchSize: o.batchSize, maxWaiting: sizes.maxWaiting, keepRegisters: o.keepRegisters, pool: o.pool, failure, recycle: o.recycle,
    onQueueChange: () => lookahead.changed(),
    onRows: (batch, rows) => writer.write(batch, rows).finally(() => slots.release(batch.length)),
    onBatchFailed: async (batch, reason) => {
      for (const p of batch) await tally.failed(p.key, p.display, 'infer', reason);
      slots.release(batch.length);
    },
  });

  /** Read, then the rest; the file's bytes are freed as soon as the image stage is done with them. */
  const handleImage = async (image: SourceImage) => {
    let bytes: Buffer;
    try {
      bytes = await image.read();
    } catch (e) {
      slots.release(1);
      return tally.failed(image.key, image.display, 'read', (e as Error).message);
    }
    try {
      await handleBytes(image, bytes);
    } finally {
      // Left to the collector, files' bytes drove this thread's full collections (src/core/release-buffer.ts).
      releaseBuffer(bytes);
    }
  };

  /** Hash, skip when cached, prepare, hand to the scheduler; an image's slot is freed where it leaves. */
  const handleBytes = async (image: SourceImage, bytes: Buffer) => {
    // A cached key is hashed here, to be skipped when its bytes are the same; a new key's hash is
    // made by the image stage beside its decode, off this thread (1.7 ms for a 2.5 MB photo).
    const cached = o.state.keyToEntry.get(image.key);
    const known = cached ? createHash('sha256').update(bytes).digest('hex') : undefined;
    if (cached) {
      if (cached.sha256 === known) {
        tally.skipped(image.key);
        slots.release(1);
        return;
      }
      if (cached.origin && !sameOrigin(cached.origin, image.origin)) {
        // Another input's image holds the key: never replaced silently (a changed image of the same input is).
        slots.release(1);
        return tally.duplicate(image.key, image.display, describeOrigin(cached.origin));
      }
      writer.markStale(image.key);
    }
    let prepared: PreparedPixels;
    await lookahead.enter();
    try {
      prepared = await o.prepare(bytes, image, known === undefined);
    } catch (e) {
      slots.release(1);
      if (!(e instanceof ImageFailure)) throw e;
      return tally.failed(image.key, image.display, e.stage, e.message);
    } finally {
      lookahead.leave();
    }
    const sha256 = known ?? prepared.sha256;
    if (sha256 === undefined) throw new Error(`the image stage gave no sha256 for ${image.display}`);
    scheduler.add({ ...prepared, key: image.key, sha256, display: image.display, origin: image.origin, bucketKey: `${prepared.bucketWidth}x${prepared.bucketHeight}` });
  };

  const decodeLimit = pLimit(o.decodeConcurrency);
  const decoding = new TaskGroup(failure);
  const seen = new Set<string>();
  for await (const item of o.sources) {
    if (failure.failed || o.stopRequested()) break;
    if ('problem' in item) {
      await tally.rejected(item.problem.key, item.problem.display, item.problem.reason);
      continue;
    }
    const image = item.image;
    if (seen.has(image.key)) {
      tally.found();
      await tally.duplicate(image.key, image.display, 'an earlier input of this run');
      continue;
    }
    seen.add(image.key);
    tally.found();
    await slots.acquire();
    // From its slot until it is added (or fails) the image is on its way: an idle model's partial batch waits for it (scheduler.ts).
    scheduler.coming();
    decoding.add(decodeLimit(() => handleImage(image)).finally(() => scheduler.arrived()));
  }
  tally.allFound();
  const stopped = o.stopRequested() && !failure.failed;

  // Everything decoded or decoding goes through inference and into shards, also when stopping.
  // What waits in partial batches goes as soon as the last decode ends, not after the writes.
  await decoding.settle();
  await scheduler.finish();
  if (!failure.failed) await writer.finish().catch((e) => failure.record(e));
  const stats = tally.finish(stopped);
  if (failure.failed) throw new RunFailure(failure.error instanceof FatalError ? failure.error.message : failure.error, stats);
  return stats;
}

/** The run could not go on; `stats` says what had been done (committed shards are kept). */
export class RunFailure extends Error {
  constructor(
    readonly cause: unknown,
    readonly stats: ExtractStats,
  ) {
    super(cause instanceof Error ? cause.message : String(cause));
  }
}
