/**
 * Main-thread handle on a session running in a worker thread (see ort-worker-entry.ts).
 * Requests are answered in order; input buffers are transferred, not copied.
 */
import { Worker } from 'node:worker_threads';
import { ownsBuffer } from '../core/buffer-stock.js';
import { workerScript } from '../core/worker-script.js';
import type { WireTensor, WorkerInit, WorkerRequest, WorkerResponse } from './ort-worker-protocol.js';

export type { WireTensor } from './ort-worker-protocol.js';

export class SessionStartError extends Error {}

/** Takes a run's input buffers back once the session is done with them. */
export type InputsBack = (buffers: ArrayBuffer[]) => void;

export class OrtWorker {
  readonly inputNames: string[];
  readonly outputNames: string[];
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (o: Record<string, WireTensor>) => void; reject: (e: Error) => void; inputsBack?: InputsBack }>();
  private failure: Error | undefined;

  private constructor(private readonly worker: Worker, ready: { inputNames: string[]; outputNames: string[] }) {
    this.inputNames = ready.inputNames;
    this.outputNames = ready.outputNames;
    worker.on('message', (msg: WorkerResponse) => {
      if (msg.type === 'result' || msg.type === 'error') {
        const p = this.pending.get(msg.id);
        this.pending.delete(msg.id);
        if (msg.type === 'result') {
          p?.inputsBack?.(msg.inputs);
          p?.resolve(msg.outputs);
        } else p?.reject(new Error(msg.message));
      }
    });
    const failAll = (e: Error) => {
      this.failure = e;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    worker.on('error', failAll);
    worker.on('exit', (code) => failAll(new Error(`inference worker exited (code ${code})`)));
  }

  static start(init: WorkerInit): Promise<OrtWorker> {
    const worker = new Worker(workerScript('model/ort-worker-entry.js'), { workerData: init, env: { ...process.env, ORT_DISABLE_TELEMETRY: process.env.ORT_DISABLE_TELEMETRY ?? '1' } });
    return new Promise((resolve, reject) => {
      const onMessage = (msg: WorkerResponse) => {
        worker.off('error', onError);
        worker.off('message', onMessage);
        if (msg.type === 'ready') resolve(new OrtWorker(worker, msg));
        else {
          void worker.terminate();
          reject(new SessionStartError(msg.type === 'failed' ? msg.message : 'unexpected message from worker'));
        }
      };
      const onError = (e: Error) => reject(new SessionStartError(e.message));
      worker.on('message', onMessage);
      worker.once('error', onError);
    });
  }

  /**
   * Runs the session; feeds that own their whole buffer are transferred (unusable afterwards) and,
   * when `inputsBack` is given, come back to it with the answer.
   */
  run(feeds: Record<string, WireTensor>, outputs?: string[], inputsBack?: InputsBack): Promise<Record<string, WireTensor>> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    // Only buffers a feed owns whole are moved; views into shared memory (Node's Buffer pool) are copied.
    const transfer = Object.values(feeds).map((t) => t.data).filter(ownsBuffer).map((d) => d.buffer as ArrayBuffer);
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, inputsBack });
      this.worker.postMessage({ type: 'run', id, feeds, outputs, returnInputs: inputsBack !== undefined } satisfies WorkerRequest, transfer);
    });
  }

  async close(): Promise<void> {
    this.worker.removeAllListeners('exit');
    this.worker.postMessage({ type: 'close' });
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => void this.worker.terminate().then(() => resolve()), 2000);
      this.worker.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
    });
  }
}
