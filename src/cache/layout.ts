/**
 * Where everything lives in a cache directory. Everything a worker writes carries its part id,
 * so workers sharing one directory never write the same file:
 *
 *   cache.json                      identity: fingerprint, model, preprocessing, storage settings
 *   shards/part-<P>-<seq>.parquet   shards (.arrow for Arrow IPC streams; <name>.tmp while written)
 *   manifest/part-<P>.jsonl         append-only journal of part P's committed shards
 *   manifest/errors-<P>.jsonl       part P's failed images
 *   manifest/inputs-<P>.json        what part P's runs read and ran (run-record.ts; not the identity)
 *   locks/part-<P>.lock             who is writing part P
 *   locks/cache.lock                who is checking (or clearing) the cache while opening it
 *   manifest.json, errors.jsonl     summaries merged from all parts at the end of a run
 */
import path from 'node:path';
import { UserError } from '../core/errors.js';
import { SHARD_EXTENSIONS, type ShardFormat } from '../shard/schema.js';

export const CACHE_CONFIG_FILE = 'cache.json';
export const SHARDS_DIR = 'shards';
export const MANIFEST_DIR = 'manifest';
export const LOCKS_DIR = 'locks';
export const MANIFEST_FILE = 'manifest.json';
export const ERRORS_FILE = 'errors.jsonl';
export const TMP_SUFFIX = '.tmp';

const PART_ID = /^[A-Za-z0-9_.]+$/;

/** Part ids end up in file names; a '-' would make shard names ambiguous. */
export function checkPartId(partId: string): string {
  if (!PART_ID.test(partId)) {
    throw new UserError(`worker part id "${partId}" may only contain letters, digits, '_' and '.'`);
  }
  return partId;
}

export function journalPath(dir: string, partId: string): string {
  return path.join(dir, MANIFEST_DIR, `part-${partId}.jsonl`);
}

export function partErrorsPath(dir: string, partId: string): string {
  return path.join(dir, MANIFEST_DIR, `errors-${partId}.jsonl`);
}

export function lockPath(dir: string, partId: string): string {
  return path.join(dir, LOCKS_DIR, `part-${partId}.lock`);
}

export const PART_LOCK_NAME = /^part-([A-Za-z0-9_.]+)\.lock$/;

export function cacheLockPath(dir: string): string {
  return path.join(dir, LOCKS_DIR, 'cache.lock');
}

/** Shard path relative to the cache dir, '/' separated, as recorded in journals and manifest.json. */
export function shardFile(partId: string, seq: number, format: ShardFormat): string {
  return `${SHARDS_DIR}/part-${partId}-${String(seq).padStart(5, '0')}${SHARD_EXTENSIONS[format]}`;
}

export interface ShardName {
  partId: string;
  seq: number;
  format: ShardFormat;
}

const SHARD_NAME = /^part-([A-Za-z0-9_.]+)-(\d+)\.(parquet|arrow)$/;

/** Parses a shard file name (no directory); undefined for anything else. */
export function parseShardName(name: string): ShardName | undefined {
  const m = SHARD_NAME.exec(name);
  if (!m) return undefined;
  return { partId: m[1]!, seq: Number(m[2]), format: m[3] as ShardFormat };
}

export const JOURNAL_NAME = /^part-([A-Za-z0-9_.]+)\.jsonl$/;
export const PART_ERRORS_NAME = /^errors-([A-Za-z0-9_.]+)\.jsonl$/;
