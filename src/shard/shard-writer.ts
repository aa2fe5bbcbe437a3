/**
 * One interface for writing a shard in any format: open a temp path, append rows, close to get
 * {rows, bytes, sha256}. Rows are encoded on arrival (float16 halves what is held) and written
 * one row group at a time, so memory is bounded by the row group budget, never by the shard.
 */
import { faultPoint } from '../core/fault-point.js';
import { encodedRowBytes, encodeRow, rowShapeOf, type EncodedRow, type FeatureRow, type ShardFormat, type ShardMeta } from './schema.js';
import type { ShardEncoder } from './encoder.js';
import { HashingOutput, type WrittenFile } from './hashing-output.js';
import { ParquetShardEncoder } from './parquet-shard.js';
import { ArrowShardEncoder } from './arrow-shard.js';

export interface ShardResult extends WrittenFile {
  rows: number;
}

export interface ShardWriter {
  readonly format: ShardFormat;
  open(tmpPath: string, meta: ShardMeta): Promise<void>;
  append(rows: readonly FeatureRow[]): Promise<void>;
  /** Appends rows already in stored form (copying rows between shards keeps their bytes exactly). */
  appendEncoded(rows: readonly EncodedRow[]): Promise<void>;
  /** Rows appended so far. */
  readonly rows: number;
  /** Bytes written plus bytes waiting in the current row group: what the shard will weigh. */
  readonly bytes: number;
  /** Writes what is buffered and the footer, fsyncs and closes the temp file. */
  close(): Promise<ShardResult>;
  /** Closes and deletes the temp file. */
  abort(): Promise<void>;
}

export interface RowGroupLimits {
  /**
   * A row group is written once its rows reach this many bytes (default 16 MiB)... A group is held
   * twice while it is encoded (its rows and its Parquet bytes): at 64 MiB that was ~75 MiB more peak
   * for 1024² ViT-S rows (3 MiB each) than at 16 MiB, which still holds 5 such rows or 64 small ones.
   */
  rowGroupBytes?: number;
  /** ...or this many rows (default 64), whichever comes first. */
  rowGroupRows?: number;
}

/** Row groups when no limits are given: memory stays bounded, and a reader can skip most of a shard. */
export const DEFAULT_ROW_GROUP: Required<RowGroupLimits> = { rowGroupBytes: 16 * 2 ** 20, rowGroupRows: 64 };

export type ShardEncoderFactory = (out: HashingOutput, meta: ShardMeta) => ShardEncoder;

const ENCODERS: Readonly<Record<ShardFormat, ShardEncoderFactory>> = {
  parquet: (out, meta) => new ParquetShardEncoder(out, meta),
  arrow: (out, meta) => new ArrowShardEncoder(out, meta),
};

export function createShardWriter(format: ShardFormat, limits: RowGroupLimits = {}): ShardWriter {
  return new GroupedShardWriter(format, ENCODERS[format], limits);
}

class GroupedShardWriter implements ShardWriter {
  private out?: HashingOutput;
  private encoder?: ShardEncoder;
  private meta?: ShardMeta;
  private pending: EncodedRow[] = [];
  private pendingBytes = 0;
  private appended = 0;
  private readonly maxGroupBytes: number;
  private readonly maxGroupRows: number;

  constructor(
    readonly format: ShardFormat,
    private readonly makeEncoder: ShardEncoderFactory,
    limits: RowGroupLimits,
  ) {
    this.maxGroupBytes = limits.rowGroupBytes ?? DEFAULT_ROW_GROUP.rowGroupBytes;
    this.maxGroupRows = limits.rowGroupRows ?? DEFAULT_ROW_GROUP.rowGroupRows;
  }

  get rows(): number {
    return this.appended;
  }

  get bytes(): number {
    return (this.out?.bytes ?? 0) + this.pendingBytes;
  }

  async open(tmpPath: string, meta: ShardMeta): Promise<void> {
    if (this.out) throw new Error('shard writer is already open');
    this.out = await HashingOutput.create(tmpPath);
    this.meta = meta;
    this.encoder = this.makeEncoder(this.out, meta);
    await this.encoder.start();
  }

  async append(rows: readonly FeatureRow[]): Promise<void> {
    const shape = rowShapeOf(this.openMeta());
    await this.appendEncoded(rows.map((row) => encodeRow(row, shape)));
  }

  async appendEncoded(rows: readonly EncodedRow[]): Promise<void> {
    const meta = this.openMeta();
    for (const row of rows) {
      if ((row.registers !== undefined) !== meta.registersKept) {
        throw new Error(`row ${row.key}: registers ${row.registers ? 'present' : 'missing'} but the shard ${meta.registersKept ? 'keeps' : 'drops'} them`);
      }
      if ((row.patches_flip !== undefined) !== (meta.flip === true)) {
        throw new Error(`row ${row.key}: flipped copy ${row.patches_flip ? 'present' : 'missing'} but the shard ${meta.flip ? 'keeps' : 'drops'} flipped copies`);
      }
      this.pending.push(row);
      this.pendingBytes += encodedRowBytes(row);
      this.appended++;
      if (this.pendingBytes >= this.maxGroupBytes || this.pending.length >= this.maxGroupRows) {
        await this.flushGroup();
      }
    }
  }

  async close(): Promise<ShardResult> {
    this.openMeta();
    try {
      await this.flushGroup();
      await this.encoder!.finish();
      const written = await this.out!.commit();
      this.out = undefined;
      return { rows: this.appended, ...written };
    } catch (e) {
      // A shard that cannot be finished (disk full...) must not stay behind half-written.
      await this.abort();
      throw e;
    }
  }

  async abort(): Promise<void> {
    this.pending = [];
    this.pendingBytes = 0;
    await this.out?.discard();
    this.out = undefined;
  }

  private openMeta(): ShardMeta {
    if (!this.out || !this.meta) throw new Error('shard writer is not open');
    return this.meta;
  }

  private async flushGroup(): Promise<void> {
    if (this.pending.length === 0) return;
    const group = this.pending;
    this.pending = [];
    await this.encoder!.writeGroup(group);
    this.pendingBytes = 0;
    faultPoint('shard-group-written');
  }
}
