/**
 * Reads dinofeat Parquet shards with hyparquet, one row group at a time and only the requested
 * columns, so listing keys of a large shard never touches its patch bytes.
 */
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import type { AsyncBuffer, FileMetaData, ParquetRow } from 'hyparquet';
import { metaFromKeyValue, ShardFormatError, type ColumnName, type EncodedRow, type ShardMeta } from './schema.js';

export interface OpenParquet {
  meta: ShardMeta;
  rows: number;
  columns: ColumnName[];
  rowGroupRows: number[];
  file: AsyncBuffer;
  metadata: FileMetaData;
}

export async function openParquetShard(path: string): Promise<OpenParquet> {
  const file = await asyncBufferFromFile(path);
  let metadata: FileMetaData;
  try {
    metadata = await parquetMetadataAsync(file);
  } catch (e) {
    throw new ShardFormatError(`${path}: not a readable Parquet file (${(e as Error).message})`);
  }
  const kv = new Map((metadata.key_value_metadata ?? []).map((e) => [e.key, e.value ?? '']));
  return {
    meta: metaFromKeyValue(kv, path),
    rows: Number(metadata.num_rows),
    columns: topLevelNames(metadata.schema) as ColumnName[],
    rowGroupRows: metadata.row_groups.map((g) => Number(g.num_rows)),
    file,
    metadata,
  };
}

/** The schema is a flattened tree (root first); top-level columns are the root's direct children. */
function topLevelNames(schema: readonly { name: string; num_children?: number }[]): string[] {
  const names: string[] = [];
  for (let i = 1; i < schema.length; i = skipSubtree(schema, i)) names.push(schema[i]!.name);
  return names;
}

function skipSubtree(schema: readonly { num_children?: number }[], index: number): number {
  let next = index + 1;
  for (let c = 0; c < (schema[index]!.num_children ?? 0); c++) next = skipSubtree(schema, next);
  return next;
}

/** Yields rows [rowStart, rowEnd) a row group at a time with only `columns`. */
export async function* iterateParquetRows(
  shard: OpenParquet,
  columns: readonly ColumnName[],
  rowStart: number,
  rowEnd: number,
): AsyncGenerator<Partial<EncodedRow>[]> {
  let groupStart = 0;
  for (const groupRows of shard.rowGroupRows) {
    const start = Math.max(rowStart, groupStart);
    const end = Math.min(rowEnd, groupStart + groupRows);
    groupStart += groupRows;
    if (start >= end) continue;
    const rows = await parquetReadObjects({
      file: shard.file,
      metadata: shard.metadata,
      columns: [...columns],
      rowStart: start,
      rowEnd: end,
      // Tensor columns are unannotated BYTE_ARRAY: keep them bytes (UTF8-annotated columns stay strings).
      utf8: false,
      useOffsetIndex: true,
    });
    yield rows.map(toEncoded);
  }
}

function toEncoded(row: ParquetRow): Partial<EncodedRow> {
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(row)) {
    out[name] = name === 'cls' || name === 'cls_flip' ? Float32Array.from(value as number[]) : value;
  }
  return out as Partial<EncodedRow>;
}
