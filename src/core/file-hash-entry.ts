/** Thread of file-hash.ts sha256FileOnThread: hashes one file and answers with its hex digest. */
import { parentPort, workerData } from 'node:worker_threads';
import { sha256File } from './file-hash.js';

const { file } = workerData as { file: string };
try {
  parentPort!.postMessage({ sha256: await sha256File(file) });
} catch (e) {
  parentPort!.postMessage({ error: e instanceof Error ? e.message : String(e) });
}
