/**
 * `extract` end to end: checks every setting and the model before touching the cache, opens the
 * cache for writing (cache/open.ts), builds the stages and runs them (extract-run.ts), and leaves
 * the cache summarised. What it returns is what the command prints.
 */
import fs from 'node:fs';
import { UserError } from '../core/errors.js';
import { cacheIdentity, shardMetaOf, type CacheIdentity, type StoredForm } from '../cache/identity.js';
import type { CacheState } from '../cache/manifest.js';
import { checkCacheDirWritable, openCacheForWrite } from '../cache/open.js';
import { recordRun } from '../cache/run-record.js';
import { lastDevices } from '../cache/shard-devices.js';
import { ShardSink } from '../cache/shard-sink.js';
import { checkPoolable, resolveBuckets, type Bucket, type BucketFlags, type ResizeMode } from '../image/buckets.js';
import { CropsFile } from '../image/crops-file.js';
import { resolveBackground, type DecodeOptions } from '../image/decode.js';
import type { PrepareSettings } from '../image/prepare-settings.js';
import { describePreprocessing } from '../image/preprocessing-record.js';
import { startSession } from '../model/devices.js';
import type { ModelInfo } from '../model/info.js';
import { loadModelInfo, type InfoOverrides } from '../model/load-info.js';
import { probeModel } from '../model/probe.js';
import { modelWeightsSha256 } from '../model/weights-hash.js';
import { resolveModelPath } from '../store/resolve.js';
import { resolveWorkerSlot } from '../source/partition.js';
import { readInputs, type Inputs } from '../source/inputs.js';
import { runExtraction, RunFailure } from './extract-run.js';
import { createImagePreparer, type ChoosePlan } from './prepare.js';
import { createProgress } from './progress.js';
import { defaultDecoders, imageStageCapacity } from './sizing.js';
import type { ExtractStats } from './tally.js';

export interface ExtractRequest {
  inputs: Inputs;
  /** The cache directory. */
  out: string;
  /** --model as given (undefined: $DINOFEAT_MODEL, then the default pulled model). */
  model?: string;
  /** For a foreign ONNX export without dinofeat metadata. */
  modelOverrides: InfoOverrides;
  buckets: BucketFlags;
  resize: ResizeMode;
  /** A trainer's crops file (--crops), and whether images it lacks fall back to the buckets. */
  crops?: { file: string; fallback: boolean };
  decode: DecodeOptions;
  /** --pool: patches averaged pool×pool on the grid (1: not pooled). */
  pool: number;
  stored: StoredForm;
  batchSize: number;
  device: string;
  threads?: number;
  decoders?: number;
  /** Bytes after which a new shard is started. */
  maxShardBytes: number;
  overwrite: boolean;
  retryFailed: boolean;
  numWorkers?: number;
  workerIndex?: number;
  quiet: boolean;
}

export interface ExtractOutcome {
  stats: ExtractStats;
  out: string;
  /** Bytes in the cache's live shards (every part). */
  shardBytes: number;
}

/** Stops the run after the work in flight on the first SIGINT/SIGTERM; the second leaves at once. */
function listenForStop(): { requested: () => boolean; close: () => void } {
  let requested = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (requested) {
      // Leave now (the journal keeps the cache consistent), by the signal itself: process.exit()
      // would tear down sharp's and ONNX Runtime's threads mid-call and can abort.
      close();
      process.kill(process.pid, signal);
      return;
    }
    requested = true;
    process.stderr.write(`\ndinofeat: ${signal}: finishing the images in flight and closing the shard (again to quit at once)\n`);
  };
  const close = () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return { requested: () => requested, close };
}

/** A note when the cache's parts last ran on another execution provider, whose rounding differs. */
async function otherDeviceNote(state: CacheState, device: string): Promise<string | undefined> {
  const others = [...(await lastDevices(state))].filter((d) => d !== device);
  if (!others.length) return undefined;
  return `note: earlier shards of this cache were made on --device ${others.join(', ')}, this run uses ${device}: ` +
    'features agree to rounding, not bit for bit (dinofeat inspect lists the devices)';
}

/**
 * Images per model call. An int8 model quantises each MatMul's activations with one scale for the
 * whole batch tensor, so an image's features would depend on the images beside it: it gets one
 * image at a time. Per-image scales built in the graph cost 40-60 % at 224-448 px, batch 1 about
 * nothing (docs/precisions.md).
 */
export function modelBatchSize(info: ModelInfo, requested: number): number {
  return info.precision === 'int8' ? 1 : requested;
}

/** What every check before the model runs gives: the model file, its metadata, the run's buckets and crops file. */
export interface CheckedSetup {
  modelPath: string;
  info: ModelInfo;
  buckets: Bucket[];
  crops?: CropsFile;
}

/** Everything that can be checked before the model is started or anything written (extract and its dry run). */
export async function checkSetup(r: ExtractRequest): Promise<CheckedSetup> {
  if (r.inputs.dirs.length === 0 && r.inputs.lists.length === 0) throw new UserError('nothing to extract: pass image directories and/or --list FILE');
  for (const dir of r.inputs.dirs) {
    if (!fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory()) throw new UserError(`input ${dir} is not a directory: pass directories of images, or a list with --list`);
  }
  // Model first: its patch size decides which buckets are valid.
  const modelPath = await resolveModelPath(r.model);
  const info = loadModelInfo(modelPath, r.modelOverrides);
  const buckets = resolveBuckets(r.buckets, info.patchSize);
  const crops = r.crops && await CropsFile.read(r.crops.file, { patch: info.patchSize, dinoScale: r.buckets.dinoScale, fallback: r.crops.fallback });
  checkPoolable([...buckets, ...(crops?.source.buckets ?? [])], info.patchSize, r.pool);
  // A flipped row must say so (the flip column), and that column comes with the flipped copies:
  // refusing is better than a cache whose rows do not say which way they face.
  if (crops && crops.flipped > 0 && !r.stored.flip) {
    throw new UserError(`--crops ${r.crops!.file} has "flip": true for ${crops.flipped} image${crops.flipped === 1 ? '' : 's'}: add --flip, so each row stores the trainer's orientation with flip = true and keeps the other beside it`);
  }
  await resolveBackground(r.decode.background); // a colour sharp cannot parse is a usage error, not one per image
  checkCacheDirWritable(r.out);
  return { modelPath, info, buckets, ...(crops ? { crops } : {}) };
}

/** The image stage's settings of a run. */
export function runSettings(r: ExtractRequest, { buckets, crops }: Pick<CheckedSetup, 'buckets' | 'crops'>): PrepareSettings {
  return {
    buckets, resize: r.resize, dinoScale: r.buckets.dinoScale, decode: r.decode, flipCopies: r.stored.flip === true,
    ...(crops ? { crops: crops.source } : {}),
  };
}

/** Each image's plan: the crops file's (--crops), or dinofeat's rule when there is none. */
export function planOf(crops: CropsFile | undefined, key: string): ChoosePlan | undefined {
  return crops && ((size) => crops.plan(key, size));
}

/** The identity the run's cache will have, from the probed model (hidden size known) and its weights' hash. */
export function runIdentity(r: ExtractRequest, info: ModelInfo, settings: PrepareSettings, weightsSha256: string): CacheIdentity {
  return cacheIdentity({
    model: { ...info, weightsSha256 },
    preprocessing: describePreprocessing(info, settings, r.pool),
    stored: r.stored,
    device: r.device,
  });
}

export async function extract(r: ExtractRequest): Promise<ExtractOutcome> {
  const slot = resolveWorkerSlot({ numWorkers: r.numWorkers, workerIndex: r.workerIndex });
  const partId = slot.count === 1 ? '0' : `${slot.index}_of_${slot.count}`;
  const { modelPath, crops, ...checked } = await checkSetup(r);
  let info = checked.info;

  const cleanups: Array<() => Promise<void>> = [];
  try {
    const model = await startSession(modelPath, { device: r.device, threads: r.threads }, modelPath);
    cleanups.push(() => model.close());
    info = await probeModel(model, info, modelPath);
    const settings = runSettings(r, { buckets: checked.buckets, crops });
    const weightsSha256 = await modelWeightsSha256(modelPath, info);
    const identity = runIdentity(r, info, settings, weightsSha256);

    const cache = await openCacheForWrite(r.out, { partId, identity, overwrite: r.overwrite });
    cleanups.push(() => cache.close());
    if (cache.openNote && !r.quiet) process.stderr.write(`dinofeat: ${cache.openNote}\n`);
    if (!r.quiet) {
      const note = await otherDeviceNote(cache.state, r.device);
      if (note) process.stderr.write(`dinofeat: ${note}\n`);
    }
    // What this run reads and runs, so validate can check the cache without these flags again.
    await recordRun(r.out, partId, { inputs: r.inputs, model: { path: modelPath, weightsSha256 } });
    const onlyKeys = r.retryFailed ? await cache.failedKeys() : undefined;

    const decoders = r.decoders ?? defaultDecoders();
    const preparer = await createImagePreparer(info, settings, imageStageCapacity(decoders));
    cleanups.push(() => preparer.close());
    const sink = new ShardSink({ state: cache.state, partId, format: r.stored.format, maxShardBytes: r.maxShardBytes, meta: shardMetaOf(identity) });
    const stop = listenForStop();
    cleanups.push(async () => stop.close());

    const progress = createProgress({ label: 'extract', quiet: r.quiet });
    let stats: ExtractStats;
    try {
      stats = await runExtraction({
        sources: readInputs(r.inputs), slot, partId, model, info,
        prepare: (bytes, image) => preparer.prepare(bytes, planOf(crops, image.key)),
        state: cache.state, sink, errors: cache.errors, keepRegisters: r.stored.registersKept, pool: r.pool, batchSize: modelBatchSize(info, r.batchSize),
        decodeConcurrency: decoders, onlyKeys, progress, stopRequested: stop.requested,
      });
    } catch (e) {
      progress.stop();
      await sink.abort().catch(() => undefined);
      await cache.errors.save().catch(() => undefined);
      if (!(e instanceof RunFailure)) throw e;
      if (e.cause instanceof UserError) throw e.cause;
      if (typeof e.cause === 'string') throw new UserError(e.cause);
      throw e.cause;
    }
    progress.stop();
    await sink.close();
    const summary = await cache.summarise();
    return { stats, out: r.out, shardBytes: summary.counts.bytes };
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  }
}
