/**
 * Worker threads that decode an image (sharp, the frame as stored) and resample it (resample.ts),
 * so a frame never leaves the thread that decoded it. sharp's output lives outside V8's heap and
 * cannot be transferred (postMessage copies it whole, measured: a 162 MB frame took the process
 * from 277 to 585 MiB), and on the main thread each frame also drove its garbage collector: with
 * frames decoded there and sent to resample workers in 4 MiB bands, the main thread spent more on
 * copying bands and on mark-compacts of its 12 MB heap (32 of them for 60 camera-sized JPEGs)
 * than the workers spent resampling (docs/speed.md). Only the file's bytes travel now (copied into
 * a buffer kept for the next image), and the normalised output comes back transferred, going
 * back to a worker once the caller is done with it (`recycle`) to hold a later image's output.
 */
import { Worker } from 'node:worker_threads';
import { BufferStock, ownsBuffer } from '../core/buffer-stock.js';
import { releaseBuffer } from '../core/release-buffer.js';
import { workerScript } from '../core/worker-script.js';
import type { Resample } from '../model/info.js';
import type { CropBox, Size } from './buckets.js';
import { ImageError, type DecodeOptions, type ImageHeader } from './decode.js';
import type { Normalisation } from './resample.js';

/** One image: its file's bytes, the upright box to decode, and what to resample it to. */
export interface ImageJob {
  bytes: Uint8Array;
  header: ImageHeader;
  box: CropBox;
  decode: DecodeOptions;
  /** --decode fast: the upright size to decode the whole frame at (decode.ts fastDecodeSize). */
  shrunk?: Size;
  out: Size;
  filter: Resample;
  norm: Normalisation;
  /** Also the sha256 of `bytes`, made on the worker while libvips decodes (so not on the main thread). */
  hash?: boolean;
}

/** One image's normalised pixels, and its file's sha256 when the job asked for it. */
export interface RenderedImage {
  pixels: Float32Array;
  sha256?: string;
}

export type ImageRequest = ({ type: 'image'; id: number } & ImageJob) | { type: 'spare'; buffer: ArrayBuffer };
/** `input`: the buffer that carried the file's bytes, back to carry a later file's. */
export type ImageReply =
  | ({ id: number; input: ArrayBuffer } & RenderedImage)
  | { id: number; error: string; stage?: ImageError['stage']; input: ArrayBuffer };

/**
 * Input buffers kept per worker, in sizes of powers of two from 64 KiB, so that a file's bytes go
 * to the worker without a fresh buffer's first touch of its pages (core/buffer-stock.ts).
 */
const SPARE_INPUTS = 4;
const SPARE_INPUT_BYTES = 32 * 2 ** 20;
const inputSize = (bytes: number) => Math.max(2 ** 16, 2 ** Math.ceil(Math.log2(Math.max(1, bytes))));
/**
 * Output planes a worker keeps once the main thread gives them back (see core/buffer-stock.ts for
 * what a fresh one costs): a batch's share at ImageNet sizes. Planes over 8 MiB (buckets over
 * about 0.7 MP) are not kept: at 1024² keeping one a worker did not lower the peak (runs in turns,
 * 1159–1227 against 1161–1184 MiB; docs/speed.md), and its gain is small next to such an image's
 * decode.
 */
export const SPARE_OUTPUTS = 4;
export const SPARE_OUTPUT_BYTES = 8 * 2 ** 20;

class ImageWorker {
  queued = 0;
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (r: RenderedImage) => void; reject: (e: Error) => void }>();
  private failure: Error | undefined;
  private readonly inputs = new BufferStock(SPARE_INPUTS, SPARE_INPUT_BYTES);
  private readonly worker = new Worker(workerScript('image/image-worker-entry.js'));

  constructor() {
    this.worker.on('message', (reply: ImageReply) => {
      this.inputs.give(reply.input);
      const p = this.pending.get(reply.id);
      this.pending.delete(reply.id);
      if ('pixels' in reply) p?.resolve({ pixels: reply.pixels, ...(reply.sha256 !== undefined ? { sha256: reply.sha256 } : {}) });
      else p?.reject(reply.stage ? new ImageError(reply.stage, reply.error) : new Error(reply.error));
    });
    const failAll = (e: Error) => {
      this.failure = e;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    this.worker.on('error', failAll);
    this.worker.on('exit', (code) => failAll(new Error(`image worker exited (code ${code})`)));
  }

  run(job: ImageJob): Promise<RenderedImage> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    this.queued++;
    const result = new Promise<RenderedImage>((resolve, reject) => this.pending.set(id, { resolve, reject }));
    // A copy of just the file's bytes (a view into a larger read, such as a tar chunk, would
    // otherwise be cloned with all of its buffer); the caller keeps its own for a second try.
    const bytes = new Uint8Array(this.inputs.take(inputSize(job.bytes.length)), 0, job.bytes.length);
    bytes.set(job.bytes);
    this.post({ type: 'image', id, ...job, bytes }, [bytes.buffer as ArrayBuffer]);
    return result.finally(() => this.queued--);
  }

  private post(request: ImageRequest, transfer: ArrayBuffer[] = []): void {
    this.worker.postMessage(request, transfer);
  }

  /** An output plane back, for the worker's next images. */
  returnOutput(plane: Float32Array): void {
    if (!this.failure) this.post({ type: 'spare', buffer: plane.buffer as ArrayBuffer }, [plane.buffer as ArrayBuffer]);
  }

  async close(): Promise<void> {
    this.worker.removeAllListeners('exit');
    await this.worker.terminate();
  }
}

export class ImagePool {
  private readonly workers: ImageWorker[];
  private nextBack = 0;

  constructor(count: number) {
    this.workers = Array.from({ length: Math.max(1, count) }, () => new ImageWorker());
  }

  /**
   * Decodes and resamples on the worker with the fewest images in hand. Fails with an ImageError
   * when the image is at fault (libvips' message; the caller runs it again alone to be sure the
   * message is its own, vips-alone.ts), with another Error when the worker is.
   */
  run(job: ImageJob): Promise<RenderedImage> {
    const worker = this.workers.reduce((a, b) => (b.queued < a.queued ? b : a));
    return worker.run(job);
  }

  /**
   * Pixels the caller is done with (copied into a batch, or back from the model), to be a later
   * image's output; the workers take turns, as they take images. A plane too big to be kept is
   * freed now (a 1024² plane is 12 MiB, and the main thread's collector, which V8 lets wait
   * longer in extract's child, allocator-launch.ts MAIN_HEAP_FLAG, would otherwise hold several);
   * a view into a larger buffer is left to the collector.
   */
  recycle(plane: Float32Array): void {
    if (!ownsBuffer(plane)) return;
    if (plane.byteLength > SPARE_OUTPUT_BYTES) releaseBuffer(plane);
    else this.workers[this.nextBack++ % this.workers.length]!.returnOutput(plane);
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.close()));
  }
}
