/** `dinofeat merge <cache>`: the global manifest after a multi-worker run, with gaps and overlaps. */
import { mergeCache } from '../cache/manifest-summary.js';
import { EXIT } from '../core/errors.js';
import { inputKeys } from '../source/inputs.js';
import { readOptionsFromFlags, type ReadFlagValues } from '../source/read-options.js';

export async function runMerge(out: string, o: { images?: string[]; list?: string[] } & ReadFlagValues): Promise<number> {
  const given = Boolean(o.images?.length || o.list?.length);
  const r = await mergeCache(out, given ? inputKeys({ paths: o.images ?? [], lists: o.list ?? [], read: readOptionsFromFlags(o) }) : undefined);
  const c = r.summary.counts;
  const lines = [`dinofeat merge: ${c.rows} rows in ${c.shards} shards (${(c.bytes / 2 ** 20).toFixed(1)} MiB), ${c.failed} failed images`];
  if (r.removed.length) lines.push(`  removed leftovers of crashed workers: ${r.removed.join(', ')}`);
  if (r.busyParts.length) lines.push(`  still running (not merged): ${r.busyParts.join(', ')}`);
  if (r.duplicates.length) lines.push(`  overlaps: ${r.duplicates.length} keys stored twice, e.g. ${r.duplicates.slice(0, 5).map((d) => d.key).join(', ')}`);
  if (given) lines.push(`  gaps: ${r.gaps.length} images neither stored nor failed${r.gaps.length ? `, e.g. ${r.gaps.slice(0, 5).join(', ')}` : ''}`);
  process.stdout.write(`${lines.join('\n')}\n`);
  return r.gaps.length || r.duplicates.length || r.busyParts.length ? EXIT.imagesFailed : EXIT.ok;
}
