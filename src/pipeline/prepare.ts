/**
 * The image stage of extract, validate --recompute and inspect: header → bucket → crop box →
 * decode (sharp, the frame as stored) → resize + normalise with EXIF orientation folded in
 * (image/resample.ts), both in worker threads of their own (image/image-pool.ts), the job as a
 * whole guarded against other images' libvips errors (image/vips-alone.ts). What it did is
 * recorded with the cache by image/preprocessing-record.ts.
 */
import type { ModelInfo } from '../model/info.js';
import { planByRule, type CropBox, type ImagePlan, type Size } from '../image/buckets.js';
import { withOwnErrors } from '../image/vips-alone.js';
import { fastDecodeSize, ImageError, readHeader } from '../image/decode.js';
import type { PrepareSettings } from '../image/prepare-settings.js';
import { copyBoxOf, orientedPixels } from '../image/mirror.js';
import { normalisationOf } from '../image/resample.js';
import { ImagePool } from '../image/image-pool.js';
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
  /** `pixels` are of the crop mirrored (the image's plan asked for it: a crops file's `flip`). */
  flip?: boolean;
  /** The other orientation, when the settings keep flipped copies (image/mirror.ts says of which box). */
  mirrored?: Float32Array;
  /** The file's sha256, when prepare was asked for it. */
  sha256?: string;
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

/**
 * Picks an image's plan from its upright size when dinofeat's rule does not (a trainer's crops
 * file, or validate re-extracting a row as stored): a plan, whose `flip` makes the mirrored crop the
 * main view (image/mirror.ts), a reason the image cannot be planned (an error row), or undefined
 * for the rule.
 */
export type ChoosePlan = (size: Size) => ImagePlan | { problem: string } | undefined;

export interface ImagePreparer {
  /**
   * One image, planned by `choose` (its bucket, crop and orientation) or else by dinofeat's rule;
   * with `hash`, also its bytes' sha256, made on an image worker beside the decode.
   */
  prepare(bytes: Buffer, choose?: ChoosePlan, hash?: boolean): Promise<PreparedPixels>;
  /** Pixels the caller is done with, to be reused for a later image's (their contents will change). */
  recycle(plane: Float32Array): void;
  close(): Promise<void>;
}

export async function createImagePreparer(info: ModelInfo, s: PrepareSettings, capacity: Partial<ImageStageCapacity> = {}): Promise<ImagePreparer> {
  if (s.buckets.length === 0) throw new Error('no buckets');
  const pool = new ImagePool(capacity.workers ?? 1);
  const pixels = new Semaphore(capacity.pixelBudget ?? Infinity);
  const norm = normalisationOf(info);

  return {
    async prepare(bytes, choose, hash = false) {
      try {
        const header = await readHeader(bytes, s.decode);
        const plan = choose?.(header) ?? planByRule(header, s.buckets, s.resize);
        if ('problem' in plan) throw new ImageFailure('source', plan.problem);
        const { bucket, crop } = plan;
        const shrunk = s.decode.mode === 'fast' ? fastDecodeSize(header, crop, bucket) : undefined;
        const taken = await pixels.acquire(shrunk ? shrunk.width * shrunk.height : crop.w * crop.h);
        try {
          const flip = plan.flip === true;
          const copyBox = copyBoxOf(crop, header.width, s.crops === undefined);
          let sha256: string | undefined;
          /** One upright box decoded (as stored, shrunk on load in fast mode) and resampled to the bucket; the first one hashed when asked. */
          const render = async (box: CropBox) => {
            const small = s.decode.mode === 'fast' ? fastDecodeSize(header, box, bucket) : undefined;
            const rendered = await withOwnErrors(() => pool.run({
              bytes, header, box, decode: s.decode, ...(small ? { shrunk: small } : {}), out: { width: bucket.width, height: bucket.height }, filter: info.resample, norm,
              ...(hash && sha256 === undefined ? { hash: true } : {}),
            }));
            sha256 ??= rendered.sha256;
            return rendered.pixels;
          };
          const views = await orientedPixels(crop, copyBox, bucket, { flip, copy: s.flipCopies === true }, render);
          return {
            width: header.width,
            height: header.height,
            bucketWidth: bucket.width,
            bucketHeight: bucket.height,
            crop,
            flip,
            ...views,
            ...(sha256 !== undefined ? { sha256 } : {}),
          };
        } finally {
          pixels.release(taken);
        }
      } catch (e) {
        if (e instanceof ImageError) throw new ImageFailure(e.stage, e.message);
        throw e;
      }
    },
    recycle: (plane) => pool.recycle(plane),
    close: () => pool.close(),
  };
}
