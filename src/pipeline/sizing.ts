/**
 * How much of the extract run is in flight at once: every sizing rule of the pipeline, in one
 * place. Decoding runs on sharp's (libuv's) threads and the exact resize on worker threads of its
 * own; both must keep ahead of the model on any host, from a 2-core VM running the model on its CPU
 * to a GPU host whose model eats images as fast as 16 cores can decode them. Measured on 2 cores
 * (docs/speed.md): 4 decodes in flight instead of 2 took the decode-bound rate from 78 to 92 img/s.
 */
import os from 'node:os';

/** Images decoded at once by default: one per core, at least 4 (decode waits on I/O too). */
export function defaultDecoders(): number {
  return Math.max(4, os.availableParallelism());
}

export interface ImageStageCapacity {
  /** Resample worker threads. */
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
 * Batches handed to the model at once: one running and one ready to start, so the model never
 * waits for the main thread, and no more, so batch tensors exist only for those two.
 */
export const MODEL_QUEUE_DEPTH = 2;

export interface QueueSizes {
  /** Images held in partial batches before the fullest one goes early (memory bound across buckets). */
  maxWaiting: number;
  /** Images between being read and their row being written: the run's memory bound. */
  imageSlots: number;
}

/** Enough slots that partial batches plus images being decoded can never hold all of them. */
export function queueSizes(batchSize: number, decoders: number): QueueSizes {
  const maxWaiting = batchSize * 4;
  return { maxWaiting, imageSlots: maxWaiting + decoders + MODEL_QUEUE_DEPTH * batchSize };
}
