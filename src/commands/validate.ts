/**
 * `dinofeat validate <cache-dir | shard>`: proves a cache (and a model) right before weeks of
 * training trust it. Checks: cache (always), model (--model), images (--images), recompute
 * (--recompute N, needs both), alignment (--latent-stride with --dit-patch). Exit 0 only when
 * every check that ran passed, 1 when one failed, 2 on a usage error.
 */
import fs from 'node:fs';
import { openReadOnly } from '../cache/open-read-only.js';
import { EXIT, UserError } from '../core/errors.js';
import { resolveModelPath } from '../store/resolve.js';
import { checkAlignment } from '../validate/alignment.js';
import { checkCache } from '../validate/cache-check.js';
import { formatChecks, skippedCheck, type CheckResult } from '../validate/check.js';
import { checkImages } from '../validate/images-check.js';
import { checkModel } from '../validate/model-check.js';
import { recomputeRows } from '../validate/recompute.js';

export interface ValidateOptions {
  /** The model to check, and to recompute rows with (.onnx, checkpoint dir or Hub folder). */
  model?: string;
  /** The folder extract read: every image in it must be stored once or in the errors log. */
  images?: string;
  /** Rows to extract again and compare (needs model and images). */
  recompute?: number;
  /** Seed of the recompute sample (default 0). */
  seed?: number;
  /** VAE stride of the trainer's latents, for the alignment check (with ditPatch). */
  latentStride?: number;
  /** DiT patch size on the latent, for the alignment check (with latentStride). */
  ditPatch?: number;
  /** Execution provider for the model (default cpu). */
  device?: string;
  threads?: number;
  json?: boolean;
}

export interface ValidationReport {
  target: string;
  ok: boolean;
  checks: CheckResult[];
}

function checkFlags(o: ValidateOptions): void {
  if ((o.latentStride === undefined) !== (o.ditPatch === undefined)) {
    throw new UserError('--latent-stride and --dit-patch go together: pass the VAE stride (e.g. 8) and the DiT patch size (e.g. 2)');
  }
  if (o.recompute !== undefined) {
    if (!o.model) throw new UserError('--recompute needs --model: the model to extract the sampled rows with');
    if (!o.images) throw new UserError('--recompute needs --images DIR: the folder extract read the images from');
  }
  if (o.images && !fs.statSync(o.images, { throwIfNoEntry: false })?.isDirectory()) {
    throw new UserError(`--images ${o.images} is not a directory: pass the folder extract read`);
  }
}

export async function validate(target: string, o: ValidateOptions): Promise<ValidationReport> {
  checkFlags(o);
  const t = await openReadOnly(target);
  const checks: CheckResult[] = [];
  const cache = await checkCache(t);
  checks.push(cache.result);

  const modelPath = o.model ? await resolveModelPath(o.model) : undefined;
  const modelCheck = modelPath ? await checkModel(modelPath, { device: o.device ?? 'cpu', threads: o.threads, cacheModel: cache.identity?.model }) : undefined;
  try {
    if (modelCheck) checks.push(modelCheck.result);
    if (o.images) checks.push(await checkImages(t, o.images, cache.shardMeta, cache.identity?.fingerprint));
    if (o.recompute !== undefined) {
      checks.push(modelCheck?.model
        ? await recomputeRows(t, cache.shardMeta, { count: o.recompute, seed: o.seed ?? 0, imagesDir: o.images!, model: modelCheck.model })
        : skippedCheck('recompute', 'the model failed its check (see above)'));
    }
  } finally {
    await modelCheck?.model?.session.close();
  }
  if (o.latentStride !== undefined && o.ditPatch !== undefined) {
    checks.push(cache.identity
      ? checkAlignment(cache.identity.preprocessing, cache.identity.model.patchSize, cache.rowsPerBucket, o.latentStride, o.ditPatch)
      : skippedCheck('alignment', 'no readable cache.json or shard metadata to take the buckets from'));
  }
  return { target, ok: checks.every((c) => c.status !== 'fail'), checks };
}

/** Prints the report (text, or JSON with --json) to `out` and returns the exit code. */
export async function runValidate(target: string, o: ValidateOptions, out: Pick<NodeJS.WritableStream, 'write'> = process.stdout): Promise<number> {
  const report = await validate(target, o);
  out.write(o.json ? `${JSON.stringify(report, null, 2)}\n` : formatChecks(`dinofeat validate ${target}`, report.checks));
  return report.ok ? EXIT.ok : EXIT.imagesFailed;
}
