/**
 * How much of the image stage runs at once. Decoding runs on sharp's (libuv's) threads and the
 * exact resize on worker threads of its own; both must keep ahead of the model on any host, from
 * a 2-core VM running the model on its CPU to a GPU host whose model eats images as fast as 16
 * cores can decode them. Measured on 2 cores (docs and README): 4 decodes in flight instead of 2
 * took the decode-bound rate from 78 to 92 img/s; a second resize worker added little there.
 */
import os from 'node:os';
import type { PreparerCapacity } from './prepare.js';

/** Images decoded at once by default: one per core, at least 4 (decode waits on I/O too). */
export function defaultDecoders(): number {
  return Math.max(4, os.availableParallelism());
}

/**
 * A resize (≈15 ms for 1.5 MP → 1024²) costs about twice a decode, so one resize worker serves
 * up to four decodes. The pixel budget allows each decode a 16 MP frame; larger ones count more.
 */
export function imageStageCapacity(decoders: number): Required<PreparerCapacity> {
  return { workers: Math.ceil(decoders / 4), pixelBudget: decoders * 16_000_000 };
}
