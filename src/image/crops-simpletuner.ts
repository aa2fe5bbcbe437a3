/**
 * SimpleTuner's aspect-bucket metadata, `aspect_ratio_bucket_metadata_<dataset id>.json` in the
 * dataset folder (helpers/metadata/backends/discovery.py): one object keyed by the image's path as
 * the trainer found it, each holding `original_size` [w, h] (upright: SimpleTuner applies the EXIF
 * orientation), `intermediary_size` [w, h] (the image resized to cover the bucket),
 * `crop_coordinates` [top, left] (in intermediary pixels) and `target_size` [w, h] (the bucket).
 * The crop box in source pixels is that window scaled back by original / intermediary, each edge
 * rounded to the nearest pixel. With `crop: false` the intermediary size is the target and the
 * window the whole image; with `crop_style: random` SimpleTuner records the centre, not the crop
 * it drew, so dinofeat sees the centre too.
 */
import type { CropBox, Size } from './buckets.js';
import type { CropsEntry } from './crops-entry.js';

interface Recorded {
  original: Size;
  intermediary: Size;
  top: number;
  left: number;
  target: Size;
}

const isPair = (v: unknown): v is [number, number] => Array.isArray(v) && v.length === 2 && v.every((n) => Number.isInteger(n) && n >= 0);
const size = (p: [number, number]): Size => ({ width: p[0], height: p[1] });

/** Whether `json` is SimpleTuner's bucket metadata: an object of objects with target_size and crop_coordinates. */
export function isSimpleTunerMetadata(json: unknown): json is Record<string, unknown> {
  if (!json || typeof json !== 'object' || Array.isArray(json)) return false;
  return Object.values(json).some((v) => !!v && typeof v === 'object' && 'target_size' in v && 'crop_coordinates' in v);
}

function cropOf(r: Recorded, upright: Size): CropBox | { problem: string } {
  if (upright.width !== r.original.width || upright.height !== r.original.height) {
    return { problem: `SimpleTuner recorded original_size ${r.original.width}x${r.original.height}, the upright image is ${upright.width}x${upright.height}: the file changed since its metadata was written` };
  }
  const edge = (at: number, source: number, intermediary: number) => Math.min(source, Math.max(0, Math.round((at * source) / intermediary)));
  const x0 = edge(r.left, upright.width, r.intermediary.width);
  const y0 = edge(r.top, upright.height, r.intermediary.height);
  const x1 = edge(r.left + Math.min(r.target.width, r.intermediary.width - r.left), upright.width, r.intermediary.width);
  const y1 = edge(r.top + Math.min(r.target.height, r.intermediary.height - r.top), upright.height, r.intermediary.height);
  return { x: x0, y: y0, w: Math.max(1, x1 - x0), h: Math.max(1, y1 - y0) };
}

/** The entries of SimpleTuner's metadata; an entry missing a field is a problem naming its key. */
export function simpleTunerEntries(json: Record<string, unknown>): { entries: Map<string, CropsEntry> } | { problem: string } {
  const entries = new Map<string, CropsEntry>();
  for (const [key, v] of Object.entries(json)) {
    const m = (v ?? {}) as Record<string, unknown>;
    const fields = { original_size: m.original_size, intermediary_size: m.intermediary_size, crop_coordinates: m.crop_coordinates, target_size: m.target_size };
    const bad = Object.entries(fields).filter(([, f]) => !isPair(f));
    if (bad.length) return { problem: `${key}: ${bad.map(([k, f]) => `${k}=${JSON.stringify(f) ?? 'missing'}`).join(', ')}: expected [width, height] pairs and crop_coordinates [top, left]` };
    const [top, left] = fields.crop_coordinates as [number, number];
    const r: Recorded = {
      original: size(fields.original_size as [number, number]), intermediary: size(fields.intermediary_size as [number, number]),
      top, left, target: size(fields.target_size as [number, number]),
    };
    if (r.target.width < 1 || r.target.height < 1 || r.intermediary.width < 1 || r.intermediary.height < 1) return { problem: `${key}: target_size and intermediary_size must be at least 1x1` };
    entries.set(key, { bucket: r.target, crop: (upright) => cropOf(r, upright) });
  }
  return { entries };
}
