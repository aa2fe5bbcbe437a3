/**
 * Reads shards back, in either format (told apart by their magic bytes, not their names): the
 * metadata, and rows with only the requested columns, by row range or by key. Used by resume
 * (rewriting shards), validate and inspect.
 */
import fs from 'node:fs/promises';
import { countArrowRows, iterateArrowRows, readArrowInfo } from './arrow-read.js';
import { iterateParquetRows, openParquetShard } from './parquet-read.js';
import { decodeRow, ShardFormatError, type ColumnName, type EncodedRow, type FeatureRow, type ShardFormat, type ShardMeta } from './schema.js';

export interface ShardInfo {
  path: string;
  format: ShardFormat;
  meta: ShardMeta;
  rows: number;
  columns: ColumnName[];
}

export interface RowRange {
  /** First row (default 0). */
  rowStart?: number;
  /** One past the last row (default: all). */
  rowEnd?: number;
}

export async function detectShardFormat(path: string): Promise<ShardFormat> {
  const head = new Uint8Array(4);
  const handle = await fs.open(path, 'r');
  try {
    await handle.read(head, 0, 4, 0);
  } finally {
    await handle.close();
  }
  if (String.fromCharCode(...head) === 'PAR1') return 'parquet';
  // An IPC stream starts with the 0xFFFFFFFF continuation marker of its schema message.
  if (head.every((b) => b === 0xff)) return 'arrow';
  throw new ShardFormatError(`${path} is neither a Parquet file nor an Arrow IPC stream`);
}

/** Just the metadata: cheap for both formats (the footer, or the stream's first message). */
export async function readShardMeta(path: string): Promise<ShardMeta> {
  const format = await detectShardFormat(path);
  return format === 'parquet' ? (await openParquetShard(path)).meta : (await readArrowInfo(path)).meta;
}

/** Metadata and row count; for Arrow the count walks the stream, for Parquet it is in the footer. */
export async function readShardInfo(path: string): Promise<ShardInfo> {
  const format = await detectShardFormat(path);
  if (format === 'parquet') {
    const { meta, rows, columns } = await openParquetShard(path);
    return { path, format, meta, rows, columns };
  }
  const { meta, columns } = await readArrowInfo(path);
  return { path, format, meta, rows: await countArrowRows(path), columns };
}

/**
 * Yields stored rows in batches (a row group or record batch at a time) holding only `columns`
 * (default: all the shard has). Tensor columns stay encoded bytes; see decodeRow.
 */
export async function* iterateShardRows<C extends ColumnName = ColumnName>(
  path: string,
  options: RowRange & { columns?: readonly C[] } = {},
): AsyncGenerator<Pick<EncodedRow, C>[]> {
  const rowStart = options.rowStart ?? 0;
  const rowEnd = options.rowEnd ?? Infinity;
  const format = await detectShardFormat(path);
  if (format === 'parquet') {
    const shard = await openParquetShard(path);
    const columns = selectColumns(shard.columns, options.columns);
    yield* iterateParquetRows(shard, columns, rowStart, rowEnd) as AsyncGenerator<Pick<EncodedRow, C>[]>;
  } else {
    const { columns: present } = await readArrowInfo(path);
    const columns = selectColumns(present, options.columns);
    yield* iterateArrowRows(path, columns, rowStart, rowEnd) as AsyncGenerator<Pick<EncodedRow, C>[]>;
  }
}

/** Requested columns the shard has (a shard without registers simply yields rows without them). */
function selectColumns(present: readonly ColumnName[], requested?: readonly ColumnName[]): ColumnName[] {
  return requested ? requested.filter((c) => present.includes(c)) : [...present];
}

export async function readShardRows<C extends ColumnName = ColumnName>(
  path: string,
  options: RowRange & { columns?: readonly C[] } = {},
): Promise<Pick<EncodedRow, C>[]> {
  const rows: Pick<EncodedRow, C>[] = [];
  for await (const batch of iterateShardRows(path, options)) rows.push(...batch);
  return rows;
}

/** Fully decoded rows (tensors as Float32Array) for a row range or a set of keys. */
export async function readFeatureRows(path: string, select: RowRange | { keys: Iterable<string> } = {}): Promise<FeatureRow[]> {
  const { dtype } = await readShardMeta(path);
  const decode = (rows: EncodedRow[]) => rows.map((r) => decodeRow(r, dtype));
  if (!('keys' in select)) return decode(await readShardRows(path, select));
  const wanted = new Set(select.keys);
  const keys = await readShardRows(path, { columns: ['key'] });
  const out: FeatureRow[] = [];
  for (let i = 0; i < keys.length; i++) {
    if (wanted.has(keys[i]!.key)) out.push(...decode(await readShardRows(path, { rowStart: i, rowEnd: i + 1 })));
  }
  return out;
}
