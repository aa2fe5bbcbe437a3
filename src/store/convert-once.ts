/**
 * Converted-checkpoint caching, for pulled and local checkpoints alike: a model folder's
 * model-<precision>.onnx is converted from its checkpoint once. A local checkpoint directory gets
 * its folder by content (checkpointKey): editing it gives a new folder, copying it or touching its
 * files does not reconvert. A pulled checkpoint changes in place when its branch moves, so there a
 * file the conversion reads that is newer than the model makes it stale.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { convertCheckpoint, type ConvertOptions } from '../convert/convert.js';
import { openCheckpoint } from '../convert/safetensors.js';
import { presetOf } from '../model/normalisation.js';
import { modelFile } from './layout.js';

/** The files a conversion reads; anything else in the directory (README, .git) does not matter. */
const readByConversion = (name: string) => name === 'config.json' || name === 'preprocessor_config.json' || name === 'model.safetensors.index.json' || name.endsWith('.safetensors');

/** The model exists and, for a checkpoint that changes in place, is newer than every file conversion reads. */
function isFresh(modelPath: string, checkpointDir: string, changesInPlace: boolean): boolean {
  const model = fs.statSync(modelPath, { throwIfNoEntry: false });
  if (!model) return false;
  if (!changesInPlace) return true;
  return !fs
    .readdirSync(checkpointDir)
    .filter(readByConversion)
    .some((f) => fs.statSync(path.join(checkpointDir, f)).mtimeMs > model.mtimeMs);
}

/** What a conversion is asked for beyond the checkpoint: model files differ exactly when these do. */
export type Conversion = Pick<ConvertOptions, 'precision' | 'layers' | 'normalisation'>;

/**
 * The file-name variant of a conversion other than the default: the normalisation preset's name
 * (or norm-<hash> for other constants) and layers-<k>-<k>; undefined for the checkpoint's own.
 */
export function conversionVariant(c: Conversion): string | undefined {
  const parts: string[] = [];
  const n = c.normalisation;
  if (n?.mean || n?.std) {
    const preset = n.mean && n.std ? presetOf({ mean: n.mean, std: n.std }) : undefined;
    parts.push(preset ?? `norm-${createHash('sha256').update(JSON.stringify([n.mean ?? null, n.std ?? null])).digest('hex').slice(0, 8)}`);
  }
  if (c.layers?.length) parts.push(`layers-${[...new Set(c.layers)].sort((a, b) => a - b).join('-')}`);
  return parts.length ? parts.join('.') : undefined;
}

export interface ConvertOnceOptions extends Conversion {
  /** Hugging Face repo id, recorded in the model's metadata. */
  sourceRepo?: string;
  /** The checkpoint is rewritten in place (a pulled revision): reconvert when it is newer than the model. */
  changesInPlace?: boolean;
  /** Called before a conversion starts (not when the model is fresh). */
  onStart?: (modelPath: string) => void;
  onProgress?: (written: number, total: number) => void;
}

/** The model folder's model-<precision>.onnx, converted from `checkpointDir` unless it is fresh. */
export async function convertOnce(checkpointDir: string, modelDir: string, o: ConvertOnceOptions): Promise<{ modelPath: string; converted: boolean }> {
  const modelPath = modelFile(modelDir, o.precision, conversionVariant(o));
  if (isFresh(modelPath, checkpointDir, o.changesInPlace === true)) return { modelPath, converted: false };
  o.onStart?.(modelPath);
  await convertCheckpoint(checkpointDir, modelPath, { precision: o.precision, layers: o.layers, normalisation: o.normalisation, sourceRepo: o.sourceRepo, onProgress: o.onProgress });
  return { modelPath, converted: true };
}

/**
 * A local checkpoint's content key: sha256 over its weights' sha256 and its config files, so a
 * changed preprocessor_config.json (mean, std, resample) is a new model too. 16 hex digits.
 */
export async function checkpointKey(dir: string): Promise<string> {
  const ckpt = openCheckpoint(dir);
  const weights = await ckpt.sha256().finally(() => ckpt.close());
  const h = createHash('sha256').update(weights);
  for (const name of ['config.json', 'preprocessor_config.json']) {
    const file = path.join(dir, name);
    // Absent and empty differ: the length goes in before the bytes.
    const bytes = fs.existsSync(file) ? fs.readFileSync(file) : undefined;
    h.update(`\n${name} ${bytes?.length ?? -1}\n`);
    if (bytes) h.update(bytes);
  }
  return h.digest('hex').slice(0, 16);
}
