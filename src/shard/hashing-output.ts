/**
 * A new file written front to back with async writes (the event loop stays free for decoding),
 * hashed once it is durable, by reading it back on a thread of its own: hashed on the way, a
 * 1024² ViT-S row's 3 MiB took 1.6-1.9 ms of the main thread, which on a GPU host sets the pace
 * (docs/speed.md). The hash is then of the file as the system gives it back.
 */
import fs from 'node:fs/promises';
import { rethrowIoError } from '../core/durable-fs.js';
import { sha256FileOnThread } from '../core/file-hash.js';

export interface WrittenFile {
  bytes: number;
  sha256: string;
}

export class HashingOutput {
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
    this.written += chunk.byteLength;
  }

  /** Makes the contents durable, closes the file and hashes it. */
  async commit(): Promise<WrittenFile> {
    let sha256: string;
    try {
      await this.handle.sync();
      await this.handle.close();
      sha256 = await sha256FileOnThread(this.path);
    } catch (e) {
      rethrowIoError(e, this.path);
    }
    return { bytes: this.written, sha256 };
  }

  /** Closes and deletes the file; used when a shard is abandoned. */
  async discard(): Promise<void> {
    await this.handle.close().catch(() => undefined);
    await fs.rm(this.path, { force: true });
  }
}
