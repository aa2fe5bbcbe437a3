/**
 * Progress of a long byte transfer (a download, a model being written): a bar on a terminal, a
 * line every quarter otherwise, and nothing for transfers too small to wait for.
 */
import cliProgress from 'cli-progress';

export interface ByteProgress {
  update(done: number, total: number | undefined): void;
  stop(): void;
}

const MiB = 2 ** 20;

export function byteProgress(label: string, opts: { minBytes?: number; stream?: NodeJS.WriteStream } = {}): ByteProgress {
  const minBytes = opts.minBytes ?? 256 * MiB;
  const stream = opts.stream ?? process.stderr;
  if (stream.isTTY) {
    let bar: cliProgress.SingleBar | undefined;
    return {
      update(done, total) {
        if (total === undefined || total < minBytes) return;
        if (!bar) {
          bar = new cliProgress.SingleBar({ format: `${label} |{bar}| {percentage}% | {value}/{total} MiB`, stream }, cliProgress.Presets.shades_classic);
          bar.start(Math.round(total / MiB), 0);
        }
        bar.update(Math.round(done / MiB));
      },
      stop: () => bar?.stop(),
    };
  }
  let next = 0.25;
  return {
    update(done, total) {
      if (total === undefined || total < minBytes || done / total < next) return;
      stream.write(`${label}: ${Math.floor((100 * done) / total)}% of ${(total / MiB).toFixed(0)} MiB\n`);
      while (done / total >= next) next += 0.25;
    },
    stop() {},
  };
}
