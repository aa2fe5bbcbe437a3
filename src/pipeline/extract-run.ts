/**
 * The staged extract run. One image travels: source → read + hash → (skip if cached) → decode +
 * resize + normalise → batch (per bucket) → inference (worker thread) → split → shard. Stages
 * overlap: decoding runs on sharp's threads and the resize workers while the model computes, and
 * rows are written while the next batch runs. A fixed number of image slots bounds memory.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import pLimit from 'p-limit';
import type { CacheState } from '../cache/manifest.js';
import type { ErrorsLog, ErrorStage } from '../cache/errors-log.js';
import type { FeatureRow } from '../cache/schema.js';
import type { ShardSink } from '../cache/shard-sink.js';
import { removeKeys } from '../cache/remove-keys.js';
import type { ModelInfo } from '../model/info.js';
import type { WireTensor } from '../model/ort-worker.js';
import { splitTokens, TokenLayoutError } from '../model/split.js';
import type { SourceItem, SourceImage } from '../source/types.js';
import { workerOfKey, type WorkerSlot } from '../source/partition.js';
import { Batcher } from './batcher.js';
import type { Progress } from './progress.js';
import { Semaphore } from './semaphore.js';

/** What the image stage gives for one image: provenance plus the model-ready tensor. */
export interface PreparedPixels {
  width: number;
  height: number;
  bucketWidth: number;
  bucketHeight: number;
  crop: { x: number; y: number; w: number; h: number };
  /** [3, bucketHeight, bucketWidth], normalised. */
  pixels: Float32Array;
}

/** Failure of one image; the run goes on. */
export class ImageFailure extends Error {
  constructor(
    readonly stage: ErrorStage,
    message: string,
  ) {
    super(message);
  }
}

/** What the run needs of a model session (an OrtWorker in extract). */
export interface ModelRunner {
  run(feeds: Record<string, WireTensor>, outputs?: string[]): Promise<Record<string, WireTensor>>;
}

export interface ExtractRunOptions {
  sources: AsyncIterable<SourceItem>;
  slot: WorkerSlot;
  partId: string;
  model: ModelRunner;
  info: ModelInfo;
  prepare: (bytes: Buffer, image: SourceImage) => Promise<PreparedPixels>;
  state: CacheState;
  sink: ShardSink;
  errors: ErrorsLog;
  keepRegisters: boolean;
  batchSize: number;
  /** Images decoded at once (sharp + preprocessing). */
  decodeConcurrency: number;
  /** Only these keys (--retry-failed). */
  onlyKeys?: ReadonlySet<string>;
  progress: Progress;
  /** Set when SIGINT/SIGTERM asks the run to stop after the work in flight. */
  stopRequested: () => boolean;
}

export interface ExtractStats {
  found: number;
  extracted: number;
  skipped: number;
  failed: number;
  replaced: number;
  perBucket: Record<string, number>;
  failuresByReason: Record<string, number>;
  seconds: number;
  stopped: boolean;
}

interface Pending extends PreparedPixels {
  key: string;
  sha256: string;
  display: string;
  bucketKey: string;
}

/**
 * The summary groups failures by kind: the reason's first clause, without the decoder's name
 * ("vipspng: ") and with numbers as N, so "40000x30000 ... over the limit" and "9000x9000 ..." count together.
 */
function failureKind(stage: ErrorStage, reason: string): string {
  const clause = reason.replace(/^\w+: /, '').split(/[:;(,]/)[0]!.replace(/\d+/g, 'N').trim();
  return `${stage}: ${clause.slice(0, 60)}`;
}

/**
 * A batch as one input tensor, built when the model is about to take it. Each image lets go of its
 * own pixels here, so an image in flight is held once; a batch of one is sent as it is, uncopied.
 */
function batchTensor(batch: Pending[]): Float32Array {
  if (batch.length === 1) {
    const only = batch[0]!.pixels;
    batch[0]!.pixels = NO_PIXELS;
    return only;
  }
  const plane = batch[0]!.pixels.length;
  const input = new Float32Array(plane * batch.length);
  batch.forEach((p, b) => {
    input.set(p.pixels, b * plane);
    p.pixels = NO_PIXELS;
  });
  return input;
}

const NO_PIXELS = new Float32Array(0);

/** Errors that end the run (disk full, unwritable output, a model that breaks its contract). */
class FatalError extends Error {}

/**
 * Batches handed to the model at once: one running and one ready to start, so the model never
 * waits for this thread, and no more, so batch tensors exist only for those two. When fewer are
 * queued and no batch is full, the fullest partial batch goes at once rather than waiting to
 * fill: when decoding keeps up, batches are full anyway; when it does not, waiting would only
 * idle the model.
 */
const MODEL_QUEUE_DEPTH = 2;

export async function runExtraction(o: ExtractRunOptions): Promise<ExtractStats> {
  const started = performance.now();
  const stats: ExtractStats = {
    found: 0, extracted: 0, skipped: 0, failed: 0, replaced: 0, perBucket: {}, failuresByReason: {}, seconds: 0, stopped: false,
  };
  const decodeLimit = pLimit(o.decodeConcurrency);
  const maxWaiting = o.batchSize * 4;
  const batcher = new Batcher<Pending>(o.batchSize, maxWaiting);
  // Enough slots that partial batches plus images being decoded can never hold all of them.
  const slots = new Semaphore(maxWaiting + o.decodeConcurrency + 2 * o.batchSize);
  const seen = new Set<string>();
  /** Keys whose bytes changed since they were stored; `pendingRemoval` still holds their old rows. */
  const stale = new Set<string>();
  const pendingRemoval = new Set<string>();
  let fatal: unknown;
  /** Tasks of one stage; the first error of any task ends the run. */
  const taskSet = () => {
    const live = new Set<Promise<void>>();
    return {
      add(p: Promise<void>) {
        const t = p.catch((e) => void (fatal ??= e)).finally(() => live.delete(t));
        live.add(t);
      },
      async settle() {
        while (live.size) await Promise.all([...live]);
      },
    };
  };
  const decoding = taskSet();
  const inferring = taskSet();
  let writeChain: Promise<void> = Promise.resolve();
  /** Full batches not yet handed to the model: they keep their images' pixels, not a batch tensor. */
  const ready: Pending[][] = [];
  let atModel = 0;

  const report = () => o.progress.update({ done: stats.extracted, failed: stats.failed, skipped: stats.skipped });

  const fail = async (key: string, display: string, stage: ErrorStage, reason: string) => {
    stats.failed++;
    const kind = failureKind(stage, reason);
    stats.failuresByReason[kind] = (stats.failuresByReason[kind] ?? 0) + 1;
    await o.errors.record({ key, path: display, stage, reason });
    report();
  };

  const writeBatch = async (batch: Pending[], rows: FeatureRow[]) => {
    // An old row must leave before its replacement is written. Rewriting a shard is costly, so
    // every stale key known by now goes in one rewrite (those not yet re-extracted are simply
    // missing until their batch is written; after a crash they are extracted again).
    if (batch.some((p) => pendingRemoval.has(p.key))) {
      await removeKeys(o.state, o.partId, pendingRemoval);
      pendingRemoval.clear();
    }
    stats.replaced += batch.filter((p) => stale.has(p.key)).length;
    await o.sink.write(rows);
    for (const p of batch) {
      o.errors.resolve(p.key);
      stats.perBucket[p.bucketKey] = (stats.perBucket[p.bucketKey] ?? 0) + 1;
    }
    stats.extracted += rows.length;
    report();
  };

  /** One batch on the model; its place in the model's queue is given back as soon as it answers. */
  const runModel = async (input: Float32Array, dims: number[]) => {
    atModel++;
    try {
      return await o.model.run({ pixel_values: { type: 'float32', data: input, dims } }, ['last_hidden_state']);
    } finally {
      atModel--;
      feedModel();
    }
  };

  const infer = async (batch: Pending[]) => {
    const first = batch[0]!;
    const input = batchTensor(batch);
    const gridH = Math.floor(first.bucketHeight / o.info.patchSize);
    const gridW = Math.floor(first.bucketWidth / o.info.patchSize);
    let rows: FeatureRow[];
    try {
      const hidden = (await runModel(input, [batch.length, 3, first.bucketHeight, first.bucketWidth])).last_hidden_state!;
      const groups = splitTokens(hidden.data as Float32Array, hidden.dims, o.info, gridH, gridW);
      rows = batch.map((p, b) => ({
        key: p.key, sha256: p.sha256, width: p.width, height: p.height,
        bucketWidth: p.bucketWidth, bucketHeight: p.bucketHeight, gridH, gridW,
        cropX: p.crop.x, cropY: p.crop.y, cropW: p.crop.w, cropH: p.crop.h,
        cls: groups[b]!.cls, patches: groups[b]!.patches,
        ...(o.keepRegisters ? { registers: groups[b]!.registers } : {}),
      }));
    } catch (e) {
      if (e instanceof TokenLayoutError) throw new FatalError(`${e.message}: the model does not fit its metadata; check --patch-size/--num-registers or reconvert it`);
      for (const p of batch) await fail(p.key, p.display, 'infer', e instanceof Error ? e.message.split('\n')[0]! : String(e));
      slots.release(batch.length);
      return;
    }
    // Writes stay in order and one at a time; inference of the next batch goes on meanwhile.
    writeChain = writeChain.then(() => writeBatch(batch, rows)).finally(() => slots.release(batch.length));
    await writeChain;
  };

  /** Tops the model's queue up: full batches first, in the order they filled, then the fullest partial one. */
  function feedModel(): void {
    while (!fatal && atModel < MODEL_QUEUE_DEPTH) {
      const batch = ready.shift() ?? batcher.takeFullest();
      if (!batch) return;
      inferring.add(infer(batch)); // infer() counts itself in atModel before its first await
    }
  }

  const handleImage = async (image: SourceImage) => {
    let bytes: Buffer;
    try {
      bytes = await fs.readFile(image.path);
    } catch (e) {
      slots.release(1);
      return fail(image.key, image.display, 'read', (e as Error).message);
    }
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const cached = o.state.keyToEntry.get(image.key);
    if (cached?.sha256 === sha256) {
      stats.skipped++;
      o.errors.resolve(image.key);
      slots.release(1);
      report();
      return;
    }
    if (cached) {
      stale.add(image.key);
      pendingRemoval.add(image.key);
    }
    let prepared: PreparedPixels;
    try {
      prepared = await o.prepare(bytes, image);
    } catch (e) {
      slots.release(1);
      if (!(e instanceof ImageFailure)) throw e;
      return fail(image.key, image.display, e.stage, e.message);
    }
    ready.push(...batcher.add({ ...prepared, key: image.key, sha256, display: image.display, bucketKey: `${prepared.bucketWidth}x${prepared.bucketHeight}` }));
    feedModel();
  };

  for await (const item of o.sources) {
    if (fatal || o.stopRequested()) break;
    if ('problem' in item) {
      if (workerOfKey(item.problem.key, o.slot.count) !== o.slot.index) continue;
      if (o.onlyKeys && !o.onlyKeys.has(item.problem.key)) continue;
      stats.found++;
      await fail(item.problem.key, item.problem.display, 'source', item.problem.reason);
      continue;
    }
    const image = item.image;
    if (workerOfKey(image.key, o.slot.count) !== o.slot.index) continue;
    if (o.onlyKeys && !o.onlyKeys.has(image.key)) continue;
    if (seen.has(image.key)) {
      await fail(image.key, image.display, 'source', 'duplicate key: two inputs give the same relative path; pass one root or rename');
      continue;
    }
    seen.add(image.key);
    stats.found++;
    o.progress.setTotal(stats.found, false);
    await slots.acquire();
    decoding.add(decodeLimit(() => handleImage(image)));
  }
  o.progress.setTotal(stats.found, true);
  stats.stopped = o.stopRequested() && !fatal;

  // Everything decoded or decoding goes through inference and into shards, also when stopping.
  // What waits in partial batches goes as soon as the last decode ends, not after the writes.
  await decoding.settle();
  ready.push(...batcher.drain());
  feedModel();
  await inferring.settle();
  await writeChain.catch((e) => void (fatal ??= e));
  // Changed images that then failed to decode lose their old row too: the cache reflects the files.
  if (!fatal && pendingRemoval.size) await removeKeys(o.state, o.partId, pendingRemoval).catch((e) => void (fatal ??= e));
  stats.seconds = (performance.now() - started) / 1000;
  if (fatal) throw fatal instanceof FatalError ? new RunFailure(fatal.message, stats) : new RunFailure(fatal, stats);
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
