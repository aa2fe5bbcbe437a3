/**
 * `dinofeat extract`: checks every flag and the model before touching the cache, then runs the
 * staged pipeline and prints the summary. Exit codes: 0 all good, 1 some images failed, 2 usage
 * or setup error, 130 interrupted (the finished shards are kept; rerun to resume).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { EXIT, UserError } from '../core/errors.js';
import { clearCache, identityMismatch, readCacheConfig, writeCacheConfig, type CacheIdentity } from '../cache/cache-config.js';
import { ErrorsLog, readErrors } from '../cache/errors-log.js';
import { acquireLock } from '../cache/lock.js';
import { writeManifest } from '../cache/manifest-summary.js';
import { CacheState } from '../cache/manifest.js';
import { removeKeys } from '../cache/remove-keys.js';
import type { ShardFormat, TensorDtype } from '../cache/schema.js';
import { ShardSink } from '../cache/shard-sink.js';
import { resolveBuckets, type ResizeMode } from '../image/buckets.js';
import { DEFAULT_MAX_PIXELS, resolveBackground, type IccMode } from '../image/decode.js';
import { startSession } from '../model/devices.js';
import type { ModelInfo } from '../model/info.js';
import { loadModelInfo } from '../model/load-info.js';
import { probeModel } from '../model/probe.js';
import { resolveModelPath } from '../model/resolve.js';
import { runExtraction, RunFailure, type ExtractStats } from '../pipeline/extract-run.js';
import { createImagePreparer, describePreprocessing } from '../pipeline/prepare.js';
import { defaultDecoders, imageStageCapacity } from '../pipeline/capacity.js';
import { createProgress, formatDuration } from '../pipeline/progress.js';
import { readList } from '../source/list.js';
import { resolveWorkerSlot } from '../source/partition.js';
import type { SourceItem } from '../source/types.js';
import { walkDirectory } from '../source/walk.js';
import { DINOFEAT_VERSION } from '../core/version.js';
import { sha256File } from '../core/file-hash.js';
import { peakMemoryBytes } from '../core/peak-memory.js';
import { parseShardName } from '../cache/layout.js';

export interface ExtractOptions {
  list?: string[];
  out: string;
  model?: string;
  patchSize?: number;
  numRegisters?: number;
  bucket?: string[];
  buckets?: string;
  bucketArea?: number;
  bucketStep?: number;
  bucketMin?: number;
  bucketMax?: number;
  dinoScale: number;
  resize: ResizeMode;
  background: string;
  maxPixels?: number;
  icc: IccMode;
  batchSize: number;
  device: string;
  threads?: number;
  decoders?: number;
  format: ShardFormat;
  dtype: TensorDtype;
  registers?: boolean;
  shardSize: number;
  overwrite?: boolean;
  retryFailed?: boolean;
  numWorkers?: number;
  workerIndex?: number;
  quiet?: boolean;
}

async function* allSources(inputs: readonly string[], lists: readonly string[]): AsyncGenerator<SourceItem> {
  for (const dir of inputs) yield* walkDirectory(dir);
  for (const list of lists) yield* readList(list);
}

function statOrUndefined(p: string): fs.Stats | undefined {
  try {
    return fs.statSync(p);
  } catch {
    return undefined; // missing, or under a file (ENOTDIR): judged at the nearest existing ancestor
  }
}

/**
 * The cache directory must be a writable directory, or creatable under one. Only checked here:
 * nothing is created until the model has passed its checks, so a setup error writes nothing.
 */
function checkOutDir(out: string): void {
  const st = statOrUndefined(out);
  if (st && !st.isDirectory()) throw new UserError(`--out ${out} is a file: pass a directory for the cache`);
  let dir = path.resolve(out);
  let found = st;
  while (!found) {
    dir = path.dirname(dir);
    found = statOrUndefined(dir);
  }
  if (!found.isDirectory()) throw new UserError(`cannot create --out ${out}: ${dir} is a file, not a directory`);
  try {
    fs.accessSync(dir, fs.constants.W_OK);
  } catch {
    const where = st ? `--out ${out}` : `${dir} (to create --out ${out} in it)`;
    throw new UserError(`cannot write to ${where}: choose a writable directory`);
  }
}

function fingerprintOf(info: ModelInfo, preprocessing: object, modelFileHash: string): string {
  const identity = { dinofeat: DINOFEAT_VERSION, model: { ...info, weights: info.weightsSha256 ?? modelFileHash }, preprocessing };
  return createHash('sha256').update(JSON.stringify(identity)).digest('hex').slice(0, 16);
}

/** Three significant figures: 0.734, 12.3, 105 (slow models and fast ones alike). */
function formatRate(rate: number): string {
  return rate.toFixed(rate < 1 ? 3 : rate < 10 ? 2 : rate < 100 ? 1 : 0);
}

/** The run's summary; --quiet drops the progress output, never this. */
function printSummary(stats: ExtractStats, out: string, bytes: number): void {
  const lines = [
    `dinofeat extract: ${stats.extracted} extracted, ${stats.skipped} already cached, ${stats.failed} failed${stats.replaced ? `, ${stats.replaced} replaced (source changed)` : ''} of ${stats.found} images in ${formatDuration(stats.seconds)} (${formatRate(stats.extracted / Math.max(stats.seconds, 1e-9))} img/s)`,
  ];
  const buckets = Object.entries(stats.perBucket).sort((a, b) => b[1] - a[1]);
  if (buckets.length) lines.push(`  per bucket: ${buckets.map(([b, n]) => `${b}: ${n}`).join(', ')}`);
  const failures = Object.entries(stats.failuresByReason).sort((a, b) => b[1] - a[1]);
  if (failures.length) lines.push(`  failures (see ${path.join(out, 'errors.jsonl')}):`, ...failures.map(([r, n]) => `    ${n} × ${r}`));
  lines.push(`  cache: ${out} (${(bytes / 2 ** 20).toFixed(1)} MiB in shards); peak memory ${(peakMemoryBytes() / 2 ** 20).toFixed(0)} MiB`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

export async function runExtract(inputs: string[], o: ExtractOptions): Promise<number> {
  const lists = o.list ?? [];
  if (inputs.length === 0 && lists.length === 0) throw new UserError('nothing to extract: pass image directories and/or --list FILE');
  for (const dir of inputs) {
    if (!fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory()) throw new UserError(`input ${dir} is not a directory: pass directories of images, or a list with --list`);
  }
  const slot = resolveWorkerSlot({ numWorkers: o.numWorkers, workerIndex: o.workerIndex });
  const partId = slot.count === 1 ? '0' : `${slot.index}_of_${slot.count}`;

  // Model first: its patch size decides which buckets are valid.
  const modelPath = await resolveModelPath(o.model);
  let info = loadModelInfo(modelPath, { patchSize: o.patchSize, registers: o.numRegisters });
  const buckets = resolveBuckets({
    bucket: o.bucket, buckets: o.buckets, dinoScale: o.dinoScale,
    auto: { area: o.bucketArea, step: o.bucketStep, minSide: o.bucketMin, maxSide: o.bucketMax },
  }, info.patchSize);
  await resolveBackground(o.background); // a colour sharp cannot parse is a usage error, not one per image
  checkOutDir(o.out);

  const model = await startSession(modelPath, { device: o.device, threads: o.threads }, modelPath);
  const cleanups: Array<() => Promise<void>> = [() => model.close()];
  try {
    info = await probeModel(model, info, modelPath);
    const settings = {
      buckets, resize: o.resize, dinoScale: o.dinoScale,
      decode: { maxPixels: o.maxPixels ?? DEFAULT_MAX_PIXELS, background: o.background, icc: o.icc },
    };
    const preprocessing = describePreprocessing(info, settings);
    const identity: CacheIdentity = {
      dinofeatVersion: DINOFEAT_VERSION,
      fingerprint: fingerprintOf(info, preprocessing, info.weightsSha256 ? '' : await sha256File(modelPath)),
      model: info,
      preprocessing,
      format: o.format,
      dtype: o.dtype,
      registersKept: o.registers === true,
    };

    const lock = await acquireLock(o.out, partId); // the first write: creates the cache directory
    cleanups.push(() => lock.release());
    if (lock.note && !o.quiet) process.stderr.write(`dinofeat: ${lock.note}\n`);
    const existing = await readCacheConfig(o.out);
    const mismatch = existing && identityMismatch(existing, identity);
    if (mismatch && !o.overwrite) {
      throw new UserError(`cache ${o.out} was made with other settings (${mismatch}); use another --out, or --overwrite to clear it`);
    }
    if (mismatch) await clearCache(o.out);
    if (!existing || mismatch) await writeCacheConfig(o.out, identity);

    const state = await CacheState.open(o.out, partId);
    // A crash between writing a replacement row and removing the old one can leave a key twice:
    // drop both copies, the image is extracted again below.
    if (state.duplicates.length) await removeKeys(state, partId, state.duplicates.map((d) => d.key));
    // Shards of this part deleted by hand: journal them as gone, so the manifest stops listing them
    // (their images are simply extracted again).
    for (const file of state.missing) {
      if (parseShardName(path.posix.basename(file))?.partId === partId) await state.replace(partId, { replace: file, by: null, time: new Date().toISOString() });
    }
    const errors = await ErrorsLog.open(o.out, partId);
    const onlyKeys = o.retryFailed ? new Set((await readErrors(o.out, state.keyToEntry)).map((e) => e.key)) : undefined;

    const decoders = o.decoders ?? defaultDecoders();
    const preparer = await createImagePreparer(info, settings, imageStageCapacity(decoders));
    cleanups.push(() => preparer.close());
    const sink = new ShardSink({
      state, partId, format: o.format, maxShardBytes: o.shardSize * 2 ** 20,
      meta: {
        dinofeatVersion: DINOFEAT_VERSION, dtype: o.dtype, hiddenSize: info.hiddenSize, numRegisters: info.numRegisters,
        registersKept: o.registers === true, model: info, preprocessing, fingerprint: identity.fingerprint,
      },
    });

    let stopRequested = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopRequested) {
        // Second signal: leave now (the journal keeps the cache consistent), by the signal itself.
        // process.exit() would tear down sharp's and ONNX Runtime's threads mid-call and can abort.
        stopListening();
        process.kill(process.pid, signal);
        return;
      }
      stopRequested = true;
      process.stderr.write(`\ndinofeat: ${signal}: finishing the images in flight and closing the shard (again to quit at once)\n`);
    };
    const stopListening = () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    cleanups.push(async () => stopListening());

    const progress = createProgress({ label: 'extract', quiet: o.quiet });
    let stats: ExtractStats;
    try {
      stats = await runExtraction({
        sources: allSources(inputs, lists), slot, partId, model, info,
        prepare: (bytes) => preparer.prepare(bytes),
        state, sink, errors, keepRegisters: o.registers === true, batchSize: o.batchSize,
        decodeConcurrency: decoders, onlyKeys, progress, stopRequested: () => stopRequested,
      });
    } catch (e) {
      progress.stop();
      await sink.abort().catch(() => undefined);
      await errors.save().catch(() => undefined);
      if (e instanceof RunFailure) {
        const cause = e.cause;
        if (cause instanceof UserError) throw cause;
        if (typeof cause === 'string') throw new UserError(cause);
        throw cause;
      }
      throw e;
    }
    progress.stop();
    await sink.close();
    await errors.save();
    const summary = await writeManifest(o.out, state);
    printSummary(stats, o.out, summary.counts.bytes);
    if (stats.stopped) {
      process.stderr.write(`dinofeat: interrupted; finished shards are kept. Run the same command again to resume.\n`);
      return EXIT.interrupted;
    }
    return stats.failed > 0 ? EXIT.imagesFailed : EXIT.ok;
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  }
}
