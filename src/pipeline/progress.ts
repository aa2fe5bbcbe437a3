/**
 * Progress for long runs: a cli-progress bar on a terminal, plain periodic lines otherwise (logs
 * of batch jobs must stay readable). The total grows while the sources are still being walked.
 */
import cliProgress from 'cli-progress';

export interface ProgressCounts {
  done: number;
  failed: number;
  skipped: number;
}

export interface Progress {
  setTotal(total: number, final: boolean): void;
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

class RateMeter {
  private readonly start = performance.now();
  rate(done: number): number {
    const secs = (performance.now() - this.start) / 1000;
    return secs > 0 ? done / secs : 0;
  }
}

export function createProgress(opts: { label: string; stream?: NodeJS.WriteStream; intervalMs?: number; quiet?: boolean }): Progress {
  const stream = opts.stream ?? process.stderr;
  const meter = new RateMeter();
  let total = 0;
  let totalFinal = false;
  let counts: ProgressCounts = { done: 0, failed: 0, skipped: 0 };
  const processed = () => counts.done + counts.failed + counts.skipped;
  const eta = () => {
    const rate = meter.rate(counts.done + counts.failed);
    return totalFinal && rate > 0 ? (total - processed()) / rate : Infinity;
  };

  if (opts.quiet) return { setTotal() {}, update() {}, stop() {} };

  if (stream.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        format: `${opts.label} |{bar}| {value}/{total} | {rate} img/s | ETA {etaText} | {failed} failed`,
        stream,
        hideCursor: true,
        etaBuffer: 50,
        fps: 5,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(0, 0, { rate: '0.0', etaText: '?', failed: 0 });
    return {
      setTotal(t, final) {
        total = t;
        totalFinal = final;
        bar.setTotal(t);
      },
      update(c) {
        counts = c;
        bar.update(processed(), { rate: meter.rate(c.done + c.failed).toFixed(1), etaText: formatDuration(eta()), failed: c.failed });
      },
      stop() {
        bar.stop();
      },
    };
  }

  const interval = opts.intervalMs ?? 10_000;
  let last = 0;
  const line = () => {
    const of = totalFinal ? `/${total}` : ` (of ${total}+ found)`;
    stream.write(
      `${opts.label}: ${processed()}${of} images, ${meter.rate(counts.done + counts.failed).toFixed(1)} img/s, ETA ${formatDuration(eta())}, ${counts.failed} failed, ${counts.skipped} skipped\n`,
    );
  };
  return {
    setTotal(t, final) {
      total = t;
      totalFinal = final;
    },
    update(c) {
      counts = c;
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
