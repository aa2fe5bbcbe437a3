/** `dinofeat merge <cache>`: the global manifest after a multi-worker run, with gaps and overlaps. */
import { mergeCache } from '../cache/manifest-summary.js';
import { readInputs } from '../source/inputs.js';

export async function runMerge(out: string, o: { images?: string[]; list?: string[] }): Promise<number> {
  let expected: string[] | undefined;
  if (o.images?.length || o.list?.length) {
    expected = [];
    for await (const item of readInputs({ dirs: o.images ?? [], lists: o.list ?? [] })) if ('image' in item) expected.push(item.image.key);
  }
  const r = await mergeCache(out, expected);
  const c = r.summary.counts;
  process.stdout.write(`dinofeat merge: ${c.rows} rows in ${c.shards} shards (${(c.bytes / 2 ** 20).toFixed(1)} MiB), ${c.failed} failed images\n`);
  if (r.removed.length) process.stdout.write(`  removed leftovers of crashed workers: ${r.removed.join(', ')}\n`);
  if (r.busyParts.length) process.stdout.write(`  still running (not merged): ${r.busyParts.join(', ')}\n`);
  if (r.duplicates.length) process.stdout.write(`  overlaps: ${r.duplicates.length} keys stored twice, e.g. ${r.duplicates.slice(0, 5).map((d) => d.key).join(', ')}\n`);
  if (expected) process.stdout.write(`  gaps: ${r.gaps.length} images neither stored nor failed${r.gaps.length ? `, e.g. ${r.gaps.slice(0, 5).join(', ')}` : ''}\n`);
  return r.gaps.length || r.duplicates.length || r.busyParts.length ? 1 : 0;
}
