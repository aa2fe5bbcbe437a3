/** `dinofeat buckets`: the bucket table for a preset or explicit sizes and a patch size. */
import { EXIT } from '../core/errors.js';
import { formatBucketTable, resolveBuckets, type BucketFlags } from '../image/buckets.js';
import { loadModelInfo } from '../model/load-info.js';

export async function runBuckets(o: BucketFlags & { model?: string; patchSize?: number }): Promise<number> {
  const patch = o.patchSize ?? (o.model ? loadModelInfo(o.model).patchSize : 16);
  const buckets = resolveBuckets(o, patch);
  process.stdout.write(`patch size ${patch}${o.dinoScale !== 1 ? `, dino scale ${o.dinoScale}` : ''}\n${formatBucketTable(buckets, patch)}\n`);
  return EXIT.ok;
}
