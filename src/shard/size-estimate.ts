/**
 * What a cache will weigh before anything is extracted (extract --dry-run): each row's bytes are
 * summed over the shard's own column list (shardColumns), column by column from its kind and the
 * row's shapes, so a new column is counted as soon as the schema lists it; shards and row groups add
 * their framing. Both formats store tensors uncompressed, so the estimate is close to exact: the
 * constants below are the framing measured on shards this dinofeat wrote (test/dry-run.test.ts
 * compares the estimate with real caches).
 */
import { DTYPE_BYTES, columnKind, columnsOfMeta, metaToKeyValue, type ColumnName, type ShardFormat, type ShardMeta } from './schema.js';
import { DEFAULT_ROW_GROUP } from './shard-writer.js';

/** Rows of one patch grid (one bucket, after --pool). */
export interface GridRows {
  gridH: number;
  gridW: number;
  rows: number;
}

export interface PlannedRows {
  grids: readonly GridRows[];
  /** Sum over the rows of their keys' UTF-8 length. */
  keyBytes: number;
}

export interface SizeEstimate {
  bytes: number;
  shards: number;
  /** Bytes of one row of each grid, '<grid_h>x<grid_w>' → bytes, framing left out. */
  rowBytes: Record<string, number>;
}

/**
 * Framing and small-value costs per format, measured on shards this dinofeat wrote (140 rows,
 * 14 to 19 columns, 1 to 3 row groups). Parquet: 'PAR1' at both ends, the footer's fixed part and
 * its key/value entries; per column chunk a page header and its footer entry; a list's levels, run-
 * length coded, per row; int32 columns dictionary-coded by hyparquet-writer (1 to 4.5 bytes a value,
 * 2 on average). Arrow IPC stream: the schema message (fields, key/values); per record batch its
 * header, an entry per buffer and up to 7 bytes of padding; offsets of 4 bytes per value.
 */
interface Framing {
  shard: number;
  perKeyValue: number;
  perColumnPerShard: number;
  perColumnPerGroup: number;
  /** Bytes per row of a list<float32> besides its values, of a binary or string besides its bytes, of an int32. */
  list: number;
  binary: number;
  int: number;
}

const FRAMING: Readonly<Record<ShardFormat, Framing>> = {
  parquet: { shard: 12 + 350, perKeyValue: 5, perColumnPerShard: 0, perColumnPerGroup: 65, list: 4, binary: 4, int: 2 },
  arrow: { shard: 100, perKeyValue: 8, perColumnPerShard: 64, perColumnPerGroup: 50, list: 4, binary: 4, int: 4 },
};

/** Bytes one value of `column` takes in a row of `grid` (keys counted apart). */
function valueBytes(column: ColumnName, meta: ShardMeta, grid: Pick<GridRows, 'gridH' | 'gridW'>, f: Framing): number {
  const tensor = meta.hiddenSize * DTYPE_BYTES[meta.dtype];
  switch (columnKind(column)) {
    case 'string':
      return column === 'sha256' ? 64 + f.binary : f.binary; // a key's own bytes are summed apart
    case 'int':
      return f.int;
    case 'bool':
      return 1 / 8;
    case 'vector':
      return meta.hiddenSize * 4 + f.list;
    case 'registers':
      return meta.numRegisters * tensor + f.binary;
    case 'patches':
      return grid.gridH * grid.gridW * tensor + f.binary;
  }
}

export function estimateCacheBytes(meta: ShardMeta, format: ShardFormat, planned: PlannedRows, maxShardBytes: number): SizeEstimate {
  const columns = columnsOfMeta(meta);
  const f = FRAMING[format];
  const rowBytes: Record<string, number> = {};
  let data = planned.keyBytes;
  let rows = 0;
  for (const g of planned.grids) {
    const one = columns.reduce((n, c) => n + valueBytes(c, meta, g, f), 0);
    rowBytes[`${g.gridH}x${g.gridW}`] = Math.round(one);
    data += one * g.rows;
    rows += g.rows;
  }
  if (rows === 0) return { bytes: 0, shards: 0, rowBytes };
  const shards = Math.max(1, Math.ceil(data / maxShardBytes));
  // Rows of every grid share row groups, cut by count or by bytes (shard-writer.ts).
  const perGroup = Math.max(1, Math.min(DEFAULT_ROW_GROUP.rowGroupRows, Math.floor(DEFAULT_ROW_GROUP.rowGroupBytes / (data / rows))));
  const groups = Math.ceil(rows / perGroup) + shards - 1;
  const kv = Object.entries(metaToKeyValue(meta));
  const kvBytes = kv.reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v) + f.perKeyValue, 0);
  const framing = shards * (f.shard + kvBytes + columns.length * f.perColumnPerShard) + groups * columns.length * f.perColumnPerGroup;
  return { bytes: Math.round(data + framing), shards, rowBytes };
}
