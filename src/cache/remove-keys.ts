/**
 * Takes rows out of the cache (an image whose bytes changed must lose its old row) by rewriting
 * each affected shard without them: the new shard is written as a temp file, renamed, journaled
 * as replacing the old one, and only then is the old file deleted. A crash at any step leaves
 * either the old or the new shard live, and the next open deletes the other.
 *
 * Rows are copied in stored form, so their bytes are kept exactly. A shard of another part is
 * rewritten under that part's lock; if a live worker holds it, that is reported, not raced.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { acquireLock, type HeldLock } from './lock.js';
import { repairPart, type CacheState } from './manifest.js';
import { iterateShardRows, readShardMeta } from '../shard/shard-reader.js';
import { createShardWriter, type RowGroupLimits } from '../shard/shard-writer.js';
import { renameDurable, fsyncDir } from '../core/durable-fs.js';
import { faultPoint } from '../core/fault-point.js';
import { bucketLabel } from '../shard/schema.js';
import { TMP_SUFFIX } from './layout.js';
import type { KeyRecord, ShardRecord } from './journal.js';

export interface RemoveResult {
  /** Rows removed (a key held twice counts twice). */
  rows: number;
  /** Shards rewritten (or deleted, when no rows were left). */
  rewritten: string[];
}

/**
 * Removes every row of `keys` from the cache. `partId` is the caller's part, whose lock it
 * already holds; other parts' locks are taken for the rewrite and released.
 */
export async function removeKeys(
  state: CacheState,
  partId: string,
  keys: Iterable<string>,
  limits: RowGroupLimits = {},
): Promise<RemoveResult> {
  const gone = new Set(keys);
  const result: RemoveResult = { rows: 0, rewritten: [] };
  if (gone.size === 0) return result;
  const byPart = new Map<string, Set<string>>();
  for (const entry of state.shards.values()) {
    if (!entry.keys.some(([k]) => gone.has(k))) continue;
    byPart.set(entry.part, (byPart.get(entry.part) ?? new Set()).add(entry.file));
  }
  for (const part of byPart.keys()) {
    let lock: HeldLock | undefined;
    if (part !== partId) {
      lock = await acquireLock(state.dir, part);
      // Its last holder may have committed or crashed since we read the journal.
      await repairPart(state.dir, part, await state.reloadPart(part));
    }
    try {
      for (const entry of [...state.shards.values()]) {
        if (entry.part !== part || !entry.keys.some(([k]) => gone.has(k))) continue;
        result.rows += await rewriteShard(state, entry, gone, limits);
        result.rewritten.push(entry.file);
      }
    } finally {
      await lock?.release();
    }
  }
  return result;
}

async function rewriteShard(state: CacheState, old: ShardRecord & { part: string }, gone: ReadonlySet<string>, limits: RowGroupLimits): Promise<number> {
  const oldPath = path.join(state.dir, old.file);
  const meta = await readShardMeta(oldPath);
  const file = state.nextShardFile(old.part, old.format);
  const tmp = path.join(state.dir, file + TMP_SUFFIX);
  const writer = createShardWriter(old.format, limits);
  await writer.open(tmp, meta);
  const keys: KeyRecord[] = [];
  const originOf = new Map(old.keys.map(([key, , origin]) => [key, origin]));
  const buckets: Record<string, number> = {};
  try {
    for await (const rows of iterateShardRows(oldPath)) {
      const kept = rows.filter((r) => !gone.has(r.key));
      for (const r of kept) {
        const origin = originOf.get(r.key);
        keys.push(origin ? [r.key, r.sha256, origin] : [r.key, r.sha256]);
        buckets[bucketLabel(r)] = (buckets[bucketLabel(r)] ?? 0) + 1;
      }
      await writer.appendEncoded(kept);
    }
  } catch (e) {
    await writer.abort();
    throw e;
  }
  const time = new Date().toISOString();
  if (keys.length === 0) {
    await writer.abort();
    await state.replace(old.part, { replace: old.file, by: null, time });
  } else {
    const written = await writer.close();
    await renameDurable(tmp, path.join(state.dir, file));
    const by: ShardRecord = { file, format: old.format, rows: written.rows, bytes: written.bytes, sha256: written.sha256, keys, buckets, time };
    await state.replace(old.part, { replace: old.file, by, time });
  }
  faultPoint('stale-row-replaced');
  await fs.rm(oldPath, { force: true });
  await fsyncDir(path.dirname(oldPath));
  return old.rows - keys.length;
}
