/** `dinofeat convert <checkpoint-dir> --out model.onnx [--precision P] [--source-repo ID]`. */
import { EXIT } from '../core/errors.js';
import { convertCheckpoint } from '../convert/convert.js';
import type { Precision } from '../model/info.js';
import { byteProgress } from './byte-progress.js';

export interface ConvertCommandOptions {
  out: string;
  precision: Precision;
  sourceRepo?: string;
}

export async function runConvert(dir: string, o: ConvertCommandOptions): Promise<number> {
  // A bar on a terminal for checkpoints big enough to wait for; plain lines otherwise.
  const progress = byteProgress('convert');
  const r = await convertCheckpoint(dir, o.out, { precision: o.precision, sourceRepo: o.sourceRepo, onProgress: progress.update }).finally(progress.stop);
  const mib = (r.bytes / 2 ** 20).toFixed(1);
  process.stdout.write(
    `dinofeat convert: ${r.modelPath}${r.dataPath ? ` + ${r.dataPath}` : ''} (${mib} MiB, ${o.precision}) in ${r.seconds.toFixed(1)} s\n` +
      `  ${r.info.family}, patch ${r.info.patchSize}, ${r.info.numRegisters} registers, hidden ${r.info.hiddenSize}, tokens [${r.info.tokenLayout.join(', ')}]\n`,
  );
  return EXIT.ok;
}
