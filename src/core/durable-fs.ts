/**
 * The few file operations crash safety rests on: fsync of a directory after a rename (otherwise
 * the rename itself may be lost on power failure), whole-file replacement through a temp file
 * (the one place that protocol is written: cache files, ONNX models, safetensors, the default
 * model link), and turning out-of-space / permission failures into one line a user can act on.
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

/** What to do after a fixable I/O failure while writing a cache: its finished shards survive it. */
const CACHE_ADVICE = 'fix that and rerun, finished shards are kept';
/** ...while writing anything else: a model, a checkpoint, a link. */
export const RERUN_ADVICE = 'fix that and run the command again';

/**
 * Rethrows an I/O failure a user can fix as a UserError naming the path and `advice` (default:
 * the cache's); anything else unchanged.
 */
export function rethrowIoError(e: unknown, file: string, advice: string = CACHE_ADVICE): never {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  const reason = code ? USER_IO_ERRORS[code] : undefined;
  if (reason) {
    throw new UserError(`cannot write ${file}: ${reason} (${code}); ${advice}`);
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

/** `<file>.<host tag>-<pid>-<n>.tmp`: the temp name writeFileDurable uses; see parseAtomicTemp. */
export function atomicTempName(file: string): string {
  return `${file}.${HOST_TAG}-${process.pid}-${tempCounter++}.tmp`;
}

/** The writer of `name` (a base name) when it is a temp file of writeFileDurable for `file`. */
export function parseAtomicTemp(name: string, file: string): { host: string; pid: number } | undefined {
  const base = path.basename(file);
  const m = name.startsWith(`${base}.`) ? /^\.([0-9a-f]{8})-(\d+)-\d+\.tmp$/.exec(name.slice(base.length)) : null;
  return m ? { host: m[1]!, pid: Number(m[2]) } : undefined;
}

export interface DurableWriteOptions {
  /** What to do after a fixable I/O failure (default: the cache's advice). */
  advice?: string;
}

/**
 * Replaces `file` with what `write` puts into the open handle, so that readers see the old or the
 * new contents, never a mix: the bytes go to a temp file that is fsynced, then renamed over `file`.
 * On failure the temp file is removed. Returns what `write` returns.
 */
export async function writeFileDurable<T>(file: string, write: (handle: fs.FileHandle) => Promise<T>, o: DurableWriteOptions = {}): Promise<T> {
  // Unique per writer: workers of one cache may rebuild manifest.json / errors.jsonl at once.
  const tmp = atomicTempName(file);
  try {
    const handle = await fs.open(tmp, 'w');
    let result: T;
    try {
      result = await write(handle);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(tmp, file);
    await fsyncDir(path.dirname(file));
    return result;
  } catch (e) {
    await fs.rm(tmp, { force: true });
    return rethrowIoError(e, file, o.advice);
  }
}

/** All of `bytes` at the handle's position: a write may take fewer bytes than it is given. */
export async function writeAll(handle: fs.FileHandle, bytes: Uint8Array): Promise<void> {
  for (let done = 0; done < bytes.length; ) done += (await handle.write(bytes, done, bytes.length - done)).bytesWritten;
}

/** Replaces `file` with `data` (see writeFileDurable). */
export async function writeFileAtomic(file: string, data: string | Uint8Array, o: DurableWriteOptions = {}): Promise<void> {
  await writeFileDurable(file, (handle) => handle.writeFile(data), o);
}

/** Points the symlink `link` at `target`, swapped in by rename: readers see the old link or the new one, never none. */
export async function symlinkAtomic(target: string, link: string, o: DurableWriteOptions = {}): Promise<void> {
  const tmp = atomicTempName(link);
  try {
    await fs.symlink(target, tmp);
    await fs.rename(tmp, link);
    await fsyncDir(path.dirname(link));
  } catch (e) {
    await fs.rm(tmp, { force: true });
    rethrowIoError(e, link, o.advice);
  }
}

/** Renames a finished temp file to its final name durably. */
export async function renameDurable(from: string, to: string, o: DurableWriteOptions = {}): Promise<void> {
  try {
    await fs.rename(from, to);
    await fsyncDir(path.dirname(to));
  } catch (e) {
    rethrowIoError(e, to, o.advice);
  }
}

/** A file's text, or undefined when it does not exist (a cache file not written yet); other errors throw. */
export async function readTextIfExists(file: string): Promise<string | undefined> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}
