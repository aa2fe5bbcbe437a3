/**
 * `dinofeat inspect <shard | cache-dir>`: what a shard or cache holds. Without --row / --key /
 * --pca, the summary (read from the small columns only); with them, one row, and with --pca a
 * picture of its patch features beside the image as the model saw it.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { openReadOnly } from '../cache/open-read-only.js';
import { EXIT, UserError } from '../core/errors.js';
import { DEFAULT_MAX_PIXELS } from '../image/decode.js';
import { parsePreprocessing } from '../image/preprocessing-record.js';
import { writePcaPicture, type PictureResult, type PictureSource } from '../inspect/pca-picture.js';
import { describeRow, formatRow, locateRow, readRowAt, type RowSelector, type RowView } from '../inspect/row-view.js';
import { formatSummary, summarize, type InspectSummary } from '../inspect/summary.js';
import type { FeatureRow, ShardMeta } from '../shard/schema.js';

export interface InspectOptions {
  /** Row index across the target's shards (in file order). */
  row?: number;
  key?: string;
  /** Write the PCA picture of the row (default row 0) to this PNG. */
  pca?: string;
  /** Where the source images are (keys are relative to it); default: the working directory. */
  images?: string;
  json?: boolean;
}

export interface InspectReport {
  summary?: InspectSummary;
  row?: RowView;
  pca?: PictureResult;
  /** Where the source image was looked for, when it was not found. */
  imageNotFound?: string;
}

/** The row's image, if it is where --images (or the working directory) says. */
function findSource(row: FeatureRow, meta: ShardMeta, imagesDir: string | undefined, warnings: string[]): PictureSource | string {
  const file = path.resolve(imagesDir ?? '.', row.key);
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch {
    return file;
  }
  if (createHash('sha256').update(bytes).digest('hex') !== row.sha256) {
    warnings.push(`${file} changed since the row was extracted (sha256 differs): the image panels may not match the features`);
  }
  const parsed = parsePreprocessing(meta.preprocessing);
  const background = 'value' in parsed ? parsed.value.background : '#ffffff';
  const icc = 'value' in parsed ? parsed.value.icc : 'ignore';
  return { bytes, file, decode: { maxPixels: Math.max(DEFAULT_MAX_PIXELS, row.width * row.height), background, icc } };
}

export async function inspect(target: string, o: InspectOptions): Promise<InspectReport> {
  if (o.row !== undefined && o.key !== undefined) throw new UserError('use either --row or --key, not both');
  const t = await openReadOnly(target);
  if (t.journalError) throw new UserError(`${t.journalError} (dinofeat validate ${target} checks the rest)`);
  if (t.shards.length === 0) throw new UserError(`${target} holds no shards yet: run dinofeat extract first`);
  if (o.row === undefined && o.key === undefined && !o.pca) return { summary: await summarize(t, target) };

  const selector: RowSelector = o.key !== undefined ? { key: o.key } : { row: o.row ?? 0 };
  const loc = await locateRow(t, selector, target);
  const { row, meta } = await readRowAt(loc);
  const report: InspectReport = { row: describeRow(loc, row, meta) };
  if (o.pca) {
    const warnings: string[] = [];
    const source = findSource(row, meta, o.images, warnings);
    if (typeof source === 'string') report.imageNotFound = source;
    const picture = await writePcaPicture(o.pca, row, meta, typeof source === 'string' ? undefined : source);
    report.pca = { ...picture, warnings: [...warnings, ...picture.warnings] };
  }
  return report;
}

function formatPicture(r: InspectReport): string {
  const p = r.pca!;
  const lines = [
    `PCA picture: ${p.file} (${p.width}x${p.height}): ${p.withImage ? 'model input | patch features (PCA 1-3 as RGB) | original with the crop box' : 'patch features (PCA 1-3 as RGB)'}`,
    `  variance explained by PCA 1-3: ${p.explained.map((e) => `${(100 * e).toFixed(1)}%`).join(', ')}`,
  ];
  if (r.imageNotFound) lines.push(`  source image not found at ${r.imageNotFound}: pass --images DIR (the folder extract read) to draw it`);
  for (const w of p.warnings) lines.push(`  warning: ${w}`);
  return `${lines.join('\n')}\n`;
}

/** Prints what inspect found (text, or JSON with --json) to `out`; 0, or a UserError. */
export async function runInspect(target: string, o: InspectOptions, out: Pick<NodeJS.WritableStream, 'write'> = process.stdout): Promise<number> {
  const report = await inspect(target, o);
  if (o.json) {
    out.write(`${JSON.stringify(report, null, 2)}\n`);
    return EXIT.ok;
  }
  if (report.summary) out.write(formatSummary(report.summary));
  if (report.row) out.write(formatRow(report.row));
  if (report.pca) out.write(formatPicture(report));
  return EXIT.ok;
}
