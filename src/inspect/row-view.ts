/**
 * inspect --row N / --key K: finds one row (by its index across the target's shards, or by key
 * through the journals, else by scanning the key column) and describes it.
 */
import { UserError } from '../core/errors.js';
import type { ReadTarget, ShardTarget } from '../cache/open-read-only.js';
import { decodeRow, type FeatureRow, type ShardMeta } from '../shard/schema.js';
import { iterateShardRows, readShardInfo, readShardMeta, readShardRows } from '../shard/shard-reader.js';
import { l2norm } from '../core/norm-stats.js';

export interface RowLocation {
  shard: ShardTarget;
  /** Row index within the shard. */
  index: number;
}

export type RowSelector = { row: number } | { key: string };

async function rowsIn(shard: ShardTarget): Promise<number> {
  return shard.record?.rows ?? (await readShardInfo(shard.path)).rows;
}

export async function locateRow(t: ReadTarget, sel: RowSelector, targetName: string): Promise<RowLocation> {
  if ('row' in sel) {
    let start = 0;
    for (const shard of t.shards) {
      const n = await rowsIn(shard);
      if (sel.row < start + n) return { shard, index: sel.row - start };
      start += n;
    }
    throw new UserError(`--row ${sel.row}: ${targetName} has ${start} rows (0 to ${start - 1})`);
  }
  for (const shard of t.shards) {
    if (shard.record) {
      const index = shard.record.keys.findIndex(([k]) => k === sel.key);
      if (index >= 0) return { shard, index };
      continue;
    }
    let index = 0;
    for await (const batch of iterateShardRows(shard.path, { columns: ['key'] })) {
      for (const r of batch) {
        if (r.key === sel.key) return { shard, index };
        index++;
      }
    }
  }
  throw new UserError(`--key ${sel.key}: no such key in ${targetName} (keys are paths relative to the folder extract read)`);
}

export async function readRowAt(loc: RowLocation): Promise<{ row: FeatureRow; meta: ShardMeta }> {
  const meta = await readShardMeta(loc.shard.path);
  const [encoded] = await readShardRows(loc.shard.path, { rowStart: loc.index, rowEnd: loc.index + 1 });
  if (!encoded) throw new Error(`${loc.shard.name} has no row ${loc.index}`);
  return { row: decodeRow(encoded, meta.dtype), meta };
}

export interface RowView {
  shard: string;
  index: number;
  key: string;
  sha256: string;
  /** Upright original size. */
  size: { width: number; height: number };
  bucket: { width: number; height: number };
  grid: { h: number; w: number };
  crop: { x: number; y: number; w: number; h: number };
  cls: { norm: number; first: number[] };
  patches: { shape: [number, number]; dtype: string; meanNorm: number };
  registers?: { shape: [number, number]; dtype: string };
  /** Each stored intermediate layer (block k, 1-based): its CLS norm and patches' mean norm. */
  layers?: Array<{ layer: number; clsNorm: number; patchMeanNorm: number }>;
}

/** How many CLS values the view shows. */
const FIRST_VALUES = 8;

export function describeRow(loc: RowLocation, row: FeatureRow, meta: ShardMeta): RowView {
  const d = meta.hiddenSize;
  const n = row.gridH * row.gridW;
  const meanNorm = (patches: Float32Array) => {
    let normSum = 0;
    for (let t = 0; t < n; t++) normSum += l2norm(patches.subarray(t * d, (t + 1) * d));
    return n ? normSum / n : 0;
  };
  return {
    shard: loc.shard.name,
    index: loc.index,
    key: row.key,
    sha256: row.sha256,
    size: { width: row.width, height: row.height },
    bucket: { width: row.bucketWidth, height: row.bucketHeight },
    grid: { h: row.gridH, w: row.gridW },
    crop: { x: row.cropX, y: row.cropY, w: row.cropW, h: row.cropH },
    cls: { norm: l2norm(row.cls), first: Array.from(row.cls.subarray(0, FIRST_VALUES)) },
    patches: { shape: [n, d], dtype: meta.dtype, meanNorm: meanNorm(row.patches) },
    ...(row.registers ? { registers: { shape: [row.registers.length / d, d] as [number, number], dtype: meta.dtype } } : {}),
    ...(row.layers?.length ? { layers: row.layers.map((l) => ({ layer: l.layer, clsNorm: l2norm(l.cls), patchMeanNorm: meanNorm(l.patches) })) } : {}),
  };
}

export function formatRow(v: RowView): string {
  const lines: Array<[string, string]> = [
    ['key', v.key],
    ['sha256', v.sha256],
    ['image', `${v.size.width}x${v.size.height} (upright)`],
    ['crop box', `${v.crop.w}x${v.crop.h} at (${v.crop.x}, ${v.crop.y})`],
    ['bucket', `${v.bucket.width}x${v.bucket.height} (model input)`],
    ['grid', `${v.grid.h} x ${v.grid.w} (h x w) = ${v.grid.h * v.grid.w} patches`],
    ['cls', `norm ${v.cls.norm.toPrecision(4)}; [${v.cls.first.map((x) => x.toFixed(4)).join(', ')}${v.patches.shape[1] > v.cls.first.length ? ', ...' : ''}]`],
    ['patches', `[${v.patches.shape.join(', ')}] ${v.patches.dtype}, mean norm ${v.patches.meanNorm.toPrecision(4)}`],
    ['registers', v.registers ? `[${v.registers.shape.join(', ')}] ${v.registers.dtype}` : 'not stored'],
    ...(v.layers ?? []).map((l): [string, string] => [`layer ${l.layer}`, `cls norm ${l.clsNorm.toPrecision(4)}; patches mean norm ${l.patchMeanNorm.toPrecision(4)}`]),
  ];
  return `${v.shard} row ${v.index}\n${lines.map(([k, x]) => `  ${k.padEnd(10)}${x}`).join('\n')}\n`;
}
