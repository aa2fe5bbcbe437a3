/**
 * Arrow IPC *stream* shards via apache-arrow: the stream format is what Hugging Face datasets'
 * Dataset.from_file reads (the file format is not), and pyarrow reads and memory-maps it.
 * Uncompressed on purpose: arrow-js 21.2 writes compressed buffers that pyarrow rejects.
 */
import {
  AsyncByteQueue, Binary, Bool, Field, Float32, Int32, List, RecordBatch, RecordBatchStreamWriter, Schema, Struct, Utf8,
  makeData, vectorFromArray, type Data, type DataType,
} from 'apache-arrow';
import { columnKind, columnsOfMeta, metaToKeyValue, type ColumnName, type EncodedRow, type IntColumn, type ShardMeta } from './schema.js';
import type { HashingOutput } from './hashing-output.js';
import type { ShardEncoder } from './encoder.js';

function columnType(name: ColumnName): DataType {
  switch (columnKind(name)) {
    case 'string':
      return new Utf8();
    case 'vector':
      return new List(new Field('item', new Float32(), false));
    case 'registers':
    case 'patches':
      return new Binary();
    case 'bool':
      return new Bool();
    case 'int':
      return new Int32();
  }
}

export function arrowSchema(meta: ShardMeta): Schema {
  const fields = columnsOfMeta(meta).map((name) => new Field(name, columnType(name), false));
  return new Schema(fields, new Map(Object.entries(metaToKeyValue(meta))));
}

/**
 * Catches the writer's output synchronously. arrow-js pushes every chunk into its sink during
 * write(); taking them from here after each batch keeps at most one batch in memory, where
 * reading the writer as a stream lets chunks pile up until the consumer is scheduled.
 */
class ChunkCollector extends AsyncByteQueue {
  private chunks: Uint8Array[] = [];

  override write(value: Uint8Array): void {
    this.chunks.push(value);
  }

  take(): Uint8Array[] {
    const taken = this.chunks;
    this.chunks = [];
    return taken;
  }
}

export class ArrowShardEncoder implements ShardEncoder {
  private readonly schema: Schema;
  private readonly writer = new RecordBatchStreamWriter();
  private readonly sink = new ChunkCollector();

  constructor(
    private readonly out: HashingOutput,
    meta: ShardMeta,
  ) {
    this.schema = arrowSchema(meta);
    this.writer.reset(this.sink, this.schema);
  }

  async start(): Promise<void> {
    await this.drain();
  }

  async writeGroup(rows: readonly EncodedRow[]): Promise<void> {
    const children = this.schema.fields.map((f) => columnData(f.name as ColumnName, rows));
    const struct = makeData({ type: new Struct(this.schema.fields), length: rows.length, nullCount: 0, children });
    this.writer.write(new RecordBatch(this.schema, struct));
    await this.drain();
  }

  async finish(): Promise<void> {
    this.writer.finish();
    await this.drain();
  }

  private async drain(): Promise<void> {
    for (const chunk of this.sink.take()) await this.out.write(chunk);
  }
}

function columnData(name: ColumnName, rows: readonly EncodedRow[]): Data {
  const values = rows.map((r) => r[name]!);
  switch (columnKind(name)) {
    case 'int':
      return makeData({ type: new Int32(), length: rows.length, nullCount: 0, data: Int32Array.from(rows, (r) => r[name as IntColumn]) });
    case 'string':
      return vectorFromArray(values as string[], new Utf8()).data[0]!;
    case 'vector':
      return listData(values as Float32Array[]);
    case 'bool':
      return vectorFromArray(values as boolean[], new Bool()).data[0]!;
    case 'registers':
    case 'patches':
      return binaryData(values as Uint8Array[]);
  }
}

function offsetsOf(lengths: readonly number[]): Int32Array {
  const offsets = new Int32Array(lengths.length + 1);
  lengths.forEach((n, i) => (offsets[i + 1] = offsets[i]! + n));
  return offsets;
}

function binaryData(values: readonly Uint8Array[]): Data {
  const valueOffsets = offsetsOf(values.map((v) => v.byteLength));
  const data = new Uint8Array(valueOffsets[values.length]!);
  values.forEach((v, i) => data.set(v, valueOffsets[i]));
  return makeData({ type: new Binary(), length: values.length, nullCount: 0, valueOffsets, data });
}

function listData(values: readonly Float32Array[]): Data {
  const valueOffsets = offsetsOf(values.map((v) => v.length));
  const flat = new Float32Array(valueOffsets[values.length]!);
  values.forEach((v, i) => flat.set(v, valueOffsets[i]));
  const type = new List(new Field('item', new Float32(), false));
  const child = makeData({ type: new Float32(), length: flat.length, nullCount: 0, data: flat });
  return makeData({ type, length: values.length, nullCount: 0, valueOffsets, child });
}
