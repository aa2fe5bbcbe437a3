/**
 * Worker threads that run the resampler (resample.ts), so the main thread keeps reading, decoding
 * and writing. sharp's output lives outside V8's heap and cannot be transferred (postMessage
 * copies it whole, measured: a 162 MB frame took the process from 277 to 585 MiB), so a frame goes
 * to its worker in bands of rows of about BAND_BYTES (a small frame in one), copied into buffers
 * that go back and forth (transferred; new buffers for every band would pile up in the worker
 * until its next garbage collection, measured +130 MB on a 54 MP frame) and are kept for the next
 * frames (SPARE_BUFFERS). The worker resamples each band as it arrives, so a frame in flight costs
 * itself plus two bands. The output comes back transferred, and goes back to a worker once the
 * caller is done with it (`recycle`), to hold a later frame's output.
 */
import { Worker } from 'node:worker_threads';
import { BufferStock, ownsBuffer } from '../core/buffer-stock.js';
import { workerScript } from '../core/worker-script.js';
import type { Resample } from '../model/info.js';
import type { Size } from './buckets.js';
import type { AxisMap } from './orientation.js';
import type { Normalisation } from './resample.js';

/** One frame to resample: RGB8 as stored, the upright output size, how the axes map. */
export interface ResampleJob {
  rgb: Uint8Array;
  stored: Size;
  out: Size;
  axes: AxisMap;
  filter: Resample;
  norm: Normalisation;
}

export type ResampleRequest =
  | ({ type: 'whole'; id: number } & ResampleJob)
  | ({ type: 'begin'; id: number } & Omit<ResampleJob, 'rgb'>)
  | { type: 'rows'; id: number; band: Uint8Array }
  | { type: 'end'; id: number }
  | { type: 'spare'; buffer: ArrayBuffer };
/**
 * `band`: a buffer of rows given back (a band resampled, or with `pixels` the whole frame's), to
 * carry the next rows.
 */
export type ResampleReply = { id: number; pixels: Float32Array; band?: ArrayBuffer } | { id: number; error: string } | { id: number; band: ArrayBuffer };

/** About 4 MiB of rows per message: the only copy of a frame, and small next to it. */
export const BAND_BYTES = 4 * 2 ** 20;
/** Bands of one frame at the worker at once. */
const BANDS_IN_FLIGHT = 2;
/**
 * Row buffers a worker keeps between frames. A fresh buffer costs its pages' first touch, which on
 * a VM was more than the copy itself (about 1.5 ms for a 500x375 frame, as long as its decode) and
 * was paid on every small image until the allocator's threshold adapted; kept buffers are touched
 * once. Pages a small frame never reached stay untouched, so they cost address space, not memory.
 */
const SPARE_BUFFERS = 4;
/**
 * Output planes a worker keeps once the main thread gives them back (see core/buffer-stock.ts for
 * what a fresh one costs): a batch's share at ImageNet sizes. Planes over 8 MiB (buckets over
 * about 0.7 MP) are not kept: at 1024² keeping them raised peak memory (see the scheduler's
 * KEPT_BATCH_BYTES) for a gain small next to such an image's decode.
 */
export const SPARE_OUTPUTS = 4;
export const SPARE_OUTPUT_BYTES = 8 * 2 ** 20;

class ResampleWorker {
  queued = 0;
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (p: Float32Array) => void; reject: (e: Error) => void }>();
  private failure: Error | undefined;
  /** Row buffers back from the worker, ready for the next rows of any frame (bounded by count, as before). */
  private readonly spare = new BufferStock(SPARE_BUFFERS, Number.POSITIVE_INFINITY);
  /** Per frame sent in bands: its bands at the worker, and its sender waiting for one to come back. */
  private readonly inFlight = new Map<number, { bands: number; wake?: () => void }>();
  private readonly worker = new Worker(workerScript('image/resample-worker-entry.js'));

  constructor() {
    this.worker.on('message', (reply: ResampleReply) => {
      if ('band' in reply && reply.band) this.giveBack(reply.band);
      if (!('pixels' in reply) && !('error' in reply)) {
        const f = this.inFlight.get(reply.id);
        if (f) f.bands--;
        f?.wake?.();
        return;
      }
      const p = this.pending.get(reply.id);
      this.pending.delete(reply.id);
      if ('pixels' in reply) p?.resolve(reply.pixels);
      else p?.reject(new Error(reply.error));
    });
    const failAll = (e: Error) => {
      this.failure = e;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
      for (const f of this.inFlight.values()) f.wake?.();
    };
    this.worker.on('error', failAll);
    this.worker.on('exit', (code) => failAll(new Error(`resample worker exited (code ${code})`)));
  }

  run(job: ResampleJob, bandBytes: number): Promise<Float32Array> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    this.queued++;
    const result = new Promise<Float32Array>((resolve, reject) => this.pending.set(id, { resolve, reject }));
    void this.send(id, job, bandBytes);
    return result.finally(() => {
      this.queued--;
      this.inFlight.delete(id);
    });
  }

  /** A row buffer for `bytes`: bandBytes long (kept or new), unless four rows need more. */
  private take(bytes: number, bandBytes: number): ArrayBuffer {
    return this.spare.take(Math.max(bytes, bandBytes));
  }

  private giveBack(buffer: ArrayBuffer): void {
    this.spare.give(buffer);
  }

  private async send(id: number, job: ResampleJob, bandBytes: number): Promise<void> {
    const { rgb, ...rest } = job;
    const rowBytes = job.stored.width * 3;
    // Whole groups of four rows per band, as the resampler filters them.
    const step = Math.min(rgb.length, Math.max(4, Math.floor(bandBytes / rowBytes / 4) * 4) * rowBytes);
    if (step === rgb.length) {
      // One band (small images): one message there and one back, as few hops as possible.
      const whole = new Uint8Array(this.take(step, bandBytes), 0, step);
      whole.set(rgb);
      this.post({ type: 'whole', id, ...rest, rgb: whole }, [whole.buffer as ArrayBuffer]);
      return;
    }
    this.post({ type: 'begin', id, ...rest });
    const frame: { bands: number; wake?: () => void } = { bands: 0 };
    this.inFlight.set(id, frame);
    for (let at = 0; at < rgb.length; at += step) {
      while (frame.bands >= BANDS_IN_FLIGHT && !this.failure) await new Promise<void>((wake) => (frame.wake = wake));
      if (this.failure) return;
      const band = new Uint8Array(this.take(step, bandBytes), 0, Math.min(step, rgb.length - at));
      band.set(rgb.subarray(at, at + band.length));
      frame.bands++;
      this.post({ type: 'rows', id, band }, [band.buffer as ArrayBuffer]);
    }
    this.post({ type: 'end', id });
  }

  private post(request: ResampleRequest, transfer: ArrayBuffer[] = []): void {
    this.worker.postMessage(request, transfer);
  }

  /** An output plane back, for the worker's next frames. */
  returnOutput(plane: Float32Array): void {
    if (!this.failure) this.post({ type: 'spare', buffer: plane.buffer as ArrayBuffer }, [plane.buffer as ArrayBuffer]);
  }

  async close(): Promise<void> {
    this.worker.removeAllListeners('exit');
    await this.worker.terminate();
  }
}

export class ResamplePool {
  private readonly workers: ResampleWorker[];
  private nextBack = 0;

  constructor(count: number, private readonly bandBytes = BAND_BYTES) {
    this.workers = Array.from({ length: Math.max(1, count) }, () => new ResampleWorker());
  }

  /** Resamples on the worker with the fewest frames queued. */
  run(job: ResampleJob): Promise<Float32Array> {
    const worker = this.workers.reduce((a, b) => (b.queued < a.queued ? b : a));
    return worker.run(job, this.bandBytes);
  }

  /**
   * Pixels the caller is done with (copied into a batch, or back from the model), to be a later
   * frame's output; the workers take turns, as they take frames. A view into a larger buffer, or
   * a plane too big to be kept, is left to the garbage collector.
   */
  recycle(plane: Float32Array): void {
    if (!ownsBuffer(plane) || plane.byteLength > SPARE_OUTPUT_BYTES) return;
    this.workers[this.nextBack++ % this.workers.length]!.returnOutput(plane);
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.close()));
  }
}
