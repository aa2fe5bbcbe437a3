/**
 * Exclusive locks that survive crashes: a file created with O_EXCL that names its holder (pid,
 * host, start time). A lock whose process is gone from this host is stale and taken over; a live
 * one, or one from another host, refuses with the way out. One lock per (cache dir, part) is held
 * for a whole run; the cache-wide lock only while a run checks (and maybe clears) the cache, so it
 * is waited for instead of refused.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { UserError } from '../core/errors.js';
import { LOCKS_DIR, PART_LOCK_NAME, cacheLockPath, lockPath } from './layout.js';
import { rethrowIoError } from '../core/durable-fs.js';
import { launcherPid } from '../core/launcher.js';

export interface LockHolder {
  /** The process users see: this run's, or its launcher's when the run is the launcher's child (core/launcher.ts). */
  pid: number;
  /** The process that writes, when it is not `pid` (a launcher's child), with its kernel start time. */
  writer?: { pid: number; procStart?: string };
  hostname: string;
  /** ISO time the holder took the lock. */
  startedAt: string;
  /** Kernel start time of the holder process (Linux), to tell a reused pid from the holder. */
  procStart?: string;
}

export interface HeldLock {
  path: string;
  /** Set when a stale lock was taken over: say so to the user. */
  note?: string;
  release(): Promise<void>;
}

/** /proc/<pid>/stat fields 3 (state) and 22 (start time); undefined where there is no procfs. */
async function processStat(pid: number | 'self'): Promise<{ state: string; start: string | undefined } | undefined> {
  try {
    const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may contain spaces: count from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0]!, start: fields[19] };
  } catch {
    return undefined;
  }
}

async function processStartTime(pid: number | 'self'): Promise<string | undefined> {
  return (await processStat(pid))?.start;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Whether process `pid` exists on this host. */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists but belongs to someone else.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Why process `pid` (started at `procStart`) is gone, or undefined when it may still be running. */
async function goneReason(pid: number, procStart: string | undefined): Promise<string | undefined> {
  if (!pidAlive(pid)) return `pid ${pid} is no longer running`;
  const now = await processStat(pid);
  // Killed, but not yet reaped by its parent (or, orphaned, by an init that may never reap it).
  if (now?.state === 'Z') return `pid ${pid} is no longer running`;
  if (procStart && now?.start && now.start !== procStart) return `pid ${pid} now belongs to another process`;
  return undefined;
}

/**
 * A writer whose launcher is gone kills itself at once (cli/allocator-launch.ts): it is waited
 * for, for at most this long, before its lock counts as live.
 */
const ENDING_WRITER_WAIT_MS = 10_000;

/** Why the holder is gone, or undefined when it may still be running. */
async function staleReason(holder: LockHolder): Promise<string | undefined> {
  if (holder.hostname !== os.hostname()) return undefined;
  const gone = await goneReason(holder.pid, holder.procStart);
  if (!gone || !holder.writer) return gone;
  const { pid, procStart } = holder.writer;
  for (const until = Date.now() + ENDING_WRITER_WAIT_MS; Date.now() < until; await sleep(20)) {
    if (await goneReason(pid, procStart)) return gone;
  }
  return undefined;
}

async function readHolder(file: string): Promise<LockHolder | undefined> {
  try {
    const holder = JSON.parse(await fs.readFile(file, 'utf8')) as LockHolder;
    return Number.isInteger(holder.pid) && typeof holder.hostname === 'string' ? holder : undefined;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw e;
    return undefined; // empty or torn: its creator died between creating and writing it
  }
}

/** Only one process at a time may judge and remove a stale lock, or two could each remove the other's new one. */
async function withTakeoverMutex<T>(file: string, fn: () => Promise<T>): Promise<T | undefined> {
  const mutex = `${file}.takeover`;
  try {
    await (await fs.open(mutex, 'wx')).close();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    // A taker that crashed mid-takeover leaves the mutex behind; it is only ever held for milliseconds.
    const age = Date.now() - (await fs.stat(mutex).catch(() => ({ mtimeMs: Date.now() }))).mtimeMs;
    if (age > 10_000) await fs.rm(mutex, { force: true });
    return undefined;
  }
  try {
    return await fn();
  } finally {
    await fs.rm(mutex, { force: true });
  }
}

/** Who holds a lock file and, when the holder is gone, why; undefined when the file is gone. */
async function judgeLock(file: string): Promise<{ holder?: LockHolder; staleBecause?: string } | undefined> {
  let holder: LockHolder | undefined;
  try {
    holder = await readHolder(file);
  } catch {
    return undefined; // released meanwhile
  }
  if (holder) return { holder, staleBecause: await staleReason(holder) };
  const age = Date.now() - (await fs.stat(file).catch(() => ({ mtimeMs: Date.now() }))).mtimeMs;
  return { staleBecause: age > 5_000 ? 'its lock file is empty' : undefined }; // young: being written right now
}

/** The lock of one part, held for a whole run: a live holder is refused at once. */
export function acquireLock(dir: string, partId: string): Promise<HeldLock> {
  return acquireLockFile(dir, lockPath(dir, partId), 0);
}

/**
 * How long a run waits for the cache-wide lock. Its holder keeps it for milliseconds, except while
 * it clears a cache for --overwrite: deleting a large cache's shards over a network file system
 * can take minutes.
 */
const CACHE_LOCK_WAIT_MS = 10 * 60_000;

/** The cache-wide lock (locks/cache.lock): waited for while a live holder has it. */
export function acquireCacheLock(dir: string): Promise<HeldLock> {
  return acquireLockFile(dir, cacheLockPath(dir), CACHE_LOCK_WAIT_MS);
}

/** A part lock whose holder may still be running (alive on this host, or on another host). */
export interface LivePart {
  partId: string;
  /** Undefined while the holder is writing its lock file. */
  holder?: LockHolder;
}

/** Every part lock whose holder may still be running. */
export async function livePartLocks(dir: string): Promise<LivePart[]> {
  const live: LivePart[] = [];
  for (const name of (await fs.readdir(path.join(dir, LOCKS_DIR)).catch(() => [] as string[])).sort()) {
    const partId = PART_LOCK_NAME.exec(name)?.[1];
    if (partId === undefined) continue;
    const judged = await judgeLock(path.join(dir, LOCKS_DIR, name));
    if (judged && !judged.staleBecause) live.push({ partId, holder: judged.holder });
  }
  return live;
}

async function acquireLockFile(dir: string, file: string, waitMs: number): Promise<HeldLock> {
  try {
    await fs.mkdir(path.dirname(file), { recursive: true });
  } catch (e) {
    rethrowIoError(e, path.dirname(file));
  }
  const launcher = launcherPid();
  const me: LockHolder = {
    pid: launcher ?? process.pid,
    ...(launcher !== undefined && { writer: { pid: process.pid, procStart: await processStartTime('self') } }),
    hostname: os.hostname(),
    startedAt: new Date().toISOString(),
    procStart: await processStartTime(launcher ?? 'self'),
  };
  const waitUntil = Date.now() + waitMs;
  const notes: string[] = [];
  let tries = 0;
  while (tries++ < 50) {
    if (await tryCreate(file, me)) {
      return { path: file, note: notes.length ? notes.join('; ') : undefined, release: () => releaseLock(file, me) };
    }
    const judged = await judgeLock(file);
    if (!judged) continue;
    const { holder, staleBecause } = judged;
    if (!staleBecause) {
      if (holder && Date.now() >= waitUntil) {
        throw new UserError(
          `cache ${dir} is in use by pid ${holder.pid} on ${holder.hostname} (started ${holder.startedAt}); ` +
            `wait, or remove ${file} if that process is gone`,
        );
      }
      if (holder) tries = 0; // waiting for a live holder is not a failed try
      await sleep(holder ? 50 : 100);
      continue;
    }
    const judgedText = JSON.stringify(holder);
    const took = await withTakeoverMutex(file, async () => {
      const again = await readHolder(file).catch(() => undefined);
      if (JSON.stringify(again) !== judgedText) return false; // someone else got there first
      await fs.rm(file, { force: true });
      return true;
    });
    if (took) {
      notes.push(`took over the lock of ${holder ? `pid ${holder.pid} (started ${holder.startedAt})` : 'a crashed run'}: ${staleBecause}`);
    } else {
      await sleep(20);
    }
  }
  throw new UserError(`could not take the lock ${file}; remove it if no dinofeat process is using ${dir}`);
}

async function tryCreate(file: string, me: LockHolder): Promise<boolean> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, 'wx');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    rethrowIoError(e, file);
  }
  try {
    await handle.writeFile(JSON.stringify(me));
    await handle.sync();
  } finally {
    await handle.close();
  }
  return true;
}

/** Removes the lock only if it is still ours (a takeover by someone else must not be undone). */
async function releaseLock(file: string, me: LockHolder): Promise<void> {
  const holder = await readHolder(file).catch(() => undefined);
  if (holder && holder.pid === me.pid && holder.startedAt === me.startedAt) await fs.rm(file, { force: true });
}
