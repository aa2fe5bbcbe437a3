/**
 * Groups prepared images into batches of one bucket size (a batch is one tensor, so every image
 * in it has the same height and width). A batch is released when it is full; when too many
 * images wait in partial batches (many buckets, few images each), the fullest partial batch is
 * released early so memory stays bounded. The caller may also take the fullest partial batch at
 * any time, e.g. when the model would otherwise wait for a full one.
 */
export interface Batchable {
  /** Tensor shape key, e.g. '832x1216'. */
  bucketKey: string;
}

export class Batcher<T extends Batchable> {
  private readonly pending = new Map<string, T[]>();
  private waiting = 0;

  constructor(
    private readonly batchSize: number,
    /** Most images held in partial batches before the fullest one is released early. */
    private readonly maxWaiting: number,
  ) {}

  /** Adds one item; returns the batches that are ready (zero, one, or two). */
  add(item: T): T[][] {
    const list = this.pending.get(item.bucketKey) ?? [];
    list.push(item);
    this.pending.set(item.bucketKey, list);
    this.waiting++;
    const ready: T[][] = [];
    if (list.length >= this.batchSize) ready.push(this.take(item.bucketKey));
    if (this.waiting > this.maxWaiting) {
      const fullest = this.takeFullest();
      if (fullest) ready.push(fullest);
    }
    return ready;
  }

  /** The fullest partial batch, taken now; undefined when nothing waits. */
  takeFullest(): T[] | undefined {
    const key = this.fullest();
    return key === undefined ? undefined : this.take(key);
  }

  /** Everything still waiting, one batch per bucket (end of input or shutdown). */
  drain(): T[][] {
    return [...this.pending.keys()].sort().map((k) => this.take(k));
  }

  get size(): number {
    return this.waiting;
  }

  private fullest(): string | undefined {
    let best: string | undefined;
    let bestLen = 0;
    for (const [k, v] of this.pending) {
      if (v.length > bestLen) {
        best = k;
        bestLen = v.length;
      }
    }
    return best;
  }

  private take(key: string): T[] {
    const list = this.pending.get(key)!;
    this.pending.delete(key);
    this.waiting -= list.length;
    return list;
  }
}
