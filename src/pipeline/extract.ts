/**
 * `extract` end to end: checks every setting and the model before touching the cache, opens the
 * cache for writing (cache/open.ts), builds the stages and runs them (extract-run.ts), and leaves
 * the cache summarised. What it returns is what the command prints.
 */
import { UserError } from '../core/errors.js';
import { onStopSignal } from '../core/stop-signals.js';
import { cacheIdentity, shardMetaOf, type CacheIdentity, type StoredForm } from '../cache/identity.js';
import type { CacheState } from '../cache/manifest.js';
import { checkCacheDirWritable, openCacheForWrite } from '../cache/open.js';
import { recordRun } from '../cache/run-record.js';
import { lastDevices } from '../cache/shard-devices.js';
import { ShardSink } from '../cache/shard-sink.js';
import { RowEncoderThread } from '../shard/row-encoder.js';
import { checkPoolable, resolveBuckets, type Bucket, type BucketFlags, type ResizeMode } from '../image/buckets.js';
import { CropsFile } from '../image/crops-file.js';
import { resolveBackground, type DecodeOptions } from '../image/decode.js';
import type { PrepareSettings } from '../image/prepare-settings.js';
import { describePreprocessing } from '../image/preprocessing-record.js';
import { chooseDevice, sessionDevice, type DeviceChoice } from '../model/device-choice.js';
import { startSession } from '../model/devices.js';
import { tokenCount } from '../model/contract.js';
import type { ModelInfo } from '../model/info.js';
import { loadModelInfo, type InfoOverrides } from '../model/load-info.js';
import { probeModel } from '../model/probe.js';
import { modelWeightsSha256 } from '../model/weights-hash.js';
import { resolveModelPath } from '../store/resolve.js';
import { resolveWorkerSlot } from '../source/partition.js';
import { countAhead } from '../source/count.js';
import { checkInputPaths, readInputs, type Inputs } from '../source/inputs.js';
import type { TarReading } from '../source/tar.js';
import { runExtraction, RunFailure } from './extract-run.js';
import { createImagePreparer, type ChoosePlan } from './prepare.js';
import { createProgress } from './progress.js';
import { autoBatchSize, defaultDecoders, imageStageCapacity } from './sizing.js';
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
  /** Images per model call, or 'auto': sized from the provider's token budget (sizing.ts). */
  batchSize: number | 'auto';
  /** --device as given: a provider, optionally with a card (device-choice.ts). */
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
  batch: BatchChoice;
}

/** Images per model call, and why: the summary shows it. */
export interface BatchChoice {
  size: number;
  reason: string;
}

/** Stops the run after the work in flight on the first SIGINT/SIGTERM; the second leaves at once. */
function listenForStop(): { requested: () => boolean; close: () => void } {
  let requested = false;
  const close = onStopSignal(['SIGINT', 'SIGTERM'], (signal) => {
    if (requested) {
      // Leave now (the journal keeps the cache consistent), by the signal itself: process.exit()
      // would tear down sharp's and ONNX Runtime's threads mid-call and can abort.
      close();
      process.kill(process.pid, signal);
      return;
    }
    requested = true;
    process.stderr.write(`\ndinofeat: ${signal}: finishing the images in flight and closing the shard (again to quit at once)\n`);
  });
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
 * nothing (docs/precisions.md). Otherwise an explicit --batch-size wins; auto fits the run's
 * largest bucket into the provider's token budget. The batch does not change features, so it is
 * not in the fingerprint.
 */
export function modelBatchSize(info: ModelInfo, requested: number | 'auto', provider: string, buckets: readonly Bucket[]): BatchChoice {
  if (info.precision === 'int8') return { size: 1, reason: 'int8 model: one image at a time' };
  if (requested !== 'auto') return { size: requested, reason: '--batch-size' };
  const tokens = Math.max(...buckets.map((b) => tokenCount(info, Math.floor(b.height / info.patchSize), Math.floor(b.width / info.patchSize))));
  const auto = autoBatchSize(provider, tokens);
  return { size: auto.size, reason: `auto: ${auto.budget} tokens a call on ${provider}, ${tokens} an image` };
}

/** What every check before the model runs gives: the model file, its metadata, the run's buckets and crops file, the device. */
export interface CheckedSetup {
  modelPath: string;
  info: ModelInfo;
  buckets: Bucket[];
  crops?: CropsFile;
  device: DeviceChoice;
}

/** Everything that can be checked before the model is started or anything written (extract and its dry run). */
export async function checkSetup(r: ExtractRequest): Promise<CheckedSetup> {
  checkInputPaths(r.inputs);
  const device = chooseDevice(r.device);
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
  if (r.stored.flip && info.layers?.length) {
    throw new UserError(`--flip with a model that outputs intermediate layers (${info.layers.join(',')}) is not supported: flipped copies of the layers are not stored; extract without --flip, or with a model converted without --layers`);
  }
  return { modelPath, info, buckets, device, ...(crops ? { crops } : {}) };
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
export function runIdentity(r: ExtractRequest, info: ModelInfo, settings: PrepareSettings, weightsSha256: string, provider: string): CacheIdentity {
  return cacheIdentity({
    model: { ...info, weightsSha256 },
    preprocessing: describePreprocessing(info, settings, r.pool),
    stored: r.stored,
    device: provider, // the card does not change the features
  });
}

export async function extract(r: ExtractRequest): Promise<ExtractOutcome> {
  const slot = resolveWorkerSlot({ numWorkers: r.numWorkers, workerIndex: r.workerIndex });
  const partId = slot.count === 1 ? '0' : `${slot.index}_of_${slot.count}`;
  const { modelPath, crops, device, ...checked } = await checkSetup(r);
  const { buckets } = checked;
  let info = checked.info;

  const cleanups: Array<() => Promise<void>> = [];
  try {
    const model = await startSession(modelPath, { ...sessionDevice(device), threads: r.threads }, modelPath);
    cleanups.push(() => model.close());
    info = await probeModel(model, info, modelPath);
    const settings = runSettings(r, { buckets: checked.buckets, crops });
    const weightsSha256 = await modelWeightsSha256(modelPath, info);
    const identity = runIdentity(r, info, settings, weightsSha256, device.provider);

    const cache = await openCacheForWrite(r.out, { partId, identity, overwrite: r.overwrite });
    cleanups.push(() => cache.close());
    if (cache.openNote && !r.quiet) process.stderr.write(`dinofeat: ${cache.openNote}\n`);
    if (!r.quiet) {
      const note = await otherDeviceNote(cache.state, device.provider);
      if (note) process.stderr.write(`dinofeat: ${note}\n`);
    }
    // What this run reads and runs, so validate can check the cache without these flags again.
    await recordRun(r.out, partId, { inputs: r.inputs, model: { path: modelPath, weightsSha256 } });
    const onlyKeys = r.retryFailed ? await cache.failedKeys() : undefined;

    const batch = modelBatchSize(info, r.batchSize, device.provider, buckets);
    const decoders = r.decoders ?? defaultDecoders();
    const preparer = await createImagePreparer(info, settings, imageStageCapacity(decoders));
    cleanups.push(() => preparer.close());
    const rowEncoder = new RowEncoderThread();
    cleanups.push(() => rowEncoder.close());
    const sink = new ShardSink({
      state: cache.state, partId, format: r.stored.format, maxShardBytes: r.maxShardBytes, meta: shardMetaOf(identity),
      encode: (rows, shape) => rowEncoder.encode(rows, shape),
    });
    const stop = listenForStop();
    cleanups.push(async () => stop.close());

    const progress = createProgress({ label: 'extract', quiet: r.quiet });
    const tarReads: TarReading[] = [];
    progress.tarBytesRead(() => tarReads.reduce((n, t) => n + t.bytesRead(), 0));
    // The total, ahead of extraction (not for --retry-failed: its few keys are found as read).
    let counting = !r.quiet && !onlyKeys;
    cleanups.push(async () => void (counting = false));
    if (counting) void countAhead(r.inputs, slot, (c) => progress.ahead(c), () => !counting).catch(() => undefined);
    let stats: ExtractStats;
    try {
      stats = await runExtraction({
        sources: readInputs(r.inputs, { slot, onlyKeys, onContainerRead: (key) => cache.errors.resolve(key), onTar: (_, reading) => tarReads.push(reading) }), partId, model, info,
        prepare: (bytes, image, hash) => preparer.prepare(bytes, planOf(crops, image.key), hash),
        recycle: (plane) => preparer.recycle(plane),
        state: cache.state, sink, errors: cache.errors, keepRegisters: r.stored.registersKept, pool: r.pool, batchSize: batch.size,
        // An image with its flipped copy (--flip) holds two tensors.
        imageBytes: (r.stored.flip ? 2 : 1) * Math.max(...buckets.map((b) => 3 * b.width * b.height * Float32Array.BYTES_PER_ELEMENT)),
        decodeConcurrency: decoders, progress, stopRequested: stop.requested,
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
    return { stats, out: r.out, shardBytes: summary.counts.bytes, batch };
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  }
}
