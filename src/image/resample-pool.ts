/**
 * Worker threads that run the resampler (resample.ts), so the main thread keeps reading, decoding
 * and writing. sharp's output lives outside V8's heap and cannot be transferred (postMessage
 * copies it whole, measured: a 162 MB frame took the process from 277 to 585 MiB), so a frame goes
 * to its worker in bands of rows of about BAND_BYTES, copied into one of BANDS_IN_FLIGHT buffers
 * that go back and forth (transferred; new buffers for every band would pile up in the worker
 * until its next garbage collection, measured +130 MB on a 54 MP frame). The worker resamples each
 * band as it arrives, so a frame in flight costs itself plus two bands. The output comes back
 * transferred. Band buffers are kept for the next frames too (small frames travel whole in one):
 * fresh memory costs a page fault per 4 KiB on first touch, which on the 2-core VM was 8 ms a MiB,
 * 60 ms of a 12 MP frame's two bands.
 */
import { Worker } from 'node:worker_threads';
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

/** A whole frame's `rgb` is a view of a band buffer, which comes back (`band`) before the pixels. */
export type ResampleRequest =
  | ({ type: 'whole'; id: number } & ResampleJob)
  | ({ type: 'begin'; id: number } & Omit<ResampleJob, 'rgb'>)
  | { type: 'rows'; id: number; band: Uint8Array }
  | { type: 'end'; id: number };
/** `band`: a band resampled, its buffer sent back to carry the next rows. */
export type ResampleReply = { id: number; pixels: Float32Array } | { id: number; error: string } | { id: number; band: ArrayBuffer };

/** About 4 MiB of rows per message: the only copy of a frame, and small next to it. */
export const BAND_BYTES = 4 * 2 ** 20;
const BANDS_IN_FLIGHT = 2;
/** Band buffers a worker keeps between frames: enough for two frames in flight. */
const SPARE_BANDS = 2 * BANDS_IN_FLIGHT;

class ResampleWorker {
  queued = 0;
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (p: Float32Array) => void; reject: (e: Error) => void }>();
  private failure: Error | undefined;
  /** Band buffers back from the worker, per frame, and the sender waiting for one. */
  private readonly returned = new Map<number, { buffers: ArrayBuffer[]; wake?: () => void }>();
  /** Band buffers of frames done, for the next frames. */
  private readonly spare: ArrayBuffer[] = [];
  private readonly worker = new Worker(workerScript('image/resample-worker-entry.js'));

  constructor() {
    this.worker.on('message', (reply: ResampleReply) => {
      if ('band' in reply) {
        const r = this.returned.get(reply.id);
        r?.buffers.push(reply.band);
        r?.wake?.();
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
      for (const r of this.returned.values()) r.wake?.();
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
      // Every band came back before the pixels (the worker answers in order).
      for (const b of this.returned.get(id)?.buffers ?? []) if (this.spare.length < SPARE_BANDS) this.spare.push(b);
      this.returned.delete(id);
    });
  }

  /** A band buffer of at least `bytes`: a spare one, or a new one that fits a band of any frame. */
  private bandBuffer(bytes: number, bandBytes: number): ArrayBuffer {
    const k = this.spare.findIndex((b) => b.byteLength >= bytes);
    return k >= 0 ? this.spare.splice(k, 1)[0]! : new ArrayBuffer(Math.max(bytes, bandBytes));
  }

  private async send(id: number, job: ResampleJob, bandBytes: number): Promise<void> {
    const { rgb, ...rest } = job;
    const rowBytes = job.stored.width * 3;
    // Whole rows per band (in fours; the sums do not depend on where a band ends).
    const step = Math.min(rgb.length, Math.max(4, Math.floor(bandBytes / rowBytes / 4) * 4) * rowBytes);
    const back: { buffers: ArrayBuffer[]; wake?: () => void } = { buffers: [] };
    this.returned.set(id, back);
    if (step === rgb.length) {
      // One band (small images): one message there and one back, as few hops as possible.
      const whole = new Uint8Array(this.bandBuffer(step, bandBytes), 0, step);
      whole.set(rgb);
      this.post({ type: 'whole', id, ...rest, rgb: whole }, [whole.buffer as ArrayBuffer]);
      return;
    }
    this.post({ type: 'begin', id, ...rest });
    const bands = Math.ceil(rgb.length / step);
    for (let k = 0; k < Math.min(bands, BANDS_IN_FLIGHT); k++) back.buffers.push(this.bandBuffer(step, bandBytes));
    for (let at = 0; at < rgb.length; at += step) {
      while (back.buffers.length === 0 && !this.failure) await new Promise<void>((wake) => (back.wake = wake));
      if (this.failure) return;
      const buffer = back.buffers.pop()!;
      const band = new Uint8Array(buffer, 0, Math.min(step, rgb.length - at));
      band.set(rgb.subarray(at, at + band.length));
      this.post({ type: 'rows', id, band }, [buffer]);
    }
    this.post({ type: 'end', id });
  }

  private post(request: ResampleRequest, transfer: ArrayBuffer[] = []): void {
    this.worker.postMessage(request, transfer);
  }

  async close(): Promise<void> {
    this.worker.removeAllListeners('exit');
    await this.worker.terminate();
  }
}

export class ResamplePool {
  private readonly workers: ResampleWorker[];

  constructor(count: number, private readonly bandBytes = BAND_BYTES) {
    this.workers = Array.from({ length: Math.max(1, count) }, () => new ResampleWorker());
  }

  /** Resamples on the worker with the fewest frames queued. */
  run(job: ResampleJob): Promise<Float32Array> {
    const worker = this.workers.reduce((a, b) => (b.queued < a.queued ? b : a));
    return worker.run(job, this.bandBytes);
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.close()));
  }
}
