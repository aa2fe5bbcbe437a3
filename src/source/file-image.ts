/** An image file (from a walk or a list) as a source image: read when its turn comes. */
import fs from 'node:fs';
import type { SourceImage } from './types.js';

/** `file` is a Buffer when its name is not valid UTF-8, so it can still be opened. */
export function fileImage(key: string, file: string | Buffer, display: string): SourceImage {
  return { key, read: () => readWhole(file), display, origin: { file: display } };
}

/** The most one read call takes (as for fs.readFile, whose message for larger files this keeps). */
const MAX_READ = 2 ** 31 - 1;

const readAt = (fd: number, into: Buffer, offset: number, position: number) =>
  new Promise<number>((resolve, reject) => fs.read(fd, into, offset, into.length - offset, position, (e, n) => (e ? reject(e) : resolve(n))));

/**
 * The whole file, read on libuv's pool in one call: `fs.promises.readFile` makes a round trip to
 * the pool for the open, the size, every 512 KiB, the read that finds the end and the close, and on
 * the 2-core VM those hand-offs cost more than the reading (4 at a time, CPU a file: ImageNet-sized
 * JPEGs 145–230 µs against 92–108, camera-sized 316–787 against 144–229). Opening, the size and the
 * close are quick system calls made here.
 */
async function readWhole(file: string | Buffer): Promise<Buffer> {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    if (size > MAX_READ) throw new RangeError(`File size (${size}) is greater than 2 GiB`);
    const bytes = Buffer.allocUnsafeSlow(size);
    let got = 0;
    while (got < bytes.length) {
      const n = await readAt(fd, bytes, got, got);
      if (n === 0) return bytes.subarray(0, got);
      got += n;
    }
    return bytes;
  } finally {
    fs.closeSync(fd);
  }
}
