import { releaseBuffer } from './release-buffer.js';

/**
 * ArrayBuffers kept for reuse, matched by exact byte length. A fresh buffer pays the first touch of
 * each of its pages: on the 2-core VM this project is measured on, filling a fresh 2.3 MiB
 * Float32Array took 2.1–2.5 ms and refilling a kept one 0.05–0.08 ms, about as long as decoding a
 * 500x375 JPEG. Pixel planes and batch tensors cycle between threads at that size for every image,
 * so the threads hand them back here instead of leaving them to the garbage collector.
 *
 * At most `maxBuffers` are kept (the oldest goes first), and never more than `maxBytes` in all, so a
 * run over many bucket shapes holds a few buffers, not one per shape.
 */
export class BufferStock {
  private readonly kept: ArrayBuffer[] = [];
  private bytes = 0;

  constructor(private readonly maxBuffers: number, private readonly maxBytes: number) {}

  /** A kept buffer of exactly `byteLength` bytes (old contents), or a new zeroed one. */
  take(byteLength: number): ArrayBuffer {
    const k = this.kept.findIndex((b) => b.byteLength === byteLength);
    if (k < 0) return new ArrayBuffer(byteLength);
    this.bytes -= byteLength;
    return this.kept.splice(k, 1)[0]!;
  }

  /** Whether a buffer of `byteLength` would be kept (so one too big need not be handed back at all). */
  keeps(byteLength: number): boolean {
    return byteLength > 0 && byteLength <= this.maxBytes;
  }

  /**
   * Keeps `buffer` for a later take, the caller giving it up. One not kept (too big, or the oldest
   * pushed out) is freed at once: left to the collector, such buffers lingered with their memory
   * until a full collection, and extract's main thread has few (allocator-launch.ts MAIN_HEAP_FLAG).
   * A detached (transferred) or empty buffer is ignored.
   */
  give(buffer: ArrayBuffer): void {
    if (!this.keeps(buffer.byteLength)) {
      releaseBuffer(new Uint8Array(buffer));
      return;
    }
    this.kept.push(buffer);
    this.bytes += buffer.byteLength;
    while (this.kept.length > this.maxBuffers || this.bytes > this.maxBytes) {
      const oldest = this.kept.shift()!;
      this.bytes -= oldest.byteLength;
      releaseBuffer(new Uint8Array(oldest));
    }
  }

  get size(): number {
    return this.kept.length;
  }
}

/**
 * Whether `view` spans its whole buffer, so the buffer can be transferred or kept as `view` alone
 * (not a view into a shared pool, not already transferred away).
 */
export function ownsBuffer(view: ArrayBufferView): boolean {
  return view.byteLength > 0 && view.byteOffset === 0 && view.byteLength === view.buffer.byteLength && !(view.buffer instanceof SharedArrayBuffer);
}
