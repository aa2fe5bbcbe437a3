/**
 * The few file operations the cache's crash safety rests on: fsync of a directory after a rename
 * (otherwise the rename itself may be lost on power failure), atomic whole-file replacement, and
 * turning out-of-space / permission failures into one line a user can act on.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { UserError } from './errors.js';

const USER_IO_ERRORS: Readonly<Record<string, string>> = {
  ENOSPC: 'the disk is full',
  EDQUOT: 'the disk quota is exceeded',
  EFBIG: 'the file size limit is exceeded',
  EROFS: 'the file system is read-only',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
};

/** Rethrows an I/O failure a user can fix as a UserError naming the path; anything else unchanged. */
export function rethrowIoError(e: unknown, file: string): never {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  const reason = code ? USER_IO_ERRORS[code] : undefined;
  if (reason) {
    throw new UserError(`cannot write ${file}: ${reason} (${code}); fix that and rerun, finished shards are kept`);
  }
  throw e;
}

export async function fsyncDir(dir: string): Promise<void> {
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(dir, 'r');
    await handle.sync();
  } catch (e) {
    // Some platforms and file systems cannot fsync a directory; there the rename is as durable as it gets.
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EINVAL' && code !== 'EPERM' && code !== 'EBADF') throw e;
  } finally {
    await handle?.close();
  }
}

let tempCounter = 0;

/** This machine, in temp names: a pid only identifies a writer together with its host (caches on shared disks). */
export const HOST_TAG = createHash('sha256').update(os.hostname()).digest('hex').slice(0, 8);

/** `<file>.<host tag>-<pid>-<n>.tmp`: the temp name writeFileAtomic uses; see parseAtomicTemp. */
export function atomicTempName(file: string): string {
  return `${file}.${HOST_TAG}-${process.pid}-${tempCounter++}.tmp`;
}

/** The writer of `name` (a base name) when it is a temp file of writeFileAtomic for `file`. */
export function parseAtomicTemp(name: string, file: string): { host: string; pid: number } | undefined {
  const base = path.basename(file);
  const m = name.startsWith(`${base}.`) ? /^\.([0-9a-f]{8})-(\d+)-\d+\.tmp$/.exec(name.slice(base.length)) : null;
  return m ? { host: m[1]!, pid: Number(m[2]) } : undefined;
}

/** Replaces `file` with `data` so that readers see the old or the new contents, never a mix. */
export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  // Unique per writer: workers of one cache may rebuild manifest.json / errors.jsonl at once.
  const tmp = atomicTempName(file);
  try {
    const handle = await fs.open(tmp, 'w');
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(tmp, file);
    await fsyncDir(path.dirname(file));
  } catch (e) {
    await fs.rm(tmp, { force: true });
    rethrowIoError(e, file);
  }
}

/** Renames a finished temp file to its final name durably. */
export async function renameDurable(from: string, to: string): Promise<void> {
  try {
    await fs.rename(from, to);
    await fsyncDir(path.dirname(to));
  } catch (e) {
    rethrowIoError(e, to);
  }
}
