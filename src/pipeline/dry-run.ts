/**
 * `extract --dry-run`: what a run would make, before it makes anything. Every image's header is
 * read (sharp's metadata: size and EXIF orientation, no pixels decoded) to count images per bucket;
 * the bytes the cache will take are computed from the shard's columns (shard/size-estimate.ts) for
 * the run's dtype, registers, flipped copies and pool; the time comes from a short probe of the
 * model on this machine at the most common bucket. Nothing is written: not the cache directory,
 * not a lock, not a run record.
 */
import { performance } from 'node:perf_hooks';
import pLimit from 'p-limit';
import type { ErrorStage } from '../cache/errors-log.js';
import { shardMetaOf } from '../cache/identity.js';
import { planByRule, type Bucket } from '../image/buckets.js';
import type { CropsFile } from '../image/crops-file.js';
import { ImageError, readHeader } from '../image/decode.js';
import { MODEL_INPUT, MODEL_OUTPUT, tokenCount } from '../model/contract.js';
import { sessionDevice } from '../model/device-choice.js';
import { startSession } from '../model/devices.js';
import type { ModelInfo } from '../model/info.js';
import { probeModel } from '../model/probe.js';
import { modelWeightsSha256 } from '../model/weights-hash.js';
import type { ShardFormat, ShardMeta } from '../shard/schema.js';
import { estimateCacheBytes, type SizeEstimate } from '../shard/size-estimate.js';
import { readInputs } from '../source/inputs.js';
import type { ModelRunner } from './scheduler.js';
import { checkSetup, modelBatchSize, planOf, runIdentity, runSettings, type ExtractRequest } from './extract.js';
import { defaultDecoders } from './sizing.js';
import { failureKind } from './tally.js';

export interface DryRunBucket {
  /** DINO input '<w>x<h>' and the trainer bucket it came from. */
  bucket: string;
  trainer: string;
  /** Stored grid (after --pool), '<grid_h>x<grid_w>'. */
  grid: string;
  images: number;
  /** Bytes of one row, framing left out. */
  rowBytes: number;
}

export interface TimeProbe {
  /** The bucket the model was timed at. */
  bucket: string;
  batch: number;
  /** Model seconds per image there (one orientation). */
  secondsPerImage: number;
  device: string;
}

export interface DryRunReport {
  images: number;
  /** Images whose header could not be read, by reason: the run would record them as failed. */
  unreadable: Record<string, number>;
  buckets: DryRunBucket[];
  format: ShardFormat;
  meta: Pick<ShardMeta, 'dtype' | 'registersKept' | 'flip' | 'hiddenSize' | 'numRegisters'>;
  pool: number;
  estimate: SizeEstimate;
  probe?: TimeProbe;
  /** Model seconds for every image (both orientations with --flip); decoding and writing are not in it. */
  seconds: number;
}

/** Timed model calls at one bucket: at least PROBE_RUNS after a warm-up, stopping once PROBE_SECONDS have passed. */
const PROBE_RUNS = 2;
const PROBE_SECONDS = 3;

/** Model seconds per image at `bucket`, batches of `batch` (input values do not change the work). */
export async function probeSeconds(model: ModelRunner, bucket: Bucket, batch: number): Promise<number> {
  const dims = [batch, 3, bucket.height, bucket.width];
  const data = new Float32Array(batch * 3 * bucket.height * bucket.width).fill(0.5);
  const once = () => model.run({ [MODEL_INPUT]: { type: 'float32', data: data.slice(), dims } }, [MODEL_OUTPUT]);
  await once(); // warm-up: the first call sets up kernels for the shape
  const start = performance.now();
  let runs = 0;
  do {
    await once();
    runs++;
  } while (runs < PROBE_RUNS || (performance.now() - start < PROBE_SECONDS * 1000 && runs < 10));
  return (performance.now() - start) / 1000 / runs / batch;
}

const HEADER_WINDOW = 1024;

/**
 * Images per bucket from headers alone, each planned as the run plans it (the crops file's bucket,
 * else dinofeat's rule), in the order of the run's buckets; failures by reason.
 */
async function countBuckets(r: ExtractRequest, buckets: readonly Bucket[], crops: CropsFile | undefined) {
  const counts = new Map<Bucket, number>();
  const unreadable: Record<string, number> = {};
  let keyBytes = 0;
  const limit = pLimit(r.decoders ?? defaultDecoders());
  const seen = new Set<string>();
  // Headers are read a window at a time, so a million images never hold a million promises.
  let reads: Array<Promise<void>> = [];
  // Grouped as the run's summary groups its failures.
  const fail = (stage: ErrorStage, reason: string) => {
    const kind = failureKind(stage, reason);
    unreadable[kind] = (unreadable[kind] ?? 0) + 1;
  };
  for await (const item of readInputs(r.inputs)) {
    if ('problem' in item) {
      fail('source', item.problem.reason);
      continue;
    }
    const { image } = item;
    if (seen.has(image.key)) {
      fail('source', 'duplicate key: two inputs give the same relative path');
      continue;
    }
    seen.add(image.key);
    if (reads.length >= HEADER_WINDOW) {
      await Promise.all(reads);
      reads = [];
    }
    reads.push(limit(async () => {
      try {
        let bytes: Buffer;
        try {
          bytes = await image.read();
        } catch (e) {
          return fail('read', (e as Error).message);
        }
        const header = await readHeader(bytes, r.decode);
        const plan = planOf(crops, image.key)?.(header) ?? planByRule(header, buckets, r.resize);
        if ('problem' in plan) return fail('source', plan.problem);
        counts.set(plan.bucket, (counts.get(plan.bucket) ?? 0) + 1);
        keyBytes += Buffer.byteLength(image.key);
      } catch (e) {
        if (!(e instanceof ImageError)) throw e;
        fail(e.stage, e.message);
      }
    }));
  }
  await Promise.all(reads);
  const order = [...buckets, ...(crops?.source.buckets ?? [])];
  return { counts: order.filter((b) => counts.has(b)).map((b) => ({ bucket: b, images: counts.get(b)! })), unreadable, keyBytes };
}

export async function dryRun(r: ExtractRequest): Promise<DryRunReport> {
  const { modelPath, buckets, crops, device, ...checked } = await checkSetup(r);
  const model = await startSession(modelPath, { ...sessionDevice(device), threads: r.threads }, modelPath);
  try {
    const info: ModelInfo = await probeModel(model, checked.info, modelPath);
    const settings = runSettings(r, { buckets, crops });
    const meta = shardMetaOf(runIdentity(r, info, settings, await modelWeightsSha256(modelPath, info), device.provider));
    const { counts, unreadable, keyBytes } = await countBuckets(r, buckets, crops);
    const cell = info.patchSize * r.pool;
    const grids = counts.map(({ bucket, images }) => ({ gridH: bucket.height / cell, gridW: bucket.width / cell, rows: images }));
    const estimate = estimateCacheBytes(meta, r.stored.format, { grids, keyBytes }, r.maxShardBytes);

    // Timed at the most common bucket; the others scaled by their token count (the cost of a ViT
    // grows about linearly with tokens at these sizes, a little faster with attention).
    const top = [...counts].sort((a, b) => b.images - a.images)[0];
    let probe: TimeProbe | undefined;
    let seconds = 0;
    if (top) {
      const batch = modelBatchSize(info, r.batchSize, device.provider, buckets).size;
      const perImage = await probeSeconds(model, top.bucket, batch);
      probe = { bucket: `${top.bucket.width}x${top.bucket.height}`, batch, secondsPerImage: perImage, device: device.provider };
      const tokens = (b: Bucket) => tokenCount(info, b.height / info.patchSize, b.width / info.patchSize);
      const orientations = r.stored.flip ? 2 : 1;
      seconds = counts.reduce((t, c) => t + c.images * perImage * (tokens(c.bucket) / tokens(top.bucket)) * orientations, 0);
    }
    return {
      images: counts.reduce((n, c) => n + c.images, 0),
      unreadable,
      buckets: counts.map(({ bucket, images }, k) => ({
        bucket: `${bucket.width}x${bucket.height}`,
        trainer: `${bucket.trainer.width}x${bucket.trainer.height}`,
        grid: `${grids[k]!.gridH}x${grids[k]!.gridW}`,
        images,
        rowBytes: estimate.rowBytes[`${grids[k]!.gridH}x${grids[k]!.gridW}`]!,
      })),
      format: r.stored.format,
      meta,
      pool: r.pool,
      estimate,
      probe,
      seconds,
    };
  } finally {
    await model.close();
  }
}
