/** Worker thread of image-pool.ts: decodes each image as stored and resamples it to the bucket. */
import { createHash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import { BufferStock } from '../core/buffer-stock.js';
import { releaseBuffer } from '../core/release-buffer.js';
import { decodeStored, ImageError } from './decode.js';
import { SPARE_OUTPUTS, SPARE_OUTPUT_BYTES, type ImageReply, type ImageRequest } from './image-pool.js';
import { outputLength, planResample, resample, type ResamplePlan } from './resample.js';

const port = parentPort!;
/** Output planes the main thread gave back once their pixels were in a batch: the next images' outputs. */
const outputs = new BufferStock(SPARE_OUTPUTS, SPARE_OUTPUT_BYTES);

function outputFor(plan: ResamplePlan): Float32Array {
  return new Float32Array(outputs.take(outputLength(plan) * Float32Array.BYTES_PER_ELEMENT));
}

/** The decode runs alongside the process's other libvips work; the main thread guards the job as a whole (vips-alone.ts). */
const unguarded = <T>(attempt: () => Promise<T>) => attempt();

async function decodeAndResample(req: Extract<ImageRequest, { type: 'image' }>): Promise<void> {
  const input = req.bytes.buffer as ArrayBuffer;
  try {
    const bytes = Buffer.from(input, req.bytes.byteOffset, req.bytes.byteLength);
    const decoding = decodeStored(bytes, req.box, req.header, req.decode, req.shrunk, unguarded);
    // Hashed once the decode is on libvips' threads (sharp queues it a few promise turns in), so the two overlap.
    const hashing = req.hash ? new Promise<string>((resolve) => setImmediate(() => resolve(createHash('sha256').update(bytes).digest('hex')))) : undefined;
    const [frame, sha256] = await Promise.all([decoding, hashing]);
    const stored = { width: frame.width, height: frame.height };
    const plan = planResample(stored, req.out, frame.axes, req.filter);
    const pixels = resample(frame.data, stored, plan, req.norm, outputFor(plan));
    // Freed now: left to this thread's collector, dead frames piled up (src/core/release-buffer.ts).
    releaseBuffer(frame.data);
    port.postMessage({ id: req.id, pixels, ...(sha256 !== undefined ? { sha256 } : {}), input } satisfies ImageReply, [pixels.buffer as ArrayBuffer, input]);
  } catch (e) {
    const error = e instanceof Error ? e : new Error(String(e));
    const stage = e instanceof ImageError ? { stage: e.stage } : {};
    port.postMessage({ id: req.id, error: error.message, ...stage, input } satisfies ImageReply, [input]);
  }
}

port.on('message', (req: ImageRequest) => {
  if (req.type === 'spare') outputs.give(req.buffer);
  else void decodeAndResample(req);
});
