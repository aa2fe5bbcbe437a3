/** Worker thread of resample-pool.ts: resamples each frame band by band as its rows arrive. */
import { parentPort } from 'node:worker_threads';
import { BufferStock } from '../core/buffer-stock.js';
import { outputLength, planResample, resample, RowResampler, type ResamplePlan } from './resample.js';
import { SPARE_OUTPUTS, SPARE_OUTPUT_BYTES, type ResampleReply, type ResampleRequest } from './resample-pool.js';

const port = parentPort!;
/** Output planes the main thread gave back once their pixels were in a batch: the next frames' outputs. */
const outputs = new BufferStock(SPARE_OUTPUTS, SPARE_OUTPUT_BYTES);

function outputFor(plan: ResamplePlan): Float32Array {
  return new Float32Array(outputs.take(outputLength(plan) * Float32Array.BYTES_PER_ELEMENT));
}
/** Frames begun and not ended; a failed one keeps its error until its end reports it. */
const open = new Map<number, RowResampler | Error>();

/** The band's buffer goes back to carry the frame's next rows. */
function giveBack(id: number, band: Uint8Array): void {
  port.postMessage({ id, band: band.buffer as ArrayBuffer } satisfies ResampleReply, [band.buffer as ArrayBuffer]);
}

port.on('message', (req: ResampleRequest) => {
  if (req.type === 'spare') return outputs.give(req.buffer);
  try {
    if (req.type === 'whole') {
      const plan = planResample(req.stored, req.out, req.axes, req.filter);
      const pixels = resample(req.rgb, req.stored, plan, req.norm, outputFor(plan));
      // The rows' buffer goes back with the pixels, to carry a later frame.
      const band = req.rgb.buffer as ArrayBuffer;
      port.postMessage({ id: req.id, pixels, band } satisfies ResampleReply, [pixels.buffer as ArrayBuffer, band]);
    } else if (req.type === 'begin') {
      const plan = planResample(req.stored, req.out, req.axes, req.filter);
      open.set(req.id, new RowResampler(req.stored, plan, req.norm, outputFor(plan)));
    } else {
      const r = open.get(req.id);
      if (req.type === 'rows') {
        if (r instanceof RowResampler) r.add(req.band);
        giveBack(req.id, req.band);
      } else if (req.type === 'end') {
        open.delete(req.id);
        if (r instanceof Error || !r) throw r ?? new Error(`frame ${req.id} never begun`);
        const pixels = r.finish();
        const reply: ResampleReply = { id: req.id, pixels };
        port.postMessage(reply, [pixels.buffer as ArrayBuffer]);
      }
    }
  } catch (e) {
    const error = e instanceof Error ? e : new Error(String(e));
    if (req.type === 'end' || req.type === 'whole') port.postMessage({ id: req.id, error: error.message } satisfies ResampleReply);
    else {
      open.set(req.id, error);
      if (req.type === 'rows') giveBack(req.id, req.band);
    }
  }
});
