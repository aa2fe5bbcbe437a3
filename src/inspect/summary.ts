/**
 * inspect's summary of a shard or a cache: schema, metadata, rows, bucket histogram, sizes and CLS
 * norms. It reads only the small columns (SUMMARY_COLUMNS): the patch and register bytes, nearly
 * all of a shard, are never read from a Parquet file (an Arrow stream has no index, so there they
 * are streamed past but not copied); their size follows from the grid, hidden size and dtype.
 */
import fs from 'node:fs/promises';
import { UserError } from '../core/errors.js';
import { readErrors } from '../cache/errors-log.js';
import type { ReadTarget } from '../cache/open-read-only.js';
import { DTYPE_BYTES, SCHEMA_VERSION, bucketLabel, shardLayers, type ColumnName, type ShardFormat, type ShardMeta } from '../shard/schema.js';
import { iterateShardRows, readShardInfo } from '../shard/shard-reader.js';
import { NormStats, formatNorms, l2norm, type NormSummary } from '../core/norm-stats.js';
import { abbreviate, plural } from '../core/text.js';

export const SUMMARY_COLUMNS = ['bucket_width', 'bucket_height', 'grid_h', 'grid_w', 'cls'] as const satisfies readonly ColumnName[];

export interface InspectSummary {
  target: string;
  kind: ReadTarget['kind'];
  format: ShardFormat;
  schemaVersion: number;
  columns: ColumnName[];
  /** Metadata of the first shard; `fingerprints` lists every one met. */
  meta: ShardMeta;
  fingerprints: string[];
  /** Execution providers the shards record, in the order met; shards from before the key add none. */
  devices: string[];
  shards: number;
  rows: number;
  /** Rows per model input size "<w>x<h>". */
  buckets: Record<string, number>;
  fileBytes: number;
  /** Bytes of the stored tensors themselves: patches, registers (when kept), CLS (float32), twice with flipped copies, and each intermediate layer's patches and CLS. */
  tensorBytes: number;
  bytesPerImage: number;
  /** fileBytes / tensorBytes: above 1 is container overhead, below 1 compression. */
  compressionRatio: number;
  clsNorm?: NormSummary;
  /** Images in the cache's errors log (a cache directory only). */
  failed?: number;
}

export async function summarize(t: ReadTarget, targetName: string): Promise<InspectSummary> {
  const buckets: Record<string, number> = {};
  const norms = new NormStats();
  const fingerprints = new Set<string>();
  const devices = new Set<string>();
  let first: { meta: ShardMeta; format: ShardFormat; columns: ColumnName[] } | undefined;
  let rows = 0;
  let fileBytes = 0;
  let tensorBytes = 0;
  for (const shard of t.shards) {
    const info = await readShardInfo(shard.path);
    first ??= info;
    fingerprints.add(info.meta.fingerprint);
    if (info.meta.device !== undefined) devices.add(info.meta.device);
    fileBytes += (await fs.stat(shard.path)).size;
    const { hiddenSize, dtype, registersKept, numRegisters } = info.meta;
    const vector = hiddenSize * DTYPE_BYTES[dtype];
    const layers = shardLayers(info.meta).length;
    for await (const batch of iterateShardRows(shard.path, { columns: SUMMARY_COLUMNS })) {
      for (const row of batch) {
        rows++;
        buckets[bucketLabel(row)] = (buckets[bucketLabel(row)] ?? 0) + 1;
        const orientations = info.meta.flip ? 2 : 1;
        tensorBytes += orientations * ((row.grid_h * row.grid_w + (registersKept ? numRegisters : 0)) * vector + row.cls.length * 4) +
          layers * (row.grid_h * row.grid_w * vector + hiddenSize * 4);
        norms.add(l2norm(row.cls));
      }
    }
  }
  if (!first) throw new UserError(`${targetName} holds no shards yet: run dinofeat extract first`);
  const failed = t.kind === 'cache' && t.dir && t.state ? (await readErrors(t.dir, t.state.keyToEntry)).length : undefined;
  return {
    target: targetName,
    kind: t.kind,
    format: first.format,
    schemaVersion: SCHEMA_VERSION,
    columns: first.columns,
    meta: first.meta,
    fingerprints: [...fingerprints],
    devices: [...devices],
    shards: t.shards.length,
    rows,
    buckets,
    fileBytes,
    tensorBytes,
    bytesPerImage: rows ? fileBytes / rows : 0,
    compressionRatio: tensorBytes ? fileBytes / tensorBytes : 0,
    clsNorm: norms.summary(),
    ...(failed !== undefined ? { failed } : {}),
  };
}

const mib = (b: number) => (b >= 2 ** 20 ? `${(b / 2 ** 20).toFixed(1)} MiB` : `${(b / 1024).toFixed(1)} KiB`);

export function formatSummary(s: InspectSummary): string {
  const m = s.meta;
  const model = m.model;
  const pre = m.preprocessing as Record<string, unknown>;
  const histogram = Object.entries(s.buckets).sort((a, b) => b[1] - a[1]).map(([b, n]) => `${b}: ${n}`).join(', ');
  const lines: Array<[string, string]> = [
    ['format', `${s.format}, schema ${s.schemaVersion}, feature format ${m.featureFormat ?? 'unversioned'}, written by dinofeat ${m.dinofeatVersion}`],
    ['columns', s.columns.join(', ')],
    ['rows', `${s.rows} in ${plural(s.shards, 'shard')}${s.failed !== undefined ? `; ${s.failed} images in the errors log` : ''}`],
    ['tensors', `patches [grid_h*grid_w, ${m.hiddenSize}] ${m.dtype}; cls [${m.hiddenSize}] float32; registers ${m.registersKept ? `[${m.numRegisters}, ${m.hiddenSize}] ${m.dtype}` : 'not stored'}${m.flip ? '; and each of the horizontally flipped image (*_flip)' : ''}`],
    ['layers', shardLayers(m).length ? `blocks ${shardLayers(m).join(', ')} (layer<k>_cls, layer<k>_patches, through the final norm) and the last` : 'the last only'],
    ['model', `${model.family}, patch ${model.patchSize}, ${model.numRegisters} registers, hidden ${model.hiddenSize}, ${model.precision}${model.sourceRepo ? `, ${model.sourceRepo}` : ''}${model.weightsSha256 ? `, weights ${model.weightsSha256.slice(0, 12)}` : ''}`],
    ['preprocess', Object.entries(pre).map(([k, v]) => `${k} ${Array.isArray(v) ? abbreviate(v.map(String), 4, ' ') : String(v)}`).join('; ')],
    ['fingerprint', s.fingerprints.join(', ') + (s.fingerprints.length > 1 ? '  (MIXED: shards from different models or preprocessing; run dinofeat validate)' : '')],
    ['device', (s.devices.join(', ') || 'not recorded') + (s.devices.length > 1 ? '  (mixed: features agree to rounding, not bit for bit)' : '')],
    ['buckets', histogram || 'none'],
    ['size', `${mib(s.fileBytes)} on disk, ${mib(s.bytesPerImage)} per image; file / tensor bytes = ${s.compressionRatio.toFixed(3)}`],
    ['CLS norm', formatNorms(s.clsNorm)],
  ];
  return `${s.target} (${s.kind})\n${lines.map(([k, v]) => `  ${k.padEnd(12)}${v}`).join('\n')}\n`;
}
