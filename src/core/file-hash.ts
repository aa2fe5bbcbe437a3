/** sha256 of a file, streamed (shards are hundreds of MB; images are hashed the same way extract does). */
import { createHash } from 'node:crypto';
import fs from 'node:fs';

export async function sha256File(file: string | Buffer): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 4 * 2 ** 20 })) h.update(chunk as Buffer);
  return h.digest('hex');
}
