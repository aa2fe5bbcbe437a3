/**
 * Worker threads that run the resampler (resample.ts), so the main thread keeps reading, decoding
 * and writing. A frame is moved to its worker, not copied, when it owns its whole buffer (sharp's
 * output does); the output comes back the same way.
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

export type ResampleRequest = ResampleJob & { id: number };
export type ResampleReply = { id: number; pixels: Float32Array } | { id: number; error: string };

const ownsBuffer = (a: Uint8Array) => a.byteOffset === 0 && a.byteLength === a.buffer.byteLength;

class ResampleWorker {
  queued = 0;
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (p: Float32Array) => void; reject: (e: Error) => void }>();
  private failure: Error | undefined;
  private readonly worker = new Worker(workerScript('image/resample-worker-entry.js'));

  constructor() {
    this.worker.on('message', (reply: ResampleReply) => {
      const p = this.pending.get(reply.id);
      this.pending.delete(reply.id);
      if ('pixels' in reply) p?.resolve(reply.pixels);
      else p?.reject(new Error(reply.error));
    });
    const failAll = (e: Error) => {
      this.failure = e;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    this.worker.on('error', failAll);
    this.worker.on('exit', (code) => failAll(new Error(`resample worker exited (code ${code})`)));
  }

  run(job: ResampleJob): Promise<Float32Array> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    this.queued++;
    return new Promise<Float32Array>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const request: ResampleRequest = { ...job, id };
      this.worker.postMessage(request, ownsBuffer(job.rgb) ? [job.rgb.buffer as ArrayBuffer] : []);
    }).finally(() => this.queued--);
  }

  async close(): Promise<void> {
    this.worker.removeAllListeners('exit');
    await this.worker.terminate();
  }
}

export class ResamplePool {
  private readonly workers: ResampleWorker[];

  constructor(count: number) {
    this.workers = Array.from({ length: Math.max(1, count) }, () => new ResampleWorker());
  }

  /** Resamples on the worker with the fewest frames queued; the job's frame is unusable afterwards. */
  run(job: ResampleJob): Promise<Float32Array> {
    const worker = this.workers.reduce((a, b) => (b.queued < a.queued ? b : a));
    return worker.run(job);
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.close()));
  }
}
