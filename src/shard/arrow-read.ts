/**
 * Reads dinofeat Arrow IPC stream shards with apache-arrow, batch by batch. The stream format
 * has no index, so a key listing still streams the file; it copies only the requested columns.
 */
import fs from 'node:fs';
import { RecordBatchReader, type RecordBatch, type Vector } from 'apache-arrow';
import { metaFromKeyValue, ShardFormatError, type ColumnName, type EncodedRow, type ShardMeta } from './schema.js';

export interface ArrowShardInfo {
  meta: ShardMeta;
  columns: ColumnName[];
}

async function openReader(path: string) {
  try {
    const reader = await RecordBatchReader.from(fs.createReadStream(path, { highWaterMark: 1 << 20 }));
    await reader.open();
    return reader;
  } catch (e) {
    throw new ShardFormatError(`${path}: not a readable Arrow IPC stream (${(e as Error).message})`);
  }
}

export async function readArrowInfo(path: string): Promise<ArrowShardInfo> {
  const reader = await openReader(path);
  try {
    return {
      meta: metaFromKeyValue(reader.schema.metadata, path),
      columns: reader.schema.fields.map((f) => f.name as ColumnName),
    };
  } finally {
    await reader.cancel();
  }
}

/** The stream has no row count in a header: counting means walking the batches. */
export async function countArrowRows(path: string): Promise<number> {
  let rows = 0;
  for await (const batch of await openReader(path)) rows += batch.numRows;
  return rows;
}

export async function* iterateArrowRows(
  path: string,
  columns: readonly ColumnName[],
  rowStart: number,
  rowEnd: number,
): AsyncGenerator<Partial<EncodedRow>[]> {
  const reader = await openReader(path);
  let batchStart = 0;
  try {
    for await (const batch of reader) {
      const start = Math.max(rowStart, batchStart) - batchStart;
      const end = Math.min(rowEnd, batchStart + batch.numRows) - batchStart;
      batchStart += batch.numRows;
      if (start < end) yield rowsOf(batch, columns, start, end);
      if (batchStart >= rowEnd) break;
    }
  } finally {
    await reader.cancel();
  }
}

function rowsOf(batch: RecordBatch, columns: readonly ColumnName[], start: number, end: number): Partial<EncodedRow>[] {
  const vectors = columns.map((name) => [name, batch.getChild(name)] as const);
  const rows: Partial<EncodedRow>[] = [];
  for (let i = start; i < end; i++) {
    const row: Record<string, unknown> = {};
    for (const [name, vector] of vectors) row[name] = cellValue(name, vector, i);
    rows.push(row as Partial<EncodedRow>);
  }
  return rows;
}

function cellValue(name: ColumnName, vector: Vector | null, i: number): unknown {
  if (!vector) throw new ShardFormatError(`Arrow shard has no column ${name}`);
  const value: unknown = vector.get(i);
  // Lists come back as views into the batch; copy so a kept row does not pin the whole batch.
  if (name === 'cls' || name === 'cls_flip') return Float32Array.from((value as Vector).toArray() as Float32Array);
  return value;
}
