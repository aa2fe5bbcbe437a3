/**
 * `dinofeat crops`: every stored image's trainer bucket and crop box, as the crops file extract
 * --crops reads (image/crops-jsonl.ts), so the VAE side can encode exactly what DINO saw. Rows hold
 * the DINO input size; the trainer bucket it came from is the shard's preprocessing record's (the
 * same with --dino-scale 1). A cache made with --flip says per row which way its plain columns face:
 * a row with flip = true is written with `"flip": true`, as the trainer's file said.
 */
import { UserError } from '../core/errors.js';
import { openReadOnly } from '../cache/open-read-only.js';
import type { Size } from '../image/buckets.js';
import type { CropLine } from '../image/crops-jsonl.js';
import { parsePreprocessing } from '../image/preprocessing-record.js';
import { iterateShardRows, readShardMeta } from '../shard/shard-reader.js';
import type { ShardMeta } from '../shard/schema.js';

const COLUMNS = ['key', 'bucket_width', 'bucket_height', 'crop_x', 'crop_y', 'crop_w', 'crop_h'] as const;

/** DINO input "WxH" → the trainer bucket, from the record's buckets and its crops file's. */
function trainerBuckets(meta: ShardMeta, shard: string): (dino: Size) => Size {
  const parsed = parsePreprocessing(meta.preprocessing);
  if ('problem' in parsed) throw new UserError(`${shard}: ${parsed.problem}: the trainer buckets are unknown; rebuild the cache with this dinofeat`);
  const p = parsed.value;
  if (p.dinoScale === 1) return (dino) => dino;
  const trainer = new Map<string, Size[]>();
  for (const b of [...p.buckets, ...(p.crops?.buckets ?? [])]) {
    const key = `${b.width}x${b.height}`;
    const list = trainer.get(key) ?? [];
    if (!list.some((t) => t.width === b.trainer.width && t.height === b.trainer.height)) list.push(b.trainer);
    trainer.set(key, list);
  }
  return (dino) => {
    const key = `${dino.width}x${dino.height}`;
    const found = trainer.get(key) ?? [];
    if (found.length !== 1) {
      throw new UserError(`${shard}: DINO input ${key} comes from ${found.length ? `several trainer buckets (${found.map((t) => `${t.width}x${t.height}`).join(', ')}) at --dino-scale ${p.dinoScale}` : 'no bucket in the preprocessing record'}: the trainer bucket of its rows is unknown`);
    }
    return found[0]!;
  };
}

/** The crop lines of every live row of a cache (or of one shard), shard by shard. */
export async function* cropLinesOf(target: string): AsyncGenerator<CropLine> {
  const t = await openReadOnly(target);
  if (t.journalError) throw new UserError(`${target}: ${t.journalError}`);
  for (const shard of t.shards) {
    const meta = await readShardMeta(shard.path);
    const trainerOf = trainerBuckets(meta, shard.name);
    for await (const rows of iterateShardRows(shard.path, { columns: meta.flip ? [...COLUMNS, 'flip'] : COLUMNS })) {
      for (const r of rows) {
        yield {
          key: r.key,
          bucket: trainerOf({ width: r.bucket_width, height: r.bucket_height }),
          crop: { x: r.crop_x, y: r.crop_y, w: r.crop_w, h: r.crop_h },
          ...(r.flip ? { flip: true } : {}),
        };
      }
    }
  }
}
