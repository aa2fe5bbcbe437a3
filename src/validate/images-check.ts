/**
 * validate --images / --list: the cache against the images it was made from. Every image the
 * inputs hold must be stored exactly once or be in the errors log; a stored row whose image bytes
 * changed (sha256) or whose shard was made with another model / preprocessing fingerprint is stale.
 */
import { readErrors } from '../cache/errors-log.js';
import type { ReadTarget } from '../cache/open-read-only.js';
import type { ShardMeta } from '../shard/schema.js';
import { inputArgs, readInputs, type Inputs } from '../source/inputs.js';
import { createHash } from 'node:crypto';
import { abbreviate, plural } from '../core/text.js';
import { CheckRecorder, skippedCheck, type CheckResult } from './check.js';

const short = (sha: string) => sha.slice(0, 12);

export async function checkImages(t: ReadTarget, inputs: Inputs, shardMeta: ReadonlyMap<string, ShardMeta>, fingerprint?: string): Promise<CheckResult> {
  if (t.kind !== 'cache' || !t.dir || !t.state) {
    return skippedCheck('images', 'needs a cache directory (with its journals), not a single shard');
  }
  const rec = new CheckRecorder('images');
  const state = t.state;
  const copies = new Map<string, number>();
  for (const shard of state.shards.values()) for (const [key] of shard.keys) copies.set(key, (copies.get(key) ?? 0) + 1);
  const failed = new Set((await readErrors(t.dir, state.keyToEntry)).map((e) => e.key));
  const staleShards = new Set([...shardMeta].filter(([, m]) => fingerprint !== undefined && m.fingerprint !== fingerprint).map(([name]) => name));

  const walked = new Set<string>();
  const stale = new Set<string>();
  let stored = 0;
  let inErrors = 0;
  for await (const item of readInputs(inputs)) {
    const key = 'image' in item ? item.image.key : item.problem.key;
    walked.add(key);
    const n = copies.get(key) ?? 0;
    if (n === 0) {
      if (failed.has(key)) inErrors++;
      else rec.fail('missing-image', key, 'image' in item ? 'neither stored in the cache nor in its errors log' : `${item.problem.reason}; not in the errors log`);
      continue;
    }
    stored++;
    if (n > 1) rec.fail('duplicate-key', key, `stored ${n} times`);
    if (!('image' in item)) continue;
    const entry = state.keyToEntry.get(key)!;
    const bytes = await item.image.read().catch(() => undefined);
    if (!bytes) {
      rec.fail('missing-image', key, `${item.image.display} cannot be read`);
      continue;
    }
    const sha = createHash('sha256').update(bytes).digest('hex');
    if (sha !== entry.sha256) {
      rec.fail('stale-source', key, `the file changed since it was extracted (sha256 ${short(sha)}… now, ${short(entry.sha256)}… in ${entry.shard})`);
      stale.add(key);
    }
    if (staleShards.has(entry.shard)) {
      rec.fail('stale-model', key, `stored in ${entry.shard}, made with fingerprint ${shardMeta.get(entry.shard)!.fingerprint}, not the cache's ${fingerprint}`);
      stale.add(key);
    }
  }

  const elsewhere = [...copies.keys()].filter((k) => !walked.has(k));
  if (elsewhere.length) {
    rec.note(`${plural(elsewhere.length, 'stored row')} without an image in ${inputArgs(inputs)} (deleted, or extracted from other inputs): ${abbreviate(elsewhere)}`);
  }
  const again = `dinofeat extract ${inputArgs(inputs)} --out ${t.dir} with the same flags as before`;
  rec.fix('missing-image', `run ${again}: it extracts the images not stored yet`);
  rec.fix('stale-source', `run ${again}: changed images are extracted again and their old rows removed`);
  rec.fix('stale-model', `delete the shards the cache check names under "fingerprint" and run ${again}`);
  rec.fix('duplicate-key', `run ${again}: it drops every copy of a key stored twice and extracts the image again`);
  rec.info(`${walked.size} images in ${inputArgs(inputs)}: ${stored} stored, ${inErrors} in the errors log, ${rec.count('missing-image')} missing, ${stale.size} stale`);
  return rec.result();
}
