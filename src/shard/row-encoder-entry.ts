/** Thread of row-encoder.ts: encodes each request's rows and sends them back, their tensors transferred. */
import { parentPort } from 'node:worker_threads';
import { buffersOf, type EncoderReply, type EncoderRequest } from './row-encoder.js';
import { encodeRow } from './schema.js';

const port = parentPort!;

port.on('message', ({ id, rows, shape }: EncoderRequest) => {
  try {
    const encoded = rows.map((row) => encodeRow(row, shape));
    // Everything the stored rows view goes back moved, not cloned: a cls is a view into its batch's
    // output, which a clone would copy whole.
    port.postMessage({ id, rows: encoded } satisfies EncoderReply, buffersOf(encoded));
  } catch (e) {
    port.postMessage({ id, error: e instanceof Error ? e.message : String(e) } satisfies EncoderReply);
  }
});
