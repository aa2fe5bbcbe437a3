/**
 * dinofeat's crops file: JSON Lines, one object per image with the shard's own column names,
 * `{"key", "bucket_width", "bucket_height", "crop_x", "crop_y", "crop_w", "crop_h", "flip"?}`. The
 * bucket is the trainer's (its input size, before --dino-scale), the crop box is in upright source
 * pixels. `extract --crops` reads it and `dinofeat crops` writes it, both through this module, so the
 * two cannot drift apart.
 */
import { UserError } from '../core/errors.js';
import type { CropBox, Size } from './buckets.js';

/** One image's line. */
export interface CropLine {
  key: string;
  bucket: Size;
  crop: CropBox;
  flip?: boolean;
}

const FIELDS = ['bucket_width', 'bucket_height', 'crop_x', 'crop_y', 'crop_w', 'crop_h'] as const;

/** The line as written: keys in the shard's column order, flip only when the image is mirrored. */
export function formatCropLine(l: CropLine): string {
  return JSON.stringify({
    key: l.key, bucket_width: l.bucket.width, bucket_height: l.bucket.height,
    crop_x: l.crop.x, crop_y: l.crop.y, crop_w: l.crop.w, crop_h: l.crop.h,
    ...(l.flip ? { flip: true } : {}),
  });
}

/** Every line of `text`; a line that is not a crop line is a UserError naming `where` and the line. */
export function parseCropLines(text: string, where: string): Map<string, CropLine> {
  const out = new Map<string, CropLine>();
  const lineOf = new Map<string, number>();
  text.split('\n').forEach((raw, i) => {
    const n = i + 1;
    if (!raw.trim()) return;
    let v: unknown;
    try {
      v = JSON.parse(raw);
    } catch {
      throw new UserError(`${where} line ${n} is not JSON: write one object per line, e.g. {"key": "a.jpg", "bucket_width": 832, "bucket_height": 1216, "crop_x": 0, "crop_y": 16, "crop_w": 800, "crop_h": 1169}`);
    }
    const o = (v ?? {}) as Record<string, unknown>;
    if (typeof o.key !== 'string' || !o.key) throw new UserError(`${where} line ${n}: "key" must be the image's key (its path relative to the input folder)`);
    const bad = FIELDS.filter((f) => !Number.isInteger(o[f]) || (o[f] as number) < (f === 'crop_x' || f === 'crop_y' ? 0 : 1));
    if (bad.length) throw new UserError(`${where} line ${n} (${o.key}): ${bad.map((f) => `${f}=${JSON.stringify(o[f]) ?? 'missing'}`).join(', ')}: sizes must be whole numbers >= 1, crop_x and crop_y >= 0`);
    if (o.flip !== undefined && typeof o.flip !== 'boolean') throw new UserError(`${where} line ${n} (${o.key}): "flip" must be true or false`);
    const before = lineOf.get(o.key);
    if (before !== undefined) throw new UserError(`${where} lines ${before} and ${n} both give key ${o.key}: keep one`);
    lineOf.set(o.key, n);
    const num = (f: (typeof FIELDS)[number]) => o[f] as number;
    out.set(o.key, {
      key: o.key,
      bucket: { width: num('bucket_width'), height: num('bucket_height') },
      crop: { x: num('crop_x'), y: num('crop_y'), w: num('crop_w'), h: num('crop_h') },
      ...(o.flip === true ? { flip: true } : {}),
    });
  });
  return out;
}
