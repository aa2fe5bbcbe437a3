/**
 * The first error of any stage ends the run: stages share one `FirstError` holder and stop taking
 * work once it is set; tasks are tracked so the run can wait for everything in flight.
 */

/** Errors that end the run with one line for the user (disk full, a model that breaks its contract). */
export class FatalError extends Error {}

/** The first error any stage hit; later ones are consequences and are dropped. */
export class FirstError {
  error: unknown;
  private set = false;

  record(e: unknown): void {
    if (this.set) return;
    this.set = true;
    this.error = e;
  }

  get failed(): boolean {
    return this.set;
  }
}

/** Tasks of one stage; a task's error goes to `failure` instead of rejecting anywhere else. */
export class TaskGroup {
  private readonly live = new Set<Promise<void>>();

  constructor(private readonly failure: FirstError) {}

  add(task: Promise<void>): void {
    const tracked: Promise<void> = task.catch((e) => this.failure.record(e)).finally(() => this.live.delete(tracked));
    this.live.add(tracked);
  }

  /** Resolves once every task, including those added meanwhile, has ended. */
  async settle(): Promise<void> {
    while (this.live.size) await Promise.all([...this.live]);
  }
}
