/**
 * Where the pipeline's rows go: size-bounded shards of one part, each written as <name>.tmp,
 * fsynced, renamed to its final name and then journaled. A row is in the cache exactly when the
 * journal line of its shard is on disk; a shard cut short by a crash is never counted.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { renameDurable, rethrowIoError } from '../core/durable-fs.js';
import { faultPoint } from '../core/fault-point.js';
import type { Origin } from '../source/types.js';
import type { KeyRecord, ShardRecord } from './journal.js';
import { TMP_SUFFIX, checkPartId } from './layout.js';
import type { CacheState } from './manifest.js';
import { bucketLabel, encodedRowBytes, encodeRow, rowShapeOf, type EncodedRow, type FeatureRow, type ShardFormat, type ShardMeta } from '../shard/schema.js';
import type { EncodeShape } from '../shard/row-encoder.js';
import { createShardWriter, type RowGroupLimits, type ShardWriter } from '../shard/shard-writer.js';

export interface ShardSinkOptions {
  state: CacheState;
  partId: string;
  format: ShardFormat;
  meta: ShardMeta;
  /** Start a new shard before one would exceed this (default 512 MiB). */
  maxShardBytes?: number;
  /** And/or after this many rows (default: no limit). */
  maxShardRows?: number;
  rowGroup?: RowGroupLimits;
  /**
   * Encodes rows to their stored form (default: encodeRow here); extract passes a RowEncoderThread's,
   * which takes the rows' tensors off this thread.
   */
  encode?: (rows: readonly FeatureRow[], shape: EncodeShape) => Promise<EncodedRow[]>;
}

interface OpenShard {
  file: string;
  writer: ShardWriter;
  keys: KeyRecord[];
  keySet: Set<string>;
  buckets: Record<string, number>;
}

export const DEFAULT_MAX_SHARD_BYTES = 512 * 2 ** 20;

export class ShardSink {
  private current?: OpenShard;
  private readonly done: ShardRecord[] = [];
  private readonly maxBytes: number;
  private readonly maxRows: number;

  constructor(private readonly options: ShardSinkOptions) {
    checkPartId(options.partId);
    this.maxBytes = options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
    this.maxRows = options.maxShardRows ?? Infinity;
  }

  /** Shards committed by this sink so far. */
  get committed(): readonly ShardRecord[] {
    return this.done;
  }

  /**
   * Appends rows. A key already in the cache, or a row whose shape does not fit, is a caller bug
   * and rejected before anything is written (remove stale rows first). When writing fails (disk
   * full...), the shard in progress is dropped, so nothing half-written stays, and the error rethrown.
   */
  async write(rows: readonly FeatureRow[], origins?: ReadonlyMap<string, Origin>): Promise<void> {
    const batchKeys = new Set<string>();
    for (const row of rows) {
      if (this.options.state.keyToEntry.has(row.key) || this.current?.keySet.has(row.key) || batchKeys.has(row.key)) {
        throw new Error(`key ${row.key} is already in the cache; remove its old row before writing a new one`);
      }
      batchKeys.add(row.key);
    }
    const shape = rowShapeOf(this.options.meta);
    const encoded = this.options.encode ? await this.options.encode(rows, shape) : rows.map((row) => encodeRow(row, shape));
    try {
      for (const row of encoded) await this.append(row, origins?.get(row.key));
    } catch (e) {
      await this.abort();
      throw e;
    }
  }

  private async append(row: EncodedRow, origin: Origin | undefined): Promise<void> {
    const open = this.current;
    if (open && (open.writer.rows >= this.maxRows || open.writer.bytes + encodedRowBytes(row) > this.maxBytes)) {
      await this.commitCurrent();
    }
    const shard = this.current ?? (await this.openShard());
    await shard.writer.appendEncoded([row]);
    shard.keys.push(origin ? [row.key, row.sha256, origin] : [row.key, row.sha256]);
    shard.keySet.add(row.key);
    const bucket = bucketLabel(row);
    shard.buckets[bucket] = (shard.buckets[bucket] ?? 0) + 1;
  }

  /** Commits the shard in progress (e.g. at the end of a run, or on SIGINT). */
  async close(): Promise<readonly ShardRecord[]> {
    await this.commitCurrent();
    return this.done;
  }

  /** Drops the shard in progress; its rows were never counted and will be extracted again. */
  async abort(): Promise<void> {
    await this.current?.writer.abort();
    this.current = undefined;
  }

  private async openShard(): Promise<OpenShard> {
    const { state, partId, format, meta } = this.options;
    const file = state.nextShardFile(partId, format);
    const writer = createShardWriter(format, this.options.rowGroup);
    const tmp = path.join(state.dir, file + TMP_SUFFIX);
    await fs.mkdir(path.dirname(tmp), { recursive: true }).catch((e: unknown) => rethrowIoError(e, path.dirname(tmp)));
    await writer.open(tmp, meta);
    this.current = { file, writer, keys: [], keySet: new Set(), buckets: {} };
    return this.current;
  }

  private async commitCurrent(): Promise<void> {
    const shard = this.current;
    if (!shard) return;
    this.current = undefined;
    if (shard.writer.rows === 0) {
      await shard.writer.abort();
      return;
    }
    const { state, partId, format } = this.options;
    const written = await shard.writer.close();
    await renameDurable(path.join(state.dir, shard.file + TMP_SUFFIX), path.join(state.dir, shard.file));
    faultPoint('shard-renamed');
    const record: ShardRecord = {
      file: shard.file, format, rows: written.rows, bytes: written.bytes, sha256: written.sha256,
      keys: shard.keys, buckets: shard.buckets, time: new Date().toISOString(),
    };
    await state.commit(partId, record);
    this.done.push(record);
  }
}
