/**
 * The image stage of extract, validate --recompute and inspect: header → bucket → crop box →
 * decode (sharp, the frame as stored) → resize + normalise with EXIF orientation folded in
 * (image/resample.ts, in worker threads of its own). What it did is recorded with the cache by
 * image/preprocessing-record.ts.
 */
import type { ModelInfo } from '../model/info.js';
import { assignBucket, cropBox } from '../image/buckets.js';
import { decodeStored, fastDecodeSize, ImageError, readHeader } from '../image/decode.js';
import type { PrepareSettings } from '../image/prepare-settings.js';
import { normalisationOf } from '../image/resample.js';
import { ResamplePool } from '../image/resample-pool.js';
import type { ErrorStage } from '../cache/errors-log.js';
import type { ImageStageCapacity } from './sizing.js';
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

/** Failure of one image (unreadable, undecodable, over the pixel limit); the run goes on. */
export class ImageFailure extends Error {
  constructor(
    readonly stage: ErrorStage,
    message: string,
  ) {
    super(message);
  }
}

export interface ImagePreparer {
  prepare(bytes: Buffer): Promise<PreparedPixels>;
  close(): Promise<void>;
}

export async function createImagePreparer(info: ModelInfo, s: PrepareSettings, capacity: Partial<ImageStageCapacity> = {}): Promise<ImagePreparer> {
  if (s.buckets.length === 0) throw new Error('no buckets');
  const pool = new ResamplePool(capacity.workers ?? 1);
  const pixels = new Semaphore(capacity.pixelBudget ?? Infinity);
  const norm = normalisationOf(info);

  return {
    async prepare(bytes) {
      try {
        const header = await readHeader(bytes, s.decode);
        const bucket = assignBucket(header, s.buckets);
        const crop = cropBox(header, bucket, s.resize);
        const shrunk = s.decode.mode === 'fast' ? fastDecodeSize(header, crop, bucket) : undefined;
        const taken = await pixels.acquire(shrunk ? shrunk.width * shrunk.height : crop.w * crop.h);
        try {
          const frame = await decodeStored(bytes, crop, header, s.decode, shrunk);
          return {
            width: header.width,
            height: header.height,
            bucketWidth: bucket.width,
            bucketHeight: bucket.height,
            crop,
            pixels: await pool.run({
              rgb: frame.data, stored: { width: frame.width, height: frame.height }, out: { width: bucket.width, height: bucket.height }, axes: frame.axes, filter: info.resample, norm,
            }),
          };
        } finally {
          pixels.release(taken);
        }
      } catch (e) {
        if (e instanceof ImageError) throw new ImageFailure(e.stage, e.message);
        throw e;
      }
    },
    close: () => pool.close(),
  };
}
