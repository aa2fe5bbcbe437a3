/** Messages between OrtWorker (main thread) and ort-worker-entry (worker thread). */
import type { InferenceSession } from 'onnxruntime-node';

export interface WireTensor {
  type: 'float32' | 'uint8' | 'int64';
  data: Float32Array | Uint8Array | BigInt64Array;
  dims: number[];
}

export interface WorkerInit {
  /** Path (external data resolves beside it) or bytes of the model. */
  model: string | Uint8Array;
  options: InferenceSession.SessionOptions;
}

export type WorkerRequest =
  /** `returnInputs`: send the feeds' buffers back with the result. */
  | { type: 'run'; id: number; feeds: Record<string, WireTensor>; outputs?: string[]; returnInputs: boolean }
  | { type: 'close' };

export type WorkerResponse =
  | { type: 'ready'; inputNames: string[]; outputNames: string[] }
  | { type: 'failed'; message: string }
  /** `inputs`: the feeds' buffers, transferred back once the session is done with them, for reuse. */
  | { type: 'result'; id: number; outputs: Record<string, WireTensor>; inputs: ArrayBuffer[] }
  | { type: 'error'; id: number; message: string };
