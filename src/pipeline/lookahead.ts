/**
 * How far the image stage runs ahead of the model. While the model holds its full queue (a batch
 * running, and the next one ready at it while its calls are short: scheduler.ts), it has work for
 * at least a batch's time: images are then prepared one at a time, and none starts once a whole
 * batch waits. Otherwise every decoder works, since the model is about to wait. Each decode holds
 * a decoded frame (36 MB for a 12 MP photo) and each waiting image its tensor (12.6 MB at 1024²),
 * so when the model is the slow stage this keeps the memory of one decode and one batch ahead
 * instead of every decoder's and every slot's (docs/speed.md, Memory).
 */
export interface ModelQueueState {
  /** The model holds as many batches as it takes now (scheduler.ts: one or MODEL_QUEUE_DEPTH). */
  full: boolean;
  /** Prepared images not yet handed to the model. */
  waiting: number;
}

export class Lookahead {
  private preparing = 0;
  private waiters: Array<() => void> = [];

  constructor(
    private readonly batchSize: number,
    private readonly queue: () => ModelQueueState,
  ) {}

  /** Waits until one more image may be prepared; `leave` when it is prepared (or failed). */
  async enter(): Promise<void> {
    while (!this.admits()) await new Promise<void>((resolve) => this.waiters.push(resolve));
    this.preparing++;
  }

  leave(): void {
    this.preparing--;
    this.changed();
  }

  /** The model's queue changed: waiters look again, in the order they came. */
  changed(): void {
    const woken = this.waiters;
    this.waiters = [];
    for (const resolve of woken) resolve();
  }

  private admits(): boolean {
    const q = this.queue();
    return !q.full || (this.preparing === 0 && q.waiting < this.batchSize);
  }
}
