/**
 * validate: proves a cache (and a model) right before weeks of training trust it. Checks: cache
 * (always), model (--model), images (--images / --list), recompute (--recompute N), alignment
 * (--latent-stride with --dit-patch). For a cache directory (default ./dinofeat-cache), what its
 * runs recorded stands in for the flags not given: the images extract read, and the model to
 * recompute a few rows with. The report says pass or fail per check; the command turns it into
 * an exit code.
 */
import fs from 'node:fs';
import { openReadOnly, type ReadTarget } from '../cache/open-read-only.js';
import { UserError } from '../core/errors.js';
import { inputsOfRecord, readRunRecord, recordedModelPath, type RunRecord } from '../cache/run-record.js';
import { resolveModelPath } from '../store/resolve.js';
import { checkAlignment } from './alignment.js';
import { checkCache } from './cache-check.js';
import { skippedCheck, type CheckResult } from './check.js';
import { checkImages } from './images-check.js';
import { checkModel } from './model-check.js';
import { recomputeRows } from './recompute.js';
import { inputKind, type Inputs } from '../source/inputs.js';
import type { ReadOptions } from '../source/read-options.js';

/** Rows recomputed when --recompute is not given: catches another model or preprocessing in seconds. */
export const DEFAULT_RECOMPUTE = 4;

export interface ValidateOptions {
  /** The model to check and recompute rows with (.onnx, checkpoint dir or Hub folder); default: the cache's recorded model, when rows are recomputed. */
  model?: string;
  /** Image folders extract read (with `list`): every image in them must be stored once or in the errors log. Default: the cache's recorded inputs. */
  images?: readonly string[];
  /** Image list files extract read. */
  list?: readonly string[];
  /** How to read them into keys (--key-prefix, ...), when the cache does not record it. */
  read?: Partial<ReadOptions>;
  /** Rows to extract again and compare; 0 skips. Default DEFAULT_RECOMPUTE when the images and a model are known. */
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
  for (const p of o.images ?? []) {
    const st = fs.statSync(p, { throwIfNoEntry: false });
    if (inputKind(p) === 'dir' ? !st?.isDirectory() : !st?.isFile()) throw new UserError(`--images ${p} is not a directory, tar shard or Parquet file: pass what extract read`);
  }
}

/** The recorded inputs, when they are all still there. */
function recordedInputs(record: RunRecord): Inputs {
  const inputs = inputsOfRecord(record.inputs);
  const gone = [...record.inputs.dirs.filter((d) => !fs.statSync(d, { throwIfNoEntry: false })?.isDirectory()), ...[...(record.inputs.containers ?? []), ...inputs.lists].filter((l) => !fs.existsSync(l))];
  if (gone.length) throw new UserError(`the cache's recorded input ${gone[0]} is gone (moved or deleted): pass --images DIR or --list FILE for where the images are now`);
  return inputs;
}

/** What validate compares the cache with: from the flags, else from what the cache's runs recorded. */
interface Plan {
  /** The images to check, or why not (undefined: none given and nothing to say). */
  inputs?: Inputs | { skipped: string };
  model?: string;
  /** Rows to recompute and where their images are, or why not (undefined: none). */
  recompute?: { count: number; inputs: Inputs; byOrigin: boolean } | { skipped: string };
}

/** The images to check: the flags', else the recorded ones, else why there are none. */
function planInputs(t: ReadTarget, o: ValidateOptions, record: RunRecord | undefined): Plan['inputs'] {
  if (o.images?.length || o.list?.length) return { paths: o.images ?? [], lists: o.list ?? [], read: o.read, readAs: record ? inputsOfRecord(record.inputs).readAs : undefined };
  if (record?.inputs.stdin) return { skipped: 'extract read a list from stdin, which the cache cannot record: pass --images DIR or --list FILE' };
  if (record) return recordedInputs(record);
  return t.kind === 'cache' ? { skipped: 'the cache records no inputs (made by an older dinofeat): pass --images DIR or --list FILE' } : undefined;
}

async function planChecks(t: ReadTarget, o: ValidateOptions): Promise<Plan> {
  const record = t.kind === 'cache' && t.dir ? await readRunRecord(t.dir) : undefined;
  const inputs = planInputs(t, o, record);
  const count = o.recompute ?? (t.kind === 'cache' ? DEFAULT_RECOMPUTE : 0);
  if (count === 0) return { inputs, model: o.model };
  // An explicit --recompute that cannot run is a usage error; the default one is skipped, saying why.
  const cannot = (skipped: string, usage: string): Plan => {
    if (o.recompute !== undefined) throw new UserError(usage);
    return { inputs, model: o.model, recompute: { skipped } };
  };
  if (!inputs || 'skipped' in inputs) {
    const need = inputs?.skipped ?? 'pass --images DIR or --list FILE (what extract read)';
    return cannot(need, `--recompute needs the images: ${need}`);
  }
  const model = o.model ?? (record ? await recordedModelPath(record.models) : undefined);
  if (model === undefined) return cannot('no model: pass --model, the model the cache was made with', '--recompute needs --model: the model to extract the sampled rows with');
  // The recorded inputs: each row's recorded origin is read again. Inputs given by flag say where the images are now.
  const byOrigin = !(o.images?.length || o.list?.length);
  return { inputs, model, recompute: { count, inputs, byOrigin } };
}

export async function validate(target: string, o: ValidateOptions): Promise<ValidationReport> {
  checkFlags(o);
  const t = await openReadOnly(target);
  const plan = await planChecks(t, o);
  const checks: CheckResult[] = [];
  const cache = await checkCache(t);
  checks.push(cache.result);

  const modelPath = plan.model !== undefined ? await resolveModelPath(plan.model) : undefined;
  const modelCheck = modelPath ? await checkModel(modelPath, { device: o.device ?? 'cpu', threads: o.threads, cacheModel: cache.identity?.model }) : undefined;
  try {
    if (modelCheck) checks.push(modelCheck.result);
    if (plan.inputs) {
      checks.push('skipped' in plan.inputs
        ? skippedCheck('images', plan.inputs.skipped)
        : await checkImages(t, plan.inputs, cache.shardMeta, cache.identity?.fingerprint));
    }
    if (plan.recompute) {
      checks.push('skipped' in plan.recompute
        ? skippedCheck('recompute', plan.recompute.skipped)
        : modelCheck?.model
          ? await recomputeRows(t, cache.shardMeta, { ...plan.recompute, seed: o.seed ?? 0, model: modelCheck.model })
          : skippedCheck('recompute', 'the model failed its check (see above)'));
    }
  } finally {
    await modelCheck?.model?.session.close();
  }
  if (o.latentStride !== undefined && o.ditPatch !== undefined) {
    checks.push(cache.identity
      ? checkAlignment(cache.identity.preprocessing, cache.identity.model, cache.rowsPerBucket, o.latentStride, o.ditPatch)
      : skippedCheck('alignment', 'no readable cache.json or shard metadata to take the buckets from'));
  }
  return { target, ok: checks.every((c) => c.status !== 'fail'), checks };
}

