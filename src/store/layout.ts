/**
 * The model store: where dinofeat keeps models, under $DINOFEAT_HOME (default ~/.cache/dinofeat).
 *
 *   default.onnx                              symlink to a model file below: the model extract and
 *                                             validate use without --model or $DINOFEAT_MODEL
 *   models/<owner>--<name>/<revision>/        a checkpoint pulled from the Hub (dinofeat pull)
 *     checkpoint/                             config.json, preprocessor_config.json, safetensors,
 *                                             .dinofeat-download.json (what each file was fetched as)
 *     model-<precision>[.<variant>].onnx[.data]  its conversions, one per precision pulled (and per
 *                                             --norm / --layers asked: the variant, ./convert-once.ts)
 *   converted/<key>/                          a checkpoint directory given to --model, by content:
 *     model-fp32.onnx[.data]                  key = sha256 over its weights and config files
 *
 * Every model folder (pulled or converted) holds model-<precision>.onnx, converted from its
 * checkpoint once (./convert-once.ts): a pulled one again when its checkpoint is newer (the branch
 * moved). A local checkpoint is read where it is, not copied; moving or copying it does not matter,
 * changing it gives a new key.
 */
import os from 'node:os';
import path from 'node:path';
import type { Precision } from '../model/info.js';

export function dinofeatHome(env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(env.DINOFEAT_HOME || path.join(os.homedir(), '.cache', 'dinofeat'));
}

/** Pulled checkpoints and their conversions, one directory per repo. */
export function modelsDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(dinofeatHome(env), 'models');
}

/** Every pulled revision of one Hub repo: models/<owner>--<name>/. */
export function pulledRepoDir(repoId: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.join(modelsDir(env), repoId.replace('/', '--'));
}

/** A pulled checkpoint and its converted models: models/<owner>--<name>/<revision>/. */
export function pulledModelDir(repoId: string, revision: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.join(pulledRepoDir(repoId, env), revision);
}

/** Where pull puts the downloaded checkpoint inside a pulled model folder. */
export function checkpointDirOf(modelDir: string): string {
  return path.join(modelDir, 'checkpoint');
}

/** The conversion of a local checkpoint directory whose content key is `key`: converted/<key>/. */
export function convertedModelDir(key: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.join(dinofeatHome(env), 'converted', key);
}

/** A model folder's conversion at one precision, and with a variant (other normalisation, extra layers) when one is asked. */
export function modelFile(modelDir: string, precision: Precision, variant?: string): string {
  return path.join(modelDir, `model-${precision}${variant ? `.${variant}` : ''}.onnx`);
}

/** The precision of a model folder's file name (model-<precision>[.<variant>].onnx), if it is one. */
export function precisionOfModelFile(name: string): string | undefined {
  return /^model-(\w+)(\.[\w-]+)?\.onnx$/.exec(name)?.[1];
}

/** The model extract uses when neither --model nor $DINOFEAT_MODEL is given. */
export function defaultModelPath(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(dinofeatHome(env), 'default.onnx');
}
