/**
 * `dinofeat pull <repo-id> [--revision R] [--precision P] [--default]`: downloads a checkpoint from
 * the Hugging Face Hub into $DINOFEAT_HOME/models/<owner>--<name>/<revision>/checkpoint/, converts
 * it to model-<precision>.onnx beside it, and makes that the default model when asked (or when
 * there is none yet).
 */
import { EXIT } from '../core/errors.js';
import fs from 'node:fs';
import path from 'node:path';
import { convertCheckpoint } from '../convert/convert.js';
import { assertRepoId, assertRevision, downloadCheckpoint, type DownloadProgress } from '../convert/hub.js';
import type { Precision } from '../model/info.js';
import { describeModel, findKnownModel } from '../model/registry.js';
import { defaultModelPath, dinofeatHome, pulledModelDir } from '../paths.js';
import { byteProgress, type ByteProgress } from './byte-progress.js';

export interface PullOptions {
  revision?: string;
  precision: Precision;
  /** Make this model the default even when one exists. */
  default?: boolean;
}

/** One progress display per file, for the files big enough to show one. */
function downloadReporter(): { onProgress: (p: DownloadProgress) => void; stop: () => void } {
  let file: string | undefined;
  let shown: ByteProgress | undefined;
  return {
    onProgress(p) {
      if (p.file !== file) {
        shown?.stop();
        file = p.file;
        shown = byteProgress(`download ${p.file}`, { minBytes: 16 * 2 ** 20 });
      }
      shown!.update(p.received, p.total);
    },
    stop: () => shown?.stop(),
  };
}

/** A converted model is stale when a checkpoint file was (re)downloaded after it was written. */
function needsConversion(modelPath: string, checkpointDir: string): boolean {
  const model = fs.statSync(modelPath, { throwIfNoEntry: false });
  if (!model) return true;
  return fs
    .readdirSync(checkpointDir)
    .filter((f) => !f.startsWith('.') && !f.endsWith('.incomplete'))
    .some((f) => fs.statSync(path.join(checkpointDir, f)).mtimeMs > model.mtimeMs);
}

/**
 * default.onnx becomes a symlink to the model, swapped in by rename so a concurrent extract sees
 * the old default or the new one, never none. Returns why it failed, if it did.
 */
function makeDefault(modelPath: string): string | undefined {
  const link = defaultModelPath();
  const temp = `${link}.${process.pid}.tmp`;
  try {
    fs.mkdirSync(dinofeatHome(), { recursive: true });
    fs.rmSync(temp, { force: true });
    fs.symlinkSync(path.resolve(modelPath), temp);
    fs.renameSync(temp, link);
    return undefined;
  } catch (e) {
    fs.rmSync(temp, { force: true });
    return (e as NodeJS.ErrnoException).code ?? (e as Error).message;
  }
}

export async function runPull(repoId: string, opts: PullOptions): Promise<number> {
  assertRepoId(repoId);
  const revision = opts.revision ?? 'main';
  assertRevision(revision);
  const known = findKnownModel(repoId);
  // The registry's spelling, so Facebook/DINOv3-… and facebook/dinov3-… share one directory.
  const repo = known?.repoId ?? repoId;
  process.stderr.write(
    known
      ? `dinofeat pull: ${repo}: ${describeModel(known)}\n`
      : `dinofeat pull: ${repo} is not in dinofeat's registry (see dinofeat models); pulling it anyway, conversion needs a DINOv3 or DINOv2 checkpoint\n`,
  );

  const dir = pulledModelDir(repo, revision);
  const checkpointDir = path.join(dir, 'checkpoint');
  const download = downloadReporter();
  await downloadCheckpoint(repo, { revision, destDir: checkpointDir, onProgress: download.onProgress }).finally(download.stop);

  const modelPath = path.join(dir, `model-${opts.precision}.onnx`);
  let converted = false;
  if (needsConversion(modelPath, checkpointDir)) {
    const progress = byteProgress('convert');
    await convertCheckpoint(checkpointDir, modelPath, { precision: opts.precision, sourceRepo: repo, onProgress: progress.update }).finally(progress.stop);
    converted = true;
  }

  const out = [`dinofeat pull: ${repo} (${revision}) ${converted ? 'converted to' : 'already at'} ${modelPath} (${opts.precision})`, `  checkpoint: ${checkpointDir}`];
  if (opts.default || !fs.existsSync(defaultModelPath())) {
    const failed = makeDefault(modelPath);
    out.push(
      failed
        ? `  could not make it the default model (${failed} linking ${defaultModelPath()}): pass --model or set DINOFEAT_MODEL`
        : `  default model: ${defaultModelPath()} -> ${modelPath}; dinofeat extract ./images uses it when no --model is given`,
    );
  }
  out.push(`  use it: dinofeat extract ./images --model ${modelPath}`);
  process.stdout.write(`${out.join('\n')}\n`);
  return EXIT.ok;
}
