/**
 * `dinofeat crops [cache]`: every stored image's trainer bucket and crop box as JSON Lines, to stdout
 * or --out (written to a temp file and renamed, so a run cut short leaves no half file).
 */
import { once } from 'node:events';
import { EXIT } from '../core/errors.js';
import { RERUN_ADVICE, writeAll, writeFileDurable } from '../core/durable-fs.js';
import { formatCropLine } from '../image/crops-jsonl.js';
import { cropLinesOf } from '../inspect/crop-lines.js';

export interface CropsOptions {
  out?: string;
}

/** Lines joined into chunks of about a MiB: one write per chunk, not per image. */
async function* chunks(cache: string): AsyncGenerator<string> {
  let chunk = '';
  for await (const l of cropLinesOf(cache)) {
    chunk += `${formatCropLine(l)}\n`;
    if (chunk.length >= 2 ** 20) {
      yield chunk;
      chunk = '';
    }
  }
  if (chunk) yield chunk;
}

export async function runCrops(cache: string, o: CropsOptions, stdout: NodeJS.WritableStream = process.stdout): Promise<number> {
  if (o.out) {
    await writeFileDurable(o.out, async (handle) => {
      for await (const chunk of chunks(cache)) await writeAll(handle, Buffer.from(chunk));
    }, { advice: RERUN_ADVICE });
    return EXIT.ok;
  }
  for await (const chunk of chunks(cache)) {
    if (!stdout.write(chunk)) await once(stdout, 'drain');
  }
  return EXIT.ok;
}
