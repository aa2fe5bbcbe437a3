/**
 * manifest.json, the cache's summary for people and loaders (shards with rows, bytes and
 * checksums; counts; rows per bucket), rebuilt from the journals at the end of a run, and merge:
 * the same after a multi-worker run, plus what is missing (gaps) or stored twice (duplicates).
 */
import path from 'node:path';
import { readCacheConfig, type CacheConfig } from './identity.js';
import { writeFileDurable } from '../core/durable-fs.js';
import { faultPoint } from '../core/fault-point.js';
import { readErrors, writeMergedErrors } from './errors-log.js';
import { MANIFEST_FILE } from './layout.js';
import { CacheState, type DuplicateKey } from './manifest.js';
import { repairAllParts } from './repair.js';

export interface ManifestSummary extends CacheConfig {
  updatedAt: string;
  counts: { shards: number; rows: number; bytes: number; failed: number; duplicates: number };
  /** Rows per model input size ("<width>x<height>"). */
  buckets: Record<string, number>;
  shards: Array<{ file: string; part: string; rows: number; bytes: number; sha256: string }>;
}

/** Rebuilds manifest.json and errors.jsonl from all parts' journals and error logs. */
export async function writeManifest(dir: string, state?: CacheState): Promise<ManifestSummary> {
  const config = await readCacheConfig(dir);
  if (!config) throw new Error(`${dir} has no cache.json; create the cache before summarising it`);
  const current = state ?? (await CacheState.read(dir));
  const failed = await writeMergedErrors(dir, current.keyToEntry);
  const shards = [...current.shards.values()].sort((a, b) => (a.file < b.file ? -1 : 1));
  const buckets: Record<string, number> = {};
  for (const s of shards) for (const [b, n] of Object.entries(s.buckets)) buckets[b] = (buckets[b] ?? 0) + n;
  const summary: ManifestSummary = {
    ...config,
    updatedAt: new Date().toISOString(),
    counts: {
      shards: shards.length,
      rows: shards.reduce((n, s) => n + s.rows, 0),
      bytes: shards.reduce((n, s) => n + s.bytes, 0),
      failed: failed.length,
      duplicates: current.duplicates.length,
    },
    buckets,
    shards: shards.map(({ file, part, rows, bytes, sha256 }) => ({ file, part, rows, bytes, sha256 })),
  };
  await writeFileDurable(path.join(dir, MANIFEST_FILE), async (handle) => {
    await handle.writeFile(`${JSON.stringify(summary, null, 2)}\n`);
    faultPoint('manifest-temp-written');
  });
  return summary;
}

export interface MergeReport {
  summary: ManifestSummary;
  /** Expected keys neither stored nor logged as failed (e.g. a worker that never ran). */
  gaps: string[];
  /** Keys stored by more than one shard. */
  duplicates: DuplicateKey[];
  /** Leftovers of crashed workers that merge deleted (unjournaled shards, temp files). */
  removed: string[];
  /** Parts still locked by a running worker: not repaired, their summary may still change. */
  busyParts: string[];
}

/**
 * Builds the global manifest after all workers ran. Each part is repaired under its lock first,
 * so crashed workers' leftovers go; a part whose worker is still running is reported as busy.
 * With the keys the workers were given, the report also names gaps: keys neither stored nor failed.
 */
export async function mergeCache(dir: string, expectedKeys?: Iterable<string> | AsyncIterable<string>): Promise<MergeReport> {
  const { removed, busyParts } = await repairAllParts(dir);
  const state = await CacheState.read(dir);
  const summary = await writeManifest(dir, state);
  const gaps: string[] = [];
  if (expectedKeys) {
    const failed = new Set((await readErrors(dir, state.keyToEntry)).map((e) => e.key));
    for await (const key of expectedKeys) if (!state.keyToEntry.has(key) && !failed.has(key)) gaps.push(key);
  }
  return { summary, gaps, duplicates: state.duplicates, removed, busyParts };
}
