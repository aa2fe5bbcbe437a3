/**
 * The image stage of extract, validate --recompute and inspect: header → bucket → crop box →
 * decode (sharp) → resize + normalise (ONNX Runtime, in worker threads of its own). What it did is
 * recorded with the cache by image/preprocessing-record.ts.
 */
import { MODEL_INPUT } from '../model/contract.js';
import type { ModelInfo } from '../model/info.js';
import { startSession } from '../model/devices.js';
import { planByRule, type Bucket, type ImagePlan, type Size } from '../image/buckets.js';
import { decodeRgb, ImageError, readHeader, type DecodedImage } from '../image/decode.js';
import type { PrepareSettings } from '../image/prepare-settings.js';
import { copyBoxOf, orientedPixels } from '../image/mirror.js';
import { buildPreprocessModel } from '../image/preprocess.js';
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
  /** One image, planned by `choose` (its bucket, crop and orientation) or else by dinofeat's rule. */
  prepare(bytes: Buffer, choose?: ChoosePlan): Promise<PreparedPixels>;
  close(): Promise<void>;
}

export async function createImagePreparer(info: ModelInfo, s: PrepareSettings, capacity: Partial<ImageStageCapacity> = {}): Promise<ImagePreparer> {
  if (s.buckets.length === 0) throw new Error('no buckets');
  // One thread each: images are many and small next to the model, which gets the cores.
  const model = buildPreprocessModel(info);
  const started = await Promise.allSettled(
    Array.from({ length: capacity.workers ?? 1 }, () => startSession(model, { device: 'cpu', threads: 1 }, 'preprocessing graph')),
  );
  const sessions = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = started.find((r) => r.status === 'rejected');
  if (failed) {
    // Workers that did start would keep the process alive.
    await Promise.all(sessions.map((session) => session.close()));
    throw failed.reason;
  }
  const queued = sessions.map(() => 0);
  const pixels = new Semaphore(capacity.pixelBudget ?? Infinity);

  /** Resizes on the session with the fewest frames queued. */
  const resize = async (rgb: DecodedImage, bucket: Bucket) => {
    const k = queued.indexOf(Math.min(...queued));
    queued[k]!++;
    try {
      const out = await sessions[k]!.run({
        rgb: { type: 'uint8', data: new Uint8Array(rgb.data.buffer, rgb.data.byteOffset, rgb.data.length), dims: [rgb.height, rgb.width, 3] },
        size: { type: 'int64', data: BigInt64Array.from([BigInt(bucket.height), BigInt(bucket.width)]), dims: [2] },
      });
      return out[MODEL_INPUT]!.data as Float32Array;
    } finally {
      queued[k]!--;
    }
  };

  return {
    async prepare(bytes, choose) {
      try {
        const header = await readHeader(bytes, s.decode);
        const plan = choose?.(header) ?? planByRule(header, s.buckets, s.resize);
        if ('problem' in plan) throw new ImageFailure('source', plan.problem);
        const { bucket, crop } = plan;
        const taken = await pixels.acquire(crop.w * crop.h);
        try {
          const flip = plan.flip === true;
          const copyBox = copyBoxOf(crop, header.width, s.crops === undefined);
          const views = await orientedPixels(crop, copyBox, bucket, { flip, copy: s.flipCopies === true },
            async (box) => resize(await decodeRgb(bytes, box, header, s.decode), bucket));
          return {
            width: header.width,
            height: header.height,
            bucketWidth: bucket.width,
            bucketHeight: bucket.height,
            crop,
            flip,
            ...views,
          };
        } finally {
          pixels.release(taken);
        }
      } catch (e) {
        if (e instanceof ImageError) throw new ImageFailure(e.stage, e.message);
        throw e;
      }
    },
    close: async () => {
      await Promise.all(sessions.map((session) => session.close()));
    },
  };
}
