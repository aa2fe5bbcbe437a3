/**
 * Worker thread that owns one ONNX Runtime session. session.run() is a synchronous native call
 * that blocks its thread for the whole inference, so it lives here and the main thread keeps
 * decoding, writing and drawing progress meanwhile.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { ownsBuffer } from '../core/buffer-stock.js';
import ort from './ort.js';
import type { WorkerInit, WorkerRequest, WorkerResponse, WireTensor } from './ort-worker-protocol.js';

const init = workerData as WorkerInit;
const port = parentPort!;

function post(msg: WorkerResponse, transfer: ArrayBuffer[] = []): void {
  port.postMessage(msg, transfer);
}

try {
  const session = typeof init.model === 'string'
    ? await ort.InferenceSession.create(init.model, init.options)
    : await ort.InferenceSession.create(init.model, init.options);
  post({ type: 'ready', inputNames: [...session.inputNames], outputNames: [...session.outputNames] });
  port.on('message', async (req: WorkerRequest) => {
    if (req.type === 'close') {
      await session.release();
      port.close();
      return;
    }
    try {
      const feeds: Record<string, InstanceType<typeof ort.Tensor>> = {};
      for (const [name, t] of Object.entries(req.feeds)) feeds[name] = new ort.Tensor(t.type as 'float32', t.data as Float32Array, t.dims);
      const results = req.outputs ? await session.run(feeds, req.outputs) : await session.run(feeds);
      const outputs: Record<string, WireTensor> = {};
      const transfer: ArrayBuffer[] = [];
      for (const [name, t] of Object.entries(results)) {
        const data = t.data as WireTensor['data'];
        outputs[name] = { type: t.type as WireTensor['type'], data, dims: [...t.dims] };
        transfer.push(data.buffer as ArrayBuffer);
        t.dispose?.();
      }
      // The inputs go back too: the caller refills them for its next batch (core/buffer-stock.ts).
      const inputs = req.returnInputs ? Object.values(req.feeds).map((t) => t.data).filter(ownsBuffer).map((d) => d.buffer as ArrayBuffer) : [];
      post({ type: 'result', id: req.id, outputs, inputs }, [...transfer, ...inputs]);
    } catch (e) {
      post({ type: 'error', id: req.id, message: e instanceof Error ? e.message : String(e) });
    }
  });
} catch (e) {
  post({ type: 'failed', message: e instanceof Error ? e.message : String(e) });
}
