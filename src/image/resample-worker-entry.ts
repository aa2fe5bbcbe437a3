/** Worker thread of resample-pool.ts: resamples each frame band by band as its rows arrive. */
import { parentPort } from 'node:worker_threads';
import { planResample, resample, RowResampler } from './resample.js';
import type { ResampleReply, ResampleRequest } from './resample-pool.js';

const port = parentPort!;
/** Frames begun and not ended; a failed one keeps its error until its end reports it. */
const open = new Map<number, RowResampler | Error>();

/** The band's buffer goes back to carry the frame's next rows. */
function giveBack(id: number, band: Uint8Array): void {
  port.postMessage({ id, band: band.buffer as ArrayBuffer } satisfies ResampleReply, [band.buffer as ArrayBuffer]);
}

port.on('message', (req: ResampleRequest) => {
  try {
    if (req.type === 'whole') {
      const pixels = resample(req.rgb, req.stored, planResample(req.stored, req.out, req.axes, req.filter), req.norm);
      // The rows' buffer goes back with the pixels, to carry a later frame.
      const band = req.rgb.buffer as ArrayBuffer;
      port.postMessage({ id: req.id, pixels, band } satisfies ResampleReply, [pixels.buffer as ArrayBuffer, band]);
    } else if (req.type === 'begin') open.set(req.id, new RowResampler(req.stored, planResample(req.stored, req.out, req.axes, req.filter), req.norm));
    else {
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
