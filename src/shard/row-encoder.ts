/**
 * Rows encoded to their stored form (schema.ts encodeRow: float16 tensors, shape checks) on a
 * thread of their own. On the main thread a ViT-S row at 1024² took 3.2-4 ms of float16
 * conversion (1.6 M values; a ViT-L row 2.7 times that), which on a GPU host capped extract at
 * the main thread's pace (docs/speed.md). The rows' tensors move to the thread (transferred, not
 * copied), so the caller must be done with them: they read as empty afterwards.
 */
import { Worker } from 'node:worker_threads';
import { workerScript } from '../core/worker-script.js';
import type { EncodedRow, FeatureRow, RowShape, TensorDtype } from './schema.js';

export type EncodeShape = RowShape & { dtype: TensorDtype };

export type EncoderRequest = { id: number; rows: readonly FeatureRow[]; shape: EncodeShape };
export type EncoderReply = { id: number; rows: EncodedRow[] } | { id: number; error: string };

/** Every ArrayBuffer under `value` (typed arrays in nested objects and arrays), once each. */
export function buffersOf(value: unknown): ArrayBuffer[] {
  const found = new Set<ArrayBuffer>();
  const visit = (v: unknown): void => {
    if (ArrayBuffer.isView(v)) {
      if (v.buffer instanceof ArrayBuffer && v.buffer.byteLength > 0) found.add(v.buffer);
    } else if (v && typeof v === 'object') {
      for (const child of Object.values(v)) visit(child);
    }
  };
  visit(value);
  return [...found];
}

export class RowEncoderThread {
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (rows: EncodedRow[]) => void; reject: (e: Error) => void }>();
  private readonly worker = new Worker(workerScript('shard/row-encoder-entry.js'));
  private failure: Error | undefined;

  constructor() {
    this.worker.on('message', (reply: EncoderReply) => {
      const p = this.pending.get(reply.id);
      this.pending.delete(reply.id);
      if ('rows' in reply) p?.resolve(reply.rows);
      else p?.reject(new Error(reply.error));
    });
    const failAll = (e: Error) => {
      this.failure = e;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    this.worker.on('error', failAll);
    this.worker.on('exit', (code) => failAll(new Error(`row encoder thread exited (code ${code})`)));
  }

  /** The rows in stored form, in order; a row that does not fit `shape` rejects the whole call. */
  encode(rows: readonly FeatureRow[], shape: EncodeShape): Promise<EncodedRow[]> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    const result = new Promise<EncodedRow[]>((resolve, reject) => this.pending.set(id, { resolve, reject }));
    this.worker.postMessage({ id, rows, shape } satisfies EncoderRequest, buffersOf(rows));
    return result;
  }

  async close(): Promise<void> {
    this.worker.removeAllListeners('exit');
    await this.worker.terminate();
  }
}
