/** `dinofeat convert <checkpoint-dir> --out model.onnx [--precision P]`. */
import cliProgress from 'cli-progress';
import { convertCheckpoint } from '../convert/convert.js';
import type { Precision } from '../model/info.js';

export interface ConvertCommandOptions {
  out: string;
  precision: Precision;
  sourceRepo?: string;
}

/** A bar on a terminal for checkpoints big enough to wait for; plain lines otherwise. */
function progressReporter(label: string): { update: (written: number, total: number) => void; stop: () => void } {
  const big = 256 * 2 ** 20;
  if (process.stderr.isTTY) {
    let bar: cliProgress.SingleBar | undefined;
    return {
      update(written, total) {
        if (total < big) return;
        bar ??= new cliProgress.SingleBar({ format: `${label} |{bar}| {percentage}% | {value}/{total} MiB`, stream: process.stderr }, cliProgress.Presets.shades_classic);
        if (!bar.isActive) bar.start(Math.round(total / 2 ** 20), 0);
        bar.update(Math.round(written / 2 ** 20));
      },
      stop: () => bar?.stop(),
    };
  }
  let next = 0.25;
  return {
    update(written, total) {
      if (total < big || written / total < next) return;
      process.stderr.write(`${label}: ${Math.round((100 * written) / total)}% of ${(total / 2 ** 20).toFixed(0)} MiB\n`);
      next += 0.25;
    },
    stop() {},
  };
}

export async function runConvert(dir: string, o: ConvertCommandOptions): Promise<number> {
  const progress = progressReporter('convert');
  const r = await convertCheckpoint(dir, o.out, { precision: o.precision, sourceRepo: o.sourceRepo, onProgress: progress.update }).finally(progress.stop);
  const mib = (r.bytes / 2 ** 20).toFixed(1);
  process.stdout.write(
    `dinofeat convert: ${r.modelPath}${r.dataPath ? ` + ${r.dataPath}` : ''} (${mib} MiB, ${o.precision}) in ${r.seconds.toFixed(1)} s\n` +
      `  ${r.info.family}, patch ${r.info.patchSize}, ${r.info.numRegisters} registers, hidden ${r.info.hiddenSize}, tokens [${r.info.tokenLayout.join(', ')}]\n`,
  );
  return 0;
}
