/**
 * The read side of the store: opens what validate and inspect are pointed at, without a lock and
 * without writing: a cache directory (its live shards, replayed from the journals) or one shard
 * file, which may sit inside a cache (then its journal record and the cache's identity are known
 * too). Journals that cannot be replayed are reported in journalError and an unreadable
 * cache.json leaves config unset, rather than throwing, so validate can still check the rest.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { UserError, isUserError } from '../core/errors.js';
import { readCacheConfig, type CacheConfig } from './identity.js';
import { CACHE_CONFIG_FILE, MANIFEST_DIR, SHARDS_DIR } from './layout.js';
import { CacheState, type ShardEntry } from './manifest.js';

export interface ShardTarget {
  /** Absolute path of the file. */
  path: string;
  /** As journaled ("shards/part-0-00001.parquet") for a shard of a cache, else the path given. */
  name: string;
  /** Its journal record (rows, bytes, sha256, keys), when a cache journals it. */
  record?: ShardEntry;
}

export interface ReadTarget {
  kind: 'cache' | 'shard';
  /** The cache directory (for a shard: the cache it belongs to, if any). */
  dir?: string;
  config?: CacheConfig;
  /** Journals replayed; undefined when they cannot be read (see journalError). */
  state?: CacheState;
  journalError?: string;
  /** Shards to read: a cache's live shards in file order, or the one shard. */
  shards: ShardTarget[];
}

async function openCache(dir: string): Promise<Pick<ReadTarget, 'config' | 'state' | 'journalError'>> {
  let state: CacheState | undefined;
  let journalError: string | undefined;
  try {
    state = await CacheState.read(dir);
  } catch (e) {
    if (!isUserError(e)) throw e;
    journalError = e.message;
  }
  let config: CacheConfig | undefined;
  try {
    config = await readCacheConfig(dir);
  } catch (e) {
    if (!isUserError(e)) throw e;
  }
  return { config, state, journalError };
}

const isCacheDir = async (dir: string) =>
  (await fs.stat(path.join(dir, CACHE_CONFIG_FILE)).catch(() => undefined)) !== undefined ||
  (await fs.stat(path.join(dir, MANIFEST_DIR)).catch(() => undefined))?.isDirectory() === true;

export async function openReadOnly(target: string): Promise<ReadTarget> {
  const st = await fs.stat(target).catch(() => undefined);
  if (!st) throw new UserError(`${target} not found: pass a cache directory or a shard file`);
  if (st.isDirectory()) {
    const dir = path.resolve(target);
    if (!(await isCacheDir(dir))) {
      throw new UserError(`${target} is not a dinofeat cache (no ${CACHE_CONFIG_FILE} or ${MANIFEST_DIR}/): pass the --out directory of dinofeat extract, or a shard file`);
    }
    const cache = await openCache(dir);
    const shards = [...(cache.state?.shards.values() ?? [])]
      .sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0))
      .map((record) => ({ path: path.join(dir, record.file), name: record.file, record }));
    return { kind: 'cache', dir, ...cache, shards };
  }
  const file = path.resolve(target);
  const parent = path.dirname(file);
  const dir = path.dirname(parent);
  if (path.basename(parent) === SHARDS_DIR && (await isCacheDir(dir))) {
    const cache = await openCache(dir);
    const name = `${SHARDS_DIR}/${path.basename(file)}`;
    return { kind: 'shard', dir, ...cache, shards: [{ path: file, name, record: cache.state?.shards.get(name) }] };
  }
  return { kind: 'shard', shards: [{ path: file, name: target }] };
}
