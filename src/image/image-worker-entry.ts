/** Worker thread of image-pool.ts: decodes each image as stored and resamples it to the bucket. */
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { parentPort } from 'node:worker_threads';
import { BufferStock } from '../core/buffer-stock.js';
import { decodeStored, ImageError } from './decode.js';
import { SPARE_OUTPUTS, SPARE_OUTPUT_BYTES, type ImageReply, type ImageRequest } from './image-pool.js';
import { outputLength, planResample, resample, type ResamplePlan } from './resample.js';

const port = parentPort!;
/** Output planes the main thread gave back once their pixels were in a batch: the next images' outputs. */
const outputs = new BufferStock(SPARE_OUTPUTS, SPARE_OUTPUT_BYTES);

function outputFor(plan: ResamplePlan): Float32Array {
  return new Float32Array(outputs.take(outputLength(plan) * Float32Array.BYTES_PER_ELEMENT));
}

/**
 * sharp's frames are freed when this thread's garbage collector finds them dead, and V8 collects
 * for memory outside its heap only once that has grown by about 64 MiB, then marks incrementally
 * while more frames arrive: every worker held its own pile of dead frames (60 camera-sized JPEGs,
 * two workers: peak 568–609 MiB). A full collection of this thread's heap (about 6 MB) once the
 * frames it finished add up to COLLECT_AFTER_BYTES, in turns over four runs each: 64 MiB 521–585
 * MiB, 32 MiB 481–513 MiB, at the same speed and CPU (docs/speed.md). `gc` is V8's own, exposed
 * to this thread through a context made after the flag is set.
 */
const COLLECT_AFTER_BYTES = 32 * 2 ** 20;
v8.setFlagsFromString('--expose-gc');
const collect = runInNewContext('gc') as () => void;
let finishedBytes = 0;

function finished(frameBytes: number): void {
  finishedBytes += frameBytes;
  if (finishedBytes < COLLECT_AFTER_BYTES) return;
  finishedBytes = 0;
  setImmediate(collect);
}

/** The decode runs alongside the process's other libvips work; the main thread guards the job as a whole (vips-alone.ts). */
const unguarded = <T>(attempt: () => Promise<T>) => attempt();

async function decodeAndResample(req: Extract<ImageRequest, { type: 'image' }>): Promise<void> {
  const input = req.bytes.buffer as ArrayBuffer;
  try {
    const bytes = Buffer.from(input, req.bytes.byteOffset, req.bytes.byteLength);
    const frame = await decodeStored(bytes, req.box, req.header, req.decode, req.shrunk, unguarded);
    const stored = { width: frame.width, height: frame.height };
    const plan = planResample(stored, req.out, frame.axes, req.filter);
    const pixels = resample(frame.data, stored, plan, req.norm, outputFor(plan));
    finished(frame.data.length);
    port.postMessage({ id: req.id, pixels, input } satisfies ImageReply, [pixels.buffer as ArrayBuffer, input]);
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
