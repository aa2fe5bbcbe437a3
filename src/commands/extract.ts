/**
 * `dinofeat extract`: flags → an ExtractRequest → extract(), then the summary. Exit codes: 0 all
 * good, 1 some images failed, 2 usage or setup error, 130 interrupted (the finished shards are
 * kept; rerun to resume).
 */
import path from 'node:path';
import { EXIT, UserError } from '../core/errors.js';
import { peakMemoryBytes } from '../core/peak-memory.js';
import type { ShardFormat, TensorDtype } from '../shard/schema.js';
import { bucketFlagsOf, type BucketFlagValues, type ResizeMode } from '../image/buckets.js';
import { DEFAULT_MAX_PIXELS, type DecodeMode, type IccMode } from '../image/decode.js';
import { dryRun, type DryRunReport } from '../pipeline/dry-run.js';
import { extract, type ExtractOutcome, type ExtractRequest } from '../pipeline/extract.js';
import { formatDuration } from '../pipeline/progress.js';
import { readOptionsFromFlags, type ReadFlagValues } from '../source/read-options.js';

export interface ExtractOptions extends BucketFlagValues, ReadFlagValues {
  list?: string[];
  out: string;
  model?: string;
  patchSize?: number;
  numRegisters?: number;
  resize: ResizeMode;
  crops?: string;
  cropsFallback?: boolean;
  background: string;
  maxPixels?: number;
  icc: IccMode;
  decode: DecodeMode;
  pool?: number;
  batchSize: number | 'auto';
  device: string;
  threads?: number;
  decoders?: number;
  format: ShardFormat;
  dtype: TensorDtype;
  registers?: boolean;
  flip?: boolean;
  shardSize: number;
  overwrite?: boolean;
  retryFailed?: boolean;
  numWorkers?: number;
  workerIndex?: number;
  quiet?: boolean;
  dryRun?: boolean;
}

/** Three significant figures: 0.734, 12.3, 105 (rates of slow models and fast ones alike, CPU ms an image). */
function threeFigures(value: number): string {
  return value.toFixed(value < 1 ? 3 : value < 10 ? 2 : value < 100 ? 1 : 0);
}

/** The run's summary; --quiet drops the progress output, never this. */
function formatSummary({ stats, out, shardBytes, batch }: ExtractOutcome): string {
  const lines = [
    `dinofeat extract: ${stats.extracted} extracted, ${stats.skipped} already cached, ${stats.failed} failed${stats.replaced ? `, ${stats.replaced} replaced (source changed)` : ''} of ${stats.found} images in ${formatDuration(stats.seconds)} (${threeFigures(stats.extracted / Math.max(stats.seconds, 1e-9))} img/s)`,
  ];
  const buckets = Object.entries(stats.perBucket).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)); // ties by name: the same line every run
  if (buckets.length) lines.push(`  per bucket: ${buckets.map(([b, n]) => `${b}: ${n}`).join(', ')}`);
  lines.push(`  batch: ${batch.size} image${batch.size > 1 ? 's' : ''} a call (${batch.reason})`);
  const failures = Object.entries(stats.failuresByReason).sort((a, b) => b[1] - a[1]);
  if (failures.length) lines.push(`  failures (see ${path.join(out, 'errors.jsonl')}):`, ...failures.map(([r, n]) => `    ${n} × ${r}`));
  const cpuPerImage = stats.extracted ? `, ${threeFigures((stats.cpuSeconds * 1000) / stats.extracted)} ms an image` : '';
  lines.push(`  cache: ${out} (${(shardBytes / 2 ** 20).toFixed(1)} MiB in shards); peak memory ${(peakMemoryBytes() / 2 ** 20).toFixed(0)} MiB; CPU ${stats.cpuSeconds.toFixed(1)} s${cpuPerImage}`);
  return `${lines.join('\n')}\n`;
}

/** Bytes as a person reads them: 812 KiB, 8.1 GiB, 7.6 TiB. */
function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let k = 0;
  while (n >= 1024 && k < units.length - 1) {
    n /= 1024;
    k++;
  }
  return `${n.toFixed(n < 10 && k > 0 ? 1 : 0)} ${units[k]}`;
}

function formatDryRun(r: DryRunReport, out: string): string {
  const failed = Object.values(r.unreadable).reduce((a, b) => a + b, 0);
  const lines = [`dinofeat extract --dry-run: ${r.images} images in ${r.buckets.length} buckets${failed ? `, ${failed} that would fail` : ''}; nothing written`];
  const rows = r.buckets.map((b) => [b.bucket, b.trainer, b.grid, String(b.images), formatBytes(b.rowBytes), formatBytes(b.rowBytes * b.images)]);
  const head = ['dino input', 'bucket', 'grid', 'images', 'per image', 'total'];
  const widths = head.map((h, k) => Math.max(h.length, ...rows.map((row) => row[k]!.length)));
  for (const row of [head, ...rows]) lines.push(`  ${row.map((c, k) => c.padEnd(widths[k]!)).join('  ').trimEnd()}`);
  for (const [reason, n] of Object.entries(r.unreadable).sort((a, b) => b[1] - a[1])) lines.push(`  would fail: ${n} × ${reason}`);
  const form = [
    r.format, r.meta.dtype,
    r.meta.registersKept ? `${r.meta.numRegisters} registers` : 'no registers',
    r.meta.flip ? 'flipped copies' : undefined,
    r.pool > 1 ? `pool ${r.pool}` : undefined,
    `hidden ${r.meta.hiddenSize}`,
  ].filter(Boolean).join(', ');
  lines.push(`  cache: about ${formatBytes(r.estimate.bytes)} (${r.estimate.bytes} bytes) in ${r.estimate.shards} shard${r.estimate.shards === 1 ? '' : 's'} under ${out} (${form})`);
  if (r.probe) {
    lines.push(`  time: about ${formatDuration(r.seconds)} of model time on ${r.probe.device} (probe: ${r.probe.secondsPerImage.toPrecision(3)} s per image at ${r.probe.bucket}, batch ${r.probe.batch}${r.meta.flip ? '; twice for the flipped copies' : ''}); decoding runs beside it, so this is the run's time when the model is the slow stage`);
  }
  return `${lines.join('\n')}\n`;
}

export async function runExtract(inputs: string[], o: ExtractOptions): Promise<number> {
  if (o.cropsFallback && o.crops === undefined) throw new UserError('--crops-fallback needs --crops FILE: it says what happens to images that file lacks');
  const request: ExtractRequest = {
    inputs: { paths: inputs, lists: o.list ?? [], read: readOptionsFromFlags(o) },
    out: o.out,
    model: o.model,
    modelOverrides: { patchSize: o.patchSize, registers: o.numRegisters },
    buckets: bucketFlagsOf(o),
    resize: o.resize,
    crops: o.crops === undefined ? undefined : { file: o.crops, fallback: o.cropsFallback === true },
    decode: { maxPixels: o.maxPixels ?? DEFAULT_MAX_PIXELS, background: o.background, icc: o.icc, ...(o.decode === 'fast' ? { mode: 'fast' as const } : {}) },
    pool: o.pool ?? 1,
    stored: { format: o.format, dtype: o.dtype, registersKept: o.registers === true, flip: o.flip === true },
    batchSize: o.batchSize,
    device: o.device,
    threads: o.threads,
    decoders: o.decoders,
    maxShardBytes: o.shardSize * 2 ** 20,
    overwrite: o.overwrite === true,
    retryFailed: o.retryFailed === true,
    numWorkers: o.numWorkers,
    workerIndex: o.workerIndex,
    quiet: o.quiet === true,
  };
  if (o.dryRun) {
    process.stdout.write(formatDryRun(await dryRun(request), o.out));
    return EXIT.ok;
  }
  const outcome = await extract(request);
  process.stdout.write(formatSummary(outcome));
  if (outcome.stats.stopped) {
    process.stderr.write(`dinofeat: interrupted; finished shards are kept. Run the same command again to resume.\n`);
    return EXIT.interrupted;
  }
  return outcome.stats.failed > 0 ? EXIT.imagesFailed : EXIT.ok;
}
