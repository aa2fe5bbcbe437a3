/**
 * inspect: what a shard or cache holds. Without a row selector or a picture, the summary (read
 * from the small columns only); with them, one row, and with a PCA file a picture of its patch
 * features beside the image as the model saw it.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { openReadOnly } from '../cache/open-read-only.js';
import { UserError } from '../core/errors.js';
import { DEFAULT_MAX_PIXELS } from '../image/decode.js';
import { parsePreprocessing } from '../image/preprocessing-record.js';
import { writePcaPicture, type PictureResult, type PictureSource } from './pca-picture.js';
import { describeRow, locateRow, readRowAt, type RowSelector, type RowView } from './row-view.js';
import { summarize, type InspectSummary } from './summary.js';
import type { FeatureRow, ShardMeta } from '../shard/schema.js';

export interface InspectOptions {
  /** Row index across the target's shards (in file order). */
  row?: number;
  key?: string;
  /** Write the PCA picture of the row (default row 0) to this PNG. */
  pca?: string;
  /** Where the source images are (keys are relative to it); default: the working directory. */
  images?: string;
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

