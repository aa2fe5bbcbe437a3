/**
 * A new file written front to back with async writes (the event loop stays free for decoding),
 * hashed on the way so the manifest gets the shard's sha256 without reading it back.
 */
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import { rethrowIoError } from '../core/durable-fs.js';

export interface WrittenFile {
  bytes: number;
  sha256: string;
}

export class HashingOutput {
  private readonly hash = crypto.createHash('sha256');
  private written = 0;

  private constructor(
    readonly path: string,
    private readonly handle: fs.FileHandle,
  ) {}

  /** Creates or truncates `file`: a leftover of the same name is a crashed attempt, never data. */
  static async create(file: string): Promise<HashingOutput> {
    try {
      return new HashingOutput(file, await fs.open(file, 'w'));
    } catch (e) {
      rethrowIoError(e, file);
    }
  }

  get bytes(): number {
    return this.written;
  }

  async write(chunk: Uint8Array): Promise<void> {
    try {
      let done = 0;
      while (done < chunk.byteLength) {
        const { bytesWritten } = await this.handle.write(chunk, done, chunk.byteLength - done);
        done += bytesWritten;
      }
    } catch (e) {
      rethrowIoError(e, this.path);
    }
    this.hash.update(chunk);
    this.written += chunk.byteLength;
  }

  /** Makes the contents durable and closes the file. */
  async commit(): Promise<WrittenFile> {
    try {
      await this.handle.sync();
      await this.handle.close();
    } catch (e) {
      rethrowIoError(e, this.path);
    }
    return { bytes: this.written, sha256: this.hash.digest('hex') };
  }

  /** Closes and deletes the file; used when a shard is abandoned. */
  async discard(): Promise<void> {
    await this.handle.close().catch(() => undefined);
    await fs.rm(this.path, { force: true });
  }
}
