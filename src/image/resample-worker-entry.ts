/** Worker thread of resample-pool.ts: resamples frames as they come, one at a time. */
import { parentPort } from 'node:worker_threads';
import { planResample, resample } from './resample.js';
import type { ResampleReply, ResampleRequest } from './resample-pool.js';

const port = parentPort!;

port.on('message', (job: ResampleRequest) => {
  let reply: ResampleReply;
  try {
    const plan = planResample(job.stored, job.out, job.axes, job.filter);
    reply = { id: job.id, pixels: resample(job.rgb, job.stored, plan, job.norm) };
  } catch (e) {
    reply = { id: job.id, error: e instanceof Error ? e.message : String(e) };
  }
  port.postMessage(reply, 'pixels' in reply ? [reply.pixels.buffer as ArrayBuffer] : []);
});
