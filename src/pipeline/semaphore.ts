/**
 * A counting semaphore over units: images held in memory, or pixels being decoded. Waiters are
 * served in order, so a large request is not starved by a stream of small ones.
 */
export class Semaphore {
  private readonly waiters: Array<{ units: number; resolve: () => void }> = [];
  private available: number;

  constructor(private readonly capacity: number) {
    this.available = capacity;
  }

  /**
   * Takes `units`, waiting until they are free. A request above the capacity takes all of it
   * (it runs alone rather than never). Returns the units taken: what `release` must give back.
   */
  async acquire(units = 1): Promise<number> {
    const n = Math.min(units, this.capacity);
    if (this.waiters.length === 0 && this.available >= n) {
      this.available -= n;
      return n;
    }
    await new Promise<void>((resolve) => this.waiters.push({ units: n, resolve }));
    return n;
  }

  release(units = 1): void {
    this.available += units;
    for (let next = this.waiters[0]; next && next.units <= this.available; next = this.waiters[0]) {
      this.waiters.shift();
      this.available -= next.units;
      next.resolve();
    }
  }
}
