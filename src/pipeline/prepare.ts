/**
 * The image stage of extract, validate --recompute and inspect: header → bucket → crop box →
 * decode (sharp) → resize + normalise (ONNX Runtime, in its own worker thread). Also describes the
 * preprocessing as JSON, which goes into the cache fingerprint and every shard's metadata.
 */
import type { ModelInfo } from '../model/info.js';
import { startSession } from '../model/devices.js';
import type { OrtWorker } from '../model/ort-worker.js';
import { assignBucket, cropBox, type Bucket, type ResizeMode } from '../image/buckets.js';
import { decodeRgb, ImageError, readHeader, type DecodeOptions } from '../image/decode.js';
import { buildPreprocessModel } from '../image/preprocess.js';
import { ImageFailure, type PreparedPixels } from './extract-run.js';

export interface PrepareSettings {
  buckets: readonly Bucket[];
  resize: ResizeMode;
  dinoScale: number;
  decode: DecodeOptions;
}

/** What decides the pixels a model sees; recorded with the cache so a changed setting is caught. */
export interface PreprocessingDescription {
  [key: string]: unknown;
  resize: ResizeMode;
  resample: ModelInfo['resample'];
  mean: readonly number[];
  std: readonly number[];
  /** trainer bucket → DINO input, e.g. '1024x1024→512x512'. */
  buckets: string[];
  dinoScale: number;
  background: string;
  icc: DecodeOptions['icc'];
  orientation: 'exif';
}

export function describePreprocessing(info: ModelInfo, s: PrepareSettings): PreprocessingDescription {
  return {
    resize: s.resize,
    resample: info.resample,
    mean: info.imageMean,
    std: info.imageStd,
    buckets: s.buckets.map((b) => `${b.trainer.width}x${b.trainer.height}→${b.width}x${b.height}`),
    dinoScale: s.dinoScale,
    background: s.decode.background,
    icc: s.decode.icc,
    orientation: 'exif',
  };
}

export interface ImagePreparer {
  prepare(bytes: Buffer): Promise<PreparedPixels>;
  close(): Promise<void>;
}

export async function createImagePreparer(info: ModelInfo, s: PrepareSettings): Promise<ImagePreparer> {
  if (s.buckets.length === 0) throw new Error('no buckets');
  // One thread: images are many and small next to the model, which gets the cores.
  const session: OrtWorker = await startSession(buildPreprocessModel(info), { device: 'cpu', threads: 1 }, 'preprocessing graph');
  return {
    async prepare(bytes) {
      try {
        const header = await readHeader(bytes, s.decode);
        const bucket = assignBucket(header, s.buckets);
        const crop = cropBox(header, bucket, s.resize);
        const rgb = await decodeRgb(bytes, crop, header, s.decode);
        const out = await session.run({
          rgb: { type: 'uint8', data: new Uint8Array(rgb.data.buffer, rgb.data.byteOffset, rgb.data.length), dims: [rgb.height, rgb.width, 3] },
          size: { type: 'int64', data: BigInt64Array.from([BigInt(bucket.height), BigInt(bucket.width)]), dims: [2] },
        });
        return {
          width: header.width,
          height: header.height,
          bucketWidth: bucket.width,
          bucketHeight: bucket.height,
          crop,
          pixels: out.pixel_values!.data as Float32Array,
        };
      } catch (e) {
        if (e instanceof ImageError) throw new ImageFailure(e.stage, e.message);
        throw e;
      }
    },
    close: () => session.close(),
  };
}
