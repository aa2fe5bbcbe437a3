/**
 * The one way to open a cache for writing, used by every run that adds rows. In this order, each
 * step safe to crash after:
 *
 *   1. take the cache-wide lock, waiting while another run holds it (the first write: creates the
 *      cache directory);
 *   2. compare cache.json with this run's identity: join a match; refuse a mismatch, or with
 *      --overwrite clear the whole cache (every part) - unless a part is locked by a process that
 *      may still be running, which is refused naming it, so no live run's files are ever deleted;
 *   3. write cache.json, with a new generation id, when the cache is new or was cleared;
 *   4. lock this part, then release the cache-wide lock;
 *   5. replay the journals and repair this part (torn lines, unjournaled shards, temp files);
 *   6. drop keys stored twice (a crash between writing a replacement row and removing the old
 *      one) and journal hand-deleted shards of this part as gone: their images are extracted again;
 *   7. open this part's errors log.
 *
 * Steps 2-4 under one lock make --overwrite safe for workers started together: the first clears
 * and writes the new identity; the others then find it matching and join that generation instead
 * of clearing again. A run's part lock is taken under the cache-wide lock after cache.json matched,
 * so a live part lock seen while cache.json mismatches belongs to a run of the old settings (or to
 * a merge repairing that part): refused too.
 * Parts of an earlier run with another worker count go with the clear: it is cache-wide.
 *
 * Nothing is created before step 1, so a run refused by its setup checks leaves no trace.
 */
import fs from 'node:fs';
import path from 'node:path';
import { UserError } from '../core/errors.js';
import { faultPoint } from '../core/fault-point.js';
import { ErrorsLog, readErrors } from './errors-log.js';
import { clearCache, identityMismatch, mismatchRefusal, readCacheConfig, writeCacheConfig, type CacheIdentity } from './identity.js';
import { lockPath, parseShardName } from './layout.js';
import { acquireCacheLock, acquireLock, livePartLocks, type HeldLock } from './lock.js';
import { writeManifest, type ManifestSummary } from './manifest-summary.js';
import { CacheState } from './manifest.js';
import { removeKeys } from './remove-keys.js';

export interface OpenForWrite {
  /** This worker's part of the cache ('0' for a single worker). */
  partId: string;
  identity: CacheIdentity;
  /** Clear a cache made with another identity instead of refusing. */
  overwrite?: boolean;
}

/** A cache open for writing one part: the lock is held until close(). */
export interface WritableCache {
  readonly dir: string;
  readonly partId: string;
  readonly identity: CacheIdentity;
  readonly state: CacheState;
  readonly errors: ErrorsLog;
  /** What the open did that is worth telling the user: a stale lock taken over, a cache cleared. */
  readonly openNote?: string;
  /** Keys the errors log lists and the cache does not hold (what --retry-failed retries). */
  failedKeys(): Promise<Set<string>>;
  /** Saves the errors log and rebuilds manifest.json and errors.jsonl from every part. */
  summarise(): Promise<ManifestSummary>;
  /** Releases the part's lock. */
  close(): Promise<void>;
}

function statOrUndefined(p: string): fs.Stats | undefined {
  try {
    return fs.statSync(p);
  } catch {
    return undefined; // missing, or under a file (ENOTDIR): judged at the nearest existing ancestor
  }
}

/**
 * The cache directory must be a writable directory, or creatable under one. Only checked, nothing
 * created: runs check this before loading a model, so a setup error writes nothing.
 */
export function checkCacheDirWritable(dir: string): void {
  const st = statOrUndefined(dir);
  if (st && !st.isDirectory()) throw new UserError(`--out ${dir} is a file: pass a directory for the cache`);
  let parent = path.resolve(dir);
  let found = st;
  while (!found) {
    parent = path.dirname(parent);
    found = statOrUndefined(parent);
  }
  if (!found.isDirectory()) throw new UserError(`cannot create --out ${dir}: ${parent} is a file, not a directory`);
  try {
    fs.accessSync(parent, fs.constants.W_OK);
  } catch {
    const where = st ? `--out ${dir}` : `${parent} (to create --out ${dir} in it)`;
    throw new UserError(`cannot write to ${where}: choose a writable directory`);
  }
}

/** Steps 1-4: this part's lock, taken once cache.json holds this run's identity. */
async function joinCache(dir: string, o: OpenForWrite): Promise<{ lock: HeldLock; notes: string[] }> {
  const cacheLock = await acquireCacheLock(dir);
  try {
    const notes = cacheLock.note ? [cacheLock.note] : [];
    const existing = await readCacheConfig(dir);
    const mismatch = existing && identityMismatch(existing, o.identity);
    if (mismatch && !o.overwrite) throw new UserError(mismatchRefusal(dir, existing, mismatch));
    if (mismatch) {
      await refuseWhilePartsRun(dir);
      await clearCache(dir);
    }
    if (!existing || mismatch) {
      const { generation } = await writeCacheConfig(dir, o.identity);
      if (mismatch) notes.push(`cleared ${dir}, made with other settings (${mismatch}): generation ${generation} begins`);
    }
    const lock = await acquireLock(dir, o.partId);
    if (lock.note) notes.push(lock.note);
    return { lock, notes };
  } finally {
    await cacheLock.release();
  }
}

/** A clear would delete the files of runs still writing with the old settings: refuse, naming them. */
async function refuseWhilePartsRun(dir: string): Promise<void> {
  const live = await livePartLocks(dir);
  if (!live.length) return;
  const who = live.map(({ partId, holder }) => `part ${partId}${holder ? ` (pid ${holder.pid} on ${holder.hostname}, started ${holder.startedAt})` : ''}`);
  throw new UserError(
    `cannot clear ${dir} for --overwrite while runs with the old settings write to it: ${who.join(', ')}; ` +
      `wait for them to end, or remove ${live.map((p) => lockPath(dir, p.partId)).join(', ')} if they are gone`,
  );
}

export async function openCacheForWrite(dir: string, o: OpenForWrite): Promise<WritableCache> {
  const { lock, notes } = await joinCache(dir, o);
  faultPoint('lock-taken');
  try {
    const state = await CacheState.open(dir, o.partId);
    if (state.duplicates.length) await removeKeys(state, o.partId, state.duplicates.map((d) => d.key));
    for (const file of state.missing) {
      if (parseShardName(path.posix.basename(file))?.partId === o.partId) {
        await state.replace(o.partId, { replace: file, by: null, time: new Date().toISOString() });
      }
    }
    const errors = await ErrorsLog.open(dir, o.partId);
    return {
      dir,
      partId: o.partId,
      identity: o.identity,
      state,
      errors,
      openNote: notes.length ? notes.join('; ') : undefined,
      failedKeys: async () => new Set((await readErrors(dir, state.keyToEntry)).map((e) => e.key)),
      summarise: async () => {
        await errors.save();
        return writeManifest(dir, state);
      },
      close: () => lock.release(),
    };
  } catch (e) {
    await lock.release();
    throw e;
  }
}
