/**
 * Pull: a Hub checkpoint into the store's models/<owner>--<name>/<revision>/checkpoint/
 * (./layout.ts), converted once to model-<precision>.onnx beside it, and made the default model
 * when asked (or when there is none yet).
 */
import fs from 'node:fs';
import path from 'node:path';
import { symlinkAtomic } from '../core/durable-fs.js';
import { isUserError } from '../core/errors.js';
import { assertLayersSupported } from '../convert/convert.js';
import { convertOnce, type Conversion } from './convert-once.js';
import { assertRepoId, assertRevision, downloadCheckpoint, type DownloadProgress } from './hub.js';
import { checkpointDirOf, defaultModelPath, pulledModelDir } from './layout.js';
import { findKnownModel, type KnownModel } from './registry.js';

export interface PullModelOptions extends Conversion {
  /** Default: main. */
  revision?: string;
  /** Make this model the default even when one exists. */
  makeDefault?: boolean;
}

/** What a pull reports while it works. */
export interface PullEvents {
  /** Before the download: the repo id as the registry spells it, and what the registry knows of it. */
  start?(repo: string, known: KnownModel | undefined): void;
  download?(p: DownloadProgress): void;
  convert?(written: number, total: number): void;
}

export interface PullResult {
  repo: string;
  revision: string;
  checkpointDir: string;
  modelPath: string;
  /** False when the model was already converted from this checkpoint. */
  converted: boolean;
  /** Present when the pull tried to make the model the default: the link, and why it failed if it did (one line). */
  default?: { link: string; failed?: string };
}

/**
 * default.onnx becomes a symlink to the model, swapped in by rename so a concurrent extract sees
 * the old default or the new one, never none. Returns why it failed, if it did.
 */
async function makeDefault(modelPath: string, link: string): Promise<string | undefined> {
  try {
    fs.mkdirSync(path.dirname(link), { recursive: true });
    await symlinkAtomic(modelPath, link, { advice: 'pass --model or set DINOFEAT_MODEL' });
    return undefined;
  } catch (e) {
    if (isUserError(e)) return e.message;
    return `${(e as NodeJS.ErrnoException).code ?? (e as Error).message} linking ${link}; pass --model or set DINOFEAT_MODEL`;
  }
}

export async function pullModel(repoId: string, o: PullModelOptions, on: PullEvents = {}): Promise<PullResult> {
  assertRepoId(repoId);
  const revision = o.revision ?? 'main';
  assertRevision(revision);
  const known = findKnownModel(repoId);
  // The registry's spelling, so Facebook/DINOv3-… and facebook/dinov3-… share one directory.
  const repo = known?.repoId ?? repoId;
  // A known ConvNeXt is refused before its download; an unknown one when it is converted.
  if (known) assertLayersSupported(known.family, o.layers);
  on.start?.(repo, known);

  const modelDir = pulledModelDir(repo, revision);
  const checkpointDir = checkpointDirOf(modelDir);
  await downloadCheckpoint(repo, { revision, destDir: checkpointDir, onProgress: on.download });
  const { modelPath, converted } = await convertOnce(checkpointDir, modelDir, {
    precision: o.precision, layers: o.layers, normalisation: o.normalisation, sourceRepo: repo, changesInPlace: true, onProgress: on.convert,
  });

  const result: PullResult = { repo, revision, checkpointDir, modelPath, converted };
  const link = defaultModelPath();
  if (o.makeDefault || !fs.existsSync(link)) result.default = { link, failed: await makeDefault(modelPath, link) };
  return result;
}
