/** `dinofeat buckets`: the bucket table for a preset or explicit sizes and a patch size. */
import { EXIT } from '../core/errors.js';
import { bucketFlagsOf, formatBucketTable, resolveBuckets, type BucketFlagValues } from '../image/buckets.js';
import { loadModelInfo } from '../model/load-info.js';

/** The flags of `dinofeat buckets` (see bucketFlags in src/cli/flags.ts). */
export interface BucketsOptions extends BucketFlagValues {
  model?: string;
  patchSize?: number;
}

export async function runBuckets(o: BucketsOptions): Promise<number> {
  const patch = o.patchSize ?? (o.model ? loadModelInfo(o.model).patchSize : 16);
  const buckets = resolveBuckets(bucketFlagsOf(o), patch);
  process.stdout.write(`patch size ${patch}${o.dinoScale !== 1 ? `, dino scale ${o.dinoScale}` : ''}\n${formatBucketTable(buckets, patch)}\n`);
  return EXIT.ok;
}
