/**
 * How much of the extract run is in flight at once: every sizing rule of the pipeline, in one
 * place. Decoding runs on sharp's (libuv's) threads, started by the image workers that then
 * resize each frame where it is (image/image-pool.ts); both must keep ahead of the model on any
 * host, from a 2-core VM running the model on its CPU to a GPU host whose model eats images as
 * fast as 16 cores can decode them. Measured on 2 cores
 * (docs/speed.md): 4 decodes in flight instead of 2 took the decode-bound rate from 78 to 92 img/s.
 */
import os from 'node:os';

/** Images decoded at once by default: one per core, at least 4 (decode waits on I/O too). */
export function defaultDecoders(): number {
  return Math.max(4, os.availableParallelism());
}

export interface ImageStageCapacity {
  /** Image worker threads (each starts its images' decodes and resamples their frames). */
  workers: number;
  /**
   * Source pixels being decoded and resized at once. A frame costs 3 bytes a pixel (RGB8 as
   * stored; the resampler adds only its output and one row), so the budget bounds memory whatever
   * the mix of image sizes; an image over the budget is done alone.
   */
  pixelBudget: number;
}

/**
 * A shrinking resample costs about half a decode of the same frame (typed-array code, measured
 * 0.4-0.6x on 12 MP → 256²), so one worker serves two decodes. The pixel budget allows each
 * decode a 16 MP frame (48 MB); a larger one counts more, one over the whole budget runs alone.
 */
export function imageStageCapacity(decoders: number): ImageStageCapacity {
  return { workers: Math.ceil(decoders / 2), pixelBudget: decoders * 16_000_000 };
}

/**
 * Tokens per model call that `--batch-size auto` aims at, by execution provider. On CPU a batch buys
 * nothing per image once an image is real work: the ViT-S/16-shaped model ran 224² images no faster
 * at batch 4 or 16 than at batch 1, nor 512² or 1024² ones, while each batched image adds its tensors
 * to memory (batch 4 at 1024² held twice the memory of batch 1). What batching does save on CPU is
 * the fixed cost of a call (≈0.5 ms: the worker hop and the session's setup), which matters only for
 * small inputs to small models (tiny model at 224²: 1.6–2.1 ms an image at batch 1, 1.2–1.7 at
 * batch 4-16). So a CPU batch is about a thousand tokens: 5 images at 224², one from 512² up
 * (docs/speed.md). A GPU needs large batches to fill itself; its budget (7 images of 1024² for a
 * ViT/16 with registers, 64 of 224²) is not measured here: no GPU was available (README, Devices).
 */
export const AUTO_TOKEN_BUDGET = { cpu: 1024, accelerator: 32_768 } as const;
/** However small the images, an auto batch holds at most this many (host memory for its tensors). */
export const MAX_AUTO_BATCH = 64;

export interface AutoBatch {
  size: number;
  /** The token budget it was sized from. */
  budget: number;
}

/** Images per call for `--batch-size auto`: as many of the run's largest images as fit the provider's budget. */
export function autoBatchSize(provider: string, tokensPerImage: number): AutoBatch {
  const budget = provider === 'cpu' ? AUTO_TOKEN_BUDGET.cpu : AUTO_TOKEN_BUDGET.accelerator;
  return { size: Math.min(MAX_AUTO_BATCH, Math.max(1, Math.floor(budget / tokensPerImage))), budget };
}

/**
 * Batches handed to the model at once: one running and one ready to start, so the model never
 * waits for the main thread, and no more, so batch tensors exist only for those two. The scheduler
 * holds the second only while the model's calls are short (SLOW_CALL_MS).
 */
export const MODEL_QUEUE_DEPTH = 2;

/**
 * A model call at least this long (wall time) makes the hop to its next call (the batch copied
 * into its tensor, a message to the ONNX Runtime thread: 50 ms for a 50 MB batch on the 2-core VM,
 * whose fresh pages are slow) at most a few percent of it, so the scheduler stops readying a
 * second batch at the model: its tensor and the planes behind it only cost memory. Measured at
 * 1024² (ViT-S shapes, batch 4, 5 s a call, 24 camera-sized JPEGs, four runs each in turns): peak
 * 1291–1311 → 1153–1204 MiB, 0.455–0.501 → 0.474–0.512 img/s (docs/speed.md).
 */
export const SLOW_CALL_MS = 1000;

/**
 * Bytes of prepared pixels (float32 tensors) that may wait for the model outside the batches it
 * holds. When the model is the slow stage every slot fills with waiting tensors, and at 1024²
 * (12.6 MB an image) four batches of 4 waiting cost 200 MB for nothing: one batch waiting keeps
 * the model fed. Measured (1024², batch 4, a one-layer ViT-S-wide model): 4 waiting instead of 16
 * lowered the peak by 128 MiB at the same speed (docs/speed.md).
 */
export const WAITING_PIXEL_BYTES = 64 * 2 ** 20;

export interface QueueSizes {
  /** Images held in partial batches before the fullest one goes early (memory bound across buckets). */
  maxWaiting: number;
  /** Images between being read and their row being written: the run's memory bound. */
  imageSlots: number;
}

/**
 * Enough slots that partial batches plus images being decoded can never hold all of them. Up to four
 * batches wait for the model (room for several buckets to fill), fewer when their tensors would pass
 * WAITING_PIXEL_BYTES, never less than one batch. `imageBytes`: the largest bucket's input tensor.
 */
export function queueSizes(batchSize: number, decoders: number, imageBytes: number): QueueSizes {
  const maxWaiting = Math.max(batchSize, Math.min(batchSize * 4, Math.floor(WAITING_PIXEL_BYTES / imageBytes)));
  return { maxWaiting, imageSlots: maxWaiting + decoders + MODEL_QUEUE_DEPTH * batchSize };
}
