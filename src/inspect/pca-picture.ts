/**
 * inspect --pca: one PNG with, side by side, the input as the model saw it (the crop box of the
 * upright image resized to the bucket), the PCA picture of the row's patch features (first three
 * principal components as red, green, blue; each patch a square block, so it lines up with the
 * input beside it), and the whole original with the crop box drawn. Without the source image only
 * the PCA panel is drawn. Small buckets are enlarged by a whole factor so patches stay visible.
 */
import sharp, { type OverlayOptions } from 'sharp';
import { UserError } from '../core/errors.js';
import type { FeatureRow, ShardMeta } from '../shard/schema.js';
import type { Size } from '../image/buckets.js';
import { decodeRgb, readHeader, type DecodeOptions } from '../image/decode.js';
import { parsePreprocessing } from '../image/preprocessing-record.js';
import { principalComponents, scoresToRgb } from './pca.js';

/** Panels are enlarged (by a whole factor) to at least this height. */
const MIN_PANEL_HEIGHT = 256;
export const PANEL_GAP = 8;
const BACKGROUND = { r: 32, g: 32, b: 32 };
const BOX_COLOUR = '#ff2050';

export interface Panel {
  name: 'input' | 'pca' | 'original';
  left: number;
  width: number;
  height: number;
}

export interface PictureLayout {
  /** Whole enlargement factor of the bucket-sized panels. */
  scale: number;
  panels: Panel[];
  width: number;
  height: number;
}

/** Where each panel goes; `original` (upright size) only when the source image was found. */
export function pcaLayout(bucket: Size, original?: Size): PictureLayout {
  const scale = Math.max(1, Math.ceil(MIN_PANEL_HEIGHT / bucket.height));
  const height = bucket.height * scale;
  const width = bucket.width * scale;
  const names: Panel['name'][] = original ? ['input', 'pca', 'original'] : ['pca'];
  const panels: Panel[] = [];
  let left = 0;
  for (const name of names) {
    const w = name === 'original' ? Math.max(1, Math.round((original!.width * height) / original!.height)) : width;
    panels.push({ name, left, width: w, height });
    left += w + PANEL_GAP;
  }
  return { scale, panels, width: left - PANEL_GAP, height };
}

/** The PCA panel's pixels: patch (i, j) is a block of `block` x `block` pixels of its colour. */
export function pcaPanelPixels(row: Pick<FeatureRow, 'patches' | 'gridH' | 'gridW'>, hidden: number, block: number): { rgb: Buffer; explained: number[] } {
  const n = row.gridH * row.gridW;
  const pca = principalComponents(row.patches, n, hidden, 3);
  const colours = scoresToRgb(pca, n);
  const w = row.gridW * block;
  const rgb = Buffer.alloc(w * row.gridH * block * 3);
  for (let y = 0; y < row.gridH * block; y++) {
    for (let x = 0; x < w; x++) {
      const patch = Math.floor(y / block) * row.gridW + Math.floor(x / block);
      rgb.set(colours.subarray(patch * 3, patch * 3 + 3), (y * w + x) * 3);
    }
  }
  const explained = pca.variances.map((v) => (pca.totalVariance > 0 ? v / pca.totalVariance : 0));
  return { rgb, explained };
}

export interface PictureSource {
  bytes: Buffer;
  /** For messages. */
  file: string;
  decode: DecodeOptions;
}

export interface PictureResult {
  file: string;
  width: number;
  height: number;
  withImage: boolean;
  /** Fraction of the patch features' variance along each of the three components. */
  explained: number[];
  warnings: string[];
}

const raw = (width: number, height: number) => ({ raw: { width, height, channels: 3 as const } });

export async function writePcaPicture(out: string, row: FeatureRow, meta: ShardMeta, source?: PictureSource): Promise<PictureResult> {
  const warnings: string[] = [];
  const bucket = { width: row.bucketWidth, height: row.bucketHeight };
  const original = { width: row.width, height: row.height };
  const layout = pcaLayout(bucket, source ? original : undefined);
  // A pooled cache's token spans pool×pool patches.
  const recorded = parsePreprocessing(meta.preprocessing);
  const cell = meta.model.patchSize * ('value' in recorded ? recorded.value.pool : 1);
  const block = cell * layout.scale;
  if (row.gridW * block !== layout.panels.find((p) => p.name === 'pca')!.width || row.gridH * block !== layout.height) {
    throw new Error(`row ${row.key}: grid ${row.gridH}x${row.gridW} of ${cell}px cells does not cover bucket ${bucket.width}x${bucket.height}`);
  }
  const { rgb, explained } = pcaPanelPixels(row, meta.hiddenSize, block);
  const layers: OverlayOptions[] = [];
  for (const panel of layout.panels) {
    if (panel.name === 'pca') {
      layers.push({ input: rgb, ...raw(panel.width, panel.height), left: panel.left, top: 0 });
      continue;
    }
    const header = await readHeader(source!.bytes, source!.decode);
    if (header.width !== row.width || header.height !== row.height) {
      warnings.push(`${source!.file} is ${header.width}x${header.height} upright, the row says ${row.width}x${row.height}: not the image this row was made from`);
    }
    if (panel.name === 'input') {
      const crop = { x: row.cropX, y: row.cropY, w: row.cropW, h: row.cropH };
      const seen = await decodeRgb(source!.bytes, crop, header, source!.decode);
      const atBucket = await sharp(seen.data, raw(seen.width, seen.height)).resize(bucket.width, bucket.height, { fit: 'fill', kernel: 'linear' }).raw().toBuffer();
      const enlarged = await sharp(atBucket, raw(bucket.width, bucket.height)).resize(panel.width, panel.height, { fit: 'fill', kernel: 'nearest' }).raw().toBuffer();
      layers.push({ input: enlarged, ...raw(panel.width, panel.height), left: panel.left, top: 0 });
    } else {
      const whole = await decodeRgb(source!.bytes, { x: 0, y: 0, w: header.width, h: header.height }, header, source!.decode);
      const small = await sharp(whole.data, raw(whole.width, whole.height)).resize(panel.width, panel.height, { fit: 'fill', kernel: 'linear' }).raw().toBuffer();
      const s = panel.height / row.height;
      const stroke = Math.max(2, Math.round(panel.height / 128));
      const box = `<svg width="${panel.width}" height="${panel.height}" xmlns="http://www.w3.org/2000/svg"><rect x="${row.cropX * s + stroke / 2}" y="${row.cropY * s + stroke / 2}" width="${Math.max(1, row.cropW * s - stroke)}" height="${Math.max(1, row.cropH * s - stroke)}" fill="none" stroke="${BOX_COLOUR}" stroke-width="${stroke}"/></svg>`;
      const framed = await sharp(small, raw(panel.width, panel.height)).composite([{ input: Buffer.from(box), left: 0, top: 0 }]).removeAlpha().raw().toBuffer();
      layers.push({ input: framed, ...raw(panel.width, panel.height), left: panel.left, top: 0 });
    }
  }
  try {
    await sharp({ create: { width: layout.width, height: layout.height, channels: 3, background: BACKGROUND } }).composite(layers).png().toFile(out);
  } catch (e) {
    throw new UserError(`cannot write --pca ${out} (${(e as Error).message.split('\n')[0]}): pass a writable .png path`);
  }
  return { file: out, width: layout.width, height: layout.height, withImage: source !== undefined, explained, warnings };
}
