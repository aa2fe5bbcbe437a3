/** A counting semaphore: bounds how many images are held in memory at once. */
export class Semaphore {
  private readonly waiters: Array<() => void> = [];

  constructor(private available: number) {}

  async acquire(): Promise<void> {
    if (this.available > 0) {
      this.available--;
      return;
    }
    await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  release(n = 1): void {
    for (let k = 0; k < n; k++) {
      const next = this.waiters.shift();
      if (next) next();
      else this.available++;
    }
  }
}
