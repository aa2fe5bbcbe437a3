/**
 * Byte ranges of a file read into buffers of their own, one read call each: hyparquet's
 * asyncBufferFromFile streams a range in 64 KiB chunks and concatenates them, a second copy of
 * every image byte (a tenth of a Parquet source's CPU in a profile).
 */
import fs from 'node:fs/promises';
import type { AsyncBuffer } from 'hyparquet';

export interface FileRanges {
  byteLength: number;
  /** `length` bytes from `position`, fewer only at the end of the file. */
  readAt(position: number, length: number): Promise<Uint8Array>;
  /** The same reads as hyparquet asks for them. */
  asyncBuffer: AsyncBuffer;
  close(): Promise<void>;
}

export async function openFileRanges(file: string): Promise<FileRanges> {
  const handle = await fs.open(file, 'r');
  try {
    const { size } = await handle.stat();
    const readAt = async (position: number, length: number): Promise<Uint8Array> => {
      // Not zeroed: the read fills it (a short read returns only what it filled).
      const out: Uint8Array = Buffer.allocUnsafeSlow(Math.max(0, Math.min(length, size - position)));
      for (let got = 0; got < out.length; ) {
        const { bytesRead } = await handle.read(out, got, out.length - got, position + got);
        if (bytesRead === 0) return out.subarray(0, got);
        got += bytesRead;
      }
      return out;
    };
    return {
      byteLength: size,
      readAt,
      // A fresh Uint8Array owns its whole ArrayBuffer, so it goes to hyparquet uncopied.
      asyncBuffer: {
        byteLength: size,
        async slice(start, end = size) {
          const bytes = await readAt(start, end - start);
          return bytes.byteLength === bytes.buffer.byteLength ? (bytes.buffer as ArrayBuffer) : bytes.slice().buffer;
        },
      },
      close: () => handle.close(),
    };
  } catch (e) {
    await handle.close();
    throw e;
  }
}
