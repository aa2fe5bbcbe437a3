/**
 * `dinofeat convert <checkpoint-dir> --out model.onnx [--precision P] [--layers K,...]
 * [--norm PRESET | --image-mean R,G,B --image-std R,G,B] [--source-repo ID]`.
 */
import { EXIT } from '../core/errors.js';
import { convertCheckpoint, type ConvertOptions } from '../convert/convert.js';
import type { Precision } from '../model/info.js';
import { normalisationOverride, type NormalisationRequest } from '../model/normalisation.js';
import { byteProgress } from './byte-progress.js';

/** The conversion flags convert and pull share (cli/flags.ts#conversionFlags). */
export interface ConversionFlags extends NormalisationRequest {
  precision: Precision;
  layers?: number[];
}

/** What the shared conversion flags ask of a conversion. */
export function conversionOf(f: ConversionFlags): Pick<ConvertOptions, 'precision' | 'layers' | 'normalisation'> {
  return { precision: f.precision, layers: f.layers, normalisation: normalisationOverride(f) };
}

export interface ConvertCommandOptions extends ConversionFlags {
  out: string;
  sourceRepo?: string;
}

export async function runConvert(dir: string, o: ConvertCommandOptions): Promise<number> {
  // A bar on a terminal for checkpoints big enough to wait for; plain lines otherwise.
  const progress = byteProgress('convert');
  const r = await convertCheckpoint(dir, o.out, { ...conversionOf(o), sourceRepo: o.sourceRepo, onProgress: progress.update }).finally(progress.stop);
  const mib = (r.bytes / 2 ** 20).toFixed(1);
  process.stdout.write(
    `dinofeat convert: ${r.modelPath}${r.dataPath ? ` + ${r.dataPath}` : ''} (${mib} MiB, ${o.precision}) in ${r.seconds.toFixed(1)} s\n` +
      `  ${r.info.family}, patch ${r.info.patchSize}, ${r.info.numRegisters} registers, hidden ${r.info.hiddenSize}, tokens [${r.info.tokenLayout.join(', ')}]\n` +
      `  mean [${r.info.imageMean.join(', ')}], std [${r.info.imageStd.join(', ')}]; layers: ${r.info.layers?.length ? `${r.info.layers.join(', ')} and the last` : 'the last'}\n`,
  );
  return EXIT.ok;
}
