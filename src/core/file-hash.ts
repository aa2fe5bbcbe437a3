/** sha256 of a file, streamed (shards are hundreds of MB; images are hashed the same way extract does). */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { Worker } from 'node:worker_threads';
import { workerScript } from './worker-script.js';

export async function sha256File(file: string | Buffer): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 4 * 2 ** 20 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** sha256File on a thread of its own (file-hash-entry.ts), so this thread's event loop is never held by it. */
export function sha256FileOnThread(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    // No flags of this process's (a loader, `--input-type` of an `-e` script, which a worker refuses): the script is compiled.
    const worker = new Worker(workerScript('core/file-hash-entry.js'), { workerData: { file }, execArgv: [] });
    let answered = false;
    worker.once('message', (reply: { sha256: string } | { error: string }) => {
      answered = true;
      if ('sha256' in reply) resolve(reply.sha256);
      else reject(new Error(reply.error));
    });
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (!answered) reject(new Error(`the thread hashing ${file} exited (code ${code})`));
    });
  });
}
