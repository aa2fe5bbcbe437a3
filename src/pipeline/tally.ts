/**
 * What a run counts, and the one place an image's failure is recorded: the errors log (so it is
 * never lost), the summary's reasons and the progress display.
 */
import type { ErrorsLog, ErrorStage } from '../cache/errors-log.js';
import type { Progress } from './progress.js';

export interface ExtractStats {
  /**
   * Inputs this worker was given (after partition and --retry-failed), a key met twice counted
   * each time: each ends extracted, skipped or failed, so found = extracted + skipped + failed
   * (a stopped run counts only what it took in).
   */
  found: number;
  extracted: number;
  skipped: number;
  failed: number;
  /** Extracted images whose old row (from changed bytes) was replaced. */
  replaced: number;
  perBucket: Record<string, number>;
  failuresByReason: Record<string, number>;
  seconds: number;
  /**
   * CPU time of this process's threads over the same span (decoding, resampling, the model on a CPU
   * device, writing): what a host with more cores divides among them, so the CPU an image is what
   * says how many cores keep an accelerator fed.
   */
  cpuSeconds: number;
  stopped: boolean;
}

/**
 * The summary groups failures by kind: the reason's first clause, without the decoder's name
 * ("vipspng: ") and with numbers as N, so "40000x30000 ... over the limit" and "9000x9000 ..." count together.
 */
export function failureKind(stage: ErrorStage, reason: string): string {
  const clause = reason.replace(/^\w+: /, '').split(/[:;(,]/)[0]!.replace(/\d+/g, 'N').trim();
  return `${stage}: ${clause.slice(0, 60)}`;
}

export class RunTally {
  readonly stats: ExtractStats = {
    found: 0, extracted: 0, skipped: 0, failed: 0, replaced: 0, perBucket: {}, failuresByReason: {}, seconds: 0, cpuSeconds: 0, stopped: false,
  };
  private readonly started = performance.now();
  private readonly cpuAtStart = process.cpuUsage();

  constructor(
    private readonly errors: ErrorsLog,
    private readonly progress: Progress,
  ) {}

  found(): void {
    this.stats.found++;
    this.progress.setTotal(this.stats.found, false);
  }

  /** Every image is known: the total is final. */
  allFound(): void {
    this.progress.setTotal(this.stats.found, true);
  }

  skipped(key: string): void {
    this.stats.skipped++;
    this.errors.resolve(key);
    this.report();
  }

  /** An input that fails before it is read (a source problem, a key met twice): found and failed at once. */
  async rejected(key: string, display: string, reason: string): Promise<void> {
    this.found();
    await this.failed(key, display, 'source', reason);
  }

  /** An image whose key another image holds (in this run, or stored from another input). */
  async duplicate(key: string, display: string, of: string): Promise<void> {
    await this.failed(key, display, 'source', `duplicate key: ${of} gives the same key; pass one of them, or namespace one input with --key-prefix`, of);
  }

  async failed(key: string, display: string, stage: ErrorStage, reason: string, duplicateOf?: string): Promise<void> {
    this.stats.failed++;
    const kind = failureKind(stage, reason);
    this.stats.failuresByReason[kind] = (this.stats.failuresByReason[kind] ?? 0) + 1;
    await this.errors.record({ key, path: display, stage, reason, ...(duplicateOf !== undefined && { duplicateOf }) });
    this.report();
  }

  /** Rows committed to the cache: their images leave the errors log. */
  written(images: ReadonlyArray<{ key: string; bucketKey: string }>, replaced: number): void {
    for (const { key, bucketKey } of images) {
      this.errors.resolve(key);
      this.stats.perBucket[bucketKey] = (this.stats.perBucket[bucketKey] ?? 0) + 1;
    }
    this.stats.extracted += images.length;
    this.stats.replaced += replaced;
    this.report();
  }

  finish(stopped: boolean): ExtractStats {
    this.stats.seconds = (performance.now() - this.started) / 1000;
    const cpu = process.cpuUsage(this.cpuAtStart);
    this.stats.cpuSeconds = (cpu.user + cpu.system) / 1e6;
    this.stats.stopped = stopped;
    return this.stats;
  }

  private report(): void {
    this.progress.update({ done: this.stats.extracted, failed: this.stats.failed, skipped: this.stats.skipped });
  }
}
