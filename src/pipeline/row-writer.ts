/**
 * The stage that commits rows: batches are written to shards in order, one at a time, while the
 * model runs the next. An image whose bytes changed since it was stored loses its old row here,
 * before its new row is written, so a key is never stored twice on purpose.
 */
import { removeKeys } from '../cache/remove-keys.js';
import type { CacheState } from '../cache/manifest.js';
import type { ShardSink } from '../cache/shard-sink.js';
import type { FeatureRow } from '../shard/schema.js';
import type { PendingImage } from './scheduler.js';
import type { RunTally } from './tally.js';

export interface RowWriterOptions {
  state: CacheState;
  partId: string;
  sink: ShardSink;
  tally: RunTally;
}

export class RowWriter {
  private chain: Promise<void> = Promise.resolve();
  /** Keys whose bytes changed since they were stored. */
  private readonly stale = new Set<string>();
  /** Of those, the ones whose old row is still in the cache. */
  private readonly pendingRemoval = new Set<string>();

  constructor(private readonly o: RowWriterOptions) {}

  /** The stored row of `key` was made from other bytes: it goes before the new row is written. */
  markStale(key: string): void {
    this.stale.add(key);
    this.pendingRemoval.add(key);
  }

  /** Queues a batch's rows behind the ones before it; resolves once they are committed. */
  write(batch: readonly PendingImage[], rows: FeatureRow[]): Promise<void> {
    this.chain = this.chain.then(() => this.commit(batch, rows));
    return this.chain;
  }

  /**
   * After the last batch: changed images that then failed to decode lose their old row too, so
   * the cache reflects the files.
   */
  async finish(): Promise<void> {
    await this.chain;
    if (this.pendingRemoval.size) await this.removeStale();
  }

  private async commit(batch: readonly PendingImage[], rows: FeatureRow[]): Promise<void> {
    // Rewriting a shard is costly, so every stale key known by now goes in one rewrite (those not
    // yet re-extracted are simply missing until their batch is written; after a crash they are
    // extracted again).
    if (batch.some((p) => this.pendingRemoval.has(p.key))) await this.removeStale();
    await this.o.sink.write(rows, new Map(batch.map((p) => [p.key, p.origin])));
    this.o.tally.written(batch, batch.filter((p) => this.stale.has(p.key)).length);
  }

  private async removeStale(): Promise<void> {
    // Keys marked stale while the rewrite runs are not in it: they stay pending.
    const keys = [...this.pendingRemoval];
    await removeKeys(this.o.state, this.o.partId, keys);
    for (const key of keys) this.pendingRemoval.delete(key);
  }
}
