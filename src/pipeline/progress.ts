/**
 * Progress for long runs: a cli-progress bar on a terminal, plain periodic lines otherwise (logs
 * of batch jobs must stay readable). The total comes from the count ahead of extraction
 * (source/count.ts: directories walked, Parquet footers) as soon as it is known, tar shards by
 * bytes read of their size, and otherwise grows as images are found; the bar says which.
 */
import cliProgress from 'cli-progress';
import type { AheadCount } from '../source/count.js';

export interface ProgressCounts {
  done: number;
  failed: number;
  skipped: number;
}

export interface Progress {
  /** Images found so far by the run itself (final: every input read). */
  setTotal(total: number, final: boolean): void;
  /** The count ahead of extraction. */
  ahead(count: AheadCount): void;
  /** Bytes of the tar shards read so far (polled). */
  tarBytesRead(read: () => number): void;
  update(counts: ProgressCounts): void;
  stop(): void;
}

function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(bytes < 10 * 2 ** 20 ? 1 : 0)} MiB`;

/** What the display knows about the total, and the ETA it gives. */
export class Estimate {
  private readonly start = performance.now();
  private found = 0;
  private foundFinal = false;
  private count?: AheadCount;
  private readTar: () => number = () => 0;
  counts: ProgressCounts = { done: 0, failed: 0, skipped: 0 };

  setFound(found: number, final: boolean): void {
    this.found = found;
    this.foundFinal = final;
  }

  setAhead(count: AheadCount): void {
    this.count = count;
  }

  setTarRead(read: () => number): void {
    this.readTar = read;
  }

  get processed(): number {
    return this.counts.done + this.counts.failed + this.counts.skipped;
  }

  private get seconds(): number {
    return (performance.now() - this.start) / 1000;
  }

  /** Images a second: extracted or failed (skipping a cached image costs little). */
  rate(): number {
    return this.seconds > 0 ? (this.counts.done + this.counts.failed) / this.seconds : 0;
  }

  private tarFraction(): number | undefined {
    const total = this.count?.tarBytes ?? 0;
    return total > 0 ? Math.min(1, this.readTar() / total) : undefined;
  }

  /** The total to show: exact once known, else the best guess so far. */
  total(): number {
    if (this.foundFinal) return this.found;
    const counted = this.count?.images ?? 0;
    const f = this.tarFraction();
    // Tar shards: the images found in them so far, scaled by the share of their bytes read.
    const fromTar = f !== undefined && f > 0 ? Math.max(0, this.found - counted) / f : 0;
    return Math.max(this.found, Math.round(counted + fromTar));
  }

  /** How the total is known, in words for the bar. */
  basis(): string {
    if (this.foundFinal) return 'all found';
    const f = this.tarFraction();
    if (f !== undefined) return `tar by bytes: ${Math.round(f * 100)}% of ${mib(this.count!.tarBytes)} read`;
    if (this.count?.final) return 'counted ahead';
    if (this.count) return this.count.images > 0 ? 'counting as read' : 'counted as read';
    return 'counting ahead';
  }

  exact(): boolean {
    return this.foundFinal || (this.count?.final ?? false);
  }

  eta(): number {
    const rate = this.rate();
    const f = this.tarFraction();
    const left = rate > 0 ? (this.total() - this.processed) / rate : Infinity;
    if (this.exact()) return left;
    if (f === undefined || f === 0) return Infinity;
    // Tar shards are read as fast as extraction takes their images: the share read measures time.
    return Math.max(this.count!.images > 0 ? left : 0, (this.seconds * (1 - f)) / f);
  }
}

export function createProgress(opts: { label: string; stream?: NodeJS.WriteStream; intervalMs?: number; quiet?: boolean }): Progress {
  const stream = opts.stream ?? process.stderr;
  const est = new Estimate();
  const setters = {
    setTotal: (t: number, final: boolean) => est.setFound(t, final),
    ahead: (c: AheadCount) => est.setAhead(c),
    tarBytesRead: (read: () => number) => est.setTarRead(read),
  };

  if (opts.quiet) return { ...setters, update() {}, stop() {} };

  if (stream.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        format: `${opts.label} |{bar}| {value}/{total} ({basis}) | {rate} img/s | ETA {etaText} | {failed} failed`,
        stream,
        hideCursor: true,
        etaBuffer: 50,
        fps: 5,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(0, 0, { rate: '0.0', etaText: '?', failed: 0, basis: est.basis() });
    return {
      ...setters,
      update(c) {
        est.counts = c;
        bar.setTotal(est.total());
        bar.update(est.processed, { rate: est.rate().toFixed(1), etaText: formatDuration(est.eta()), failed: c.failed, basis: est.basis() });
      },
      stop() {
        bar.stop();
      },
    };
  }

  const interval = opts.intervalMs ?? 10_000;
  let last = 0;
  const line = () => {
    const of = est.exact() ? `/${est.total()}` : `/${est.total()}+`;
    stream.write(
      `${opts.label}: ${est.processed}${of} images (${est.basis()}), ${est.rate().toFixed(1)} img/s, ETA ${formatDuration(est.eta())}, ${est.counts.failed} failed, ${est.counts.skipped} skipped\n`,
    );
  };
  return {
    ...setters,
    update(c) {
      est.counts = c;
      const now = performance.now();
      if (now - last >= interval) {
        last = now;
        line();
      }
    },
    stop() {
      // The run's summary follows; a last progress line would only repeat it.
    },
  };
}

export { formatDuration };
