/**
 * Parquet shards via hyparquet-writer (measured 2-4x faster than parquetjs-lite at 60% of its peak
 * memory; see docs/shard-writers.md). Uncompressed: zstd saved 8% on fp16 features at a
 * third of the speed, and snappy saved nothing. Statistics off: min/max of multi-MB blobs are
 * useless and bloat the footer.
 */
import { ByteWriter, ParquetWriter } from 'hyparquet-writer';
import type { ColumnSource } from 'hyparquet-writer';
import type { SchemaElement } from 'hyparquet';
import { columnKind, columnsOfMeta, encodedRowBytes, metaToKeyValue, type ColumnName, type EncodedRow, type IntColumn, type ShardMeta } from './schema.js';
import type { HashingOutput } from './hashing-output.js';
import type { ShardEncoder } from './encoder.js';

/** Parquet schema of a shard; `cls` columns are standard 3-level LISTs so every reader sees list<float>. */
export function parquetSchema(columns: readonly ColumnName[]): SchemaElement[] {
  const schema: SchemaElement[] = [{ name: 'root', num_children: columns.length }];
  for (const name of columns) schema.push(...columnElements(name));
  return schema;
}

function columnElements(name: ColumnName): SchemaElement[] {
  const required = 'REQUIRED' as const;
  switch (columnKind(name)) {
    case 'string':
      return [{ name, type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: required }];
    case 'vector':
      return [
        { name, repetition_type: required, converted_type: 'LIST', num_children: 1 },
        { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
        { name: 'element', type: 'FLOAT', repetition_type: required },
      ];
    case 'registers':
    case 'patches':
      return [{ name, type: 'BYTE_ARRAY', repetition_type: required }];
    case 'bool':
      return [{ name, type: 'BOOLEAN', repetition_type: required }];
    case 'int':
      return [{ name, type: 'INT32', repetition_type: required }];
  }
}

/** Holds one row group in memory and hands it to the output when hyparquet-writer flushes. */
class GroupBuffer extends ByteWriter {
  constructor(private readonly out: HashingOutput) {
    super(1 << 20);
  }

  async flush(): Promise<void> {
    const bytes = new Uint8Array(this.buffer, 0, this.index);
    await this.out.write(bytes);
    this.index = 0;
  }

  override finish(): Promise<void> {
    return this.flush();
  }
}

export class ParquetShardEncoder implements ShardEncoder {
  private readonly buffer: GroupBuffer;
  private readonly writer: ParquetWriter;
  private readonly columns: readonly ColumnName[];

  constructor(out: HashingOutput, meta: ShardMeta) {
    this.buffer = new GroupBuffer(out);
    this.columns = columnsOfMeta(meta);
    this.writer = new ParquetWriter({
      writer: this.buffer,
      schema: parquetSchema(this.columns),
      codec: 'UNCOMPRESSED',
      statistics: false,
      kvMetadata: Object.entries(metaToKeyValue(meta)).map(([key, value]) => ({ key, value })),
      createdBy: `dinofeat ${meta.dinofeatVersion} (hyparquet-writer)`,
    });
  }

  async start(): Promise<void> {
    // The constructor put the PAR1 magic in the buffer; write it so `bytes` counts it.
    await this.buffer.flush();
  }

  async writeGroup(rows: readonly EncodedRow[]): Promise<void> {
    // Size the buffer for the whole group up front: growing by doubling would overshoot by up to 2x.
    this.buffer.ensure(rows.reduce((n, r) => n + encodedRowBytes(r), 0) + (1 << 16));
    const columnData = this.columns.map((name) => columnSource(name, rows));
    await this.writer.write({ columnData, rowGroupSize: rows.length });
  }

  async finish(): Promise<void> {
    await this.writer.finish();
  }
}

function columnSource(name: ColumnName, rows: readonly EncodedRow[]): ColumnSource {
  switch (columnKind(name)) {
    case 'int':
      return { name, data: Int32Array.from(rows, (r) => r[name as IntColumn]) };
    case 'string':
      return { name, data: rows.map((r) => r[name]) };
    case 'vector':
      // hyparquet-writer encodes lists from plain arrays only.
      return { name, data: rows.map((r) => Array.from(r[name] as Float32Array)) };
    case 'bool':
      return { name, data: rows.map((r) => r.flip!) };
    case 'registers':
    case 'patches':
      // PLAIN: a dictionary over unique multi-MB blobs would only cost time.
      return { name, data: rows.map((r) => r[name]!), encoding: 'PLAIN' };
  }
}
