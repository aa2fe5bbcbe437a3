/**
 * Aspect-ratio buckets: which model input size each image gets. Pure functions. Every size the
 * model sees is a multiple of its patch size (from the model metadata), so the patch grid covers
 * the input exactly; the image is assigned the bucket of nearest aspect ratio (log scale).
 */
import { UserError } from '../core/errors.js';

export interface Size {
  width: number;
  height: number;
}

export interface Bucket extends Size {
  /** The trainer's bucket this DINO input size was derived from (differs with --dino-scale). */
  trainer: Size;
}

/** Crop box in upright source pixels. */
export interface CropBox {
  x: number;
  y: number;
  w: number;
  h: number;
}

export type ResizeMode = 'stretch' | 'cover';

/**
 * What the image stage does with one image: the bucket it goes to, the box of the upright source
 * that becomes the model input, and whether the trainer mirrors it (a crops file's `flip`).
 */
export interface ImagePlan {
  bucket: Bucket;
  crop: CropBox;
  flip?: boolean;
}

/**
 * SDXL's 1024² aspect-ratio buckets (64-aligned, about one megapixel each), as listed in the SDXL
 * paper's appendix and used by the common trainers. Width x height.
 */
const SDXL: ReadonlyArray<readonly [number, number]> = [
  [512, 2048], [512, 1984], [512, 1920], [512, 1856], [576, 1792], [576, 1728], [576, 1664], [640, 1600],
  [640, 1536], [704, 1472], [704, 1408], [704, 1344], [768, 1344], [768, 1280], [832, 1216], [832, 1152],
  [896, 1152], [896, 1088], [960, 1088], [960, 1024], [1024, 1024], [1024, 960], [1088, 960], [1088, 896],
  [1152, 896], [1152, 832], [1216, 832], [1280, 768], [1344, 768], [1344, 704], [1408, 704], [1472, 704],
  [1536, 640], [1600, 640], [1664, 576], [1728, 576], [1792, 576], [1856, 512], [1920, 512], [1984, 512], [2048, 512],
];

export interface AutoBucketOptions {
  /** Target area in pixels (default 1024²). */
  area?: number;
  /** Both sides are multiples of this (default 64; must be a multiple of the patch size). */
  step?: number;
  minSide?: number;
  maxSide?: number;
  /** Longest / shortest side at most (default 4). */
  maxAspect?: number;
}

export const PRESETS = ['sdxl', 'sd15', 'auto'] as const;
export type Preset = (typeof PRESETS)[number];

export function parseSize(text: string, flag = '--bucket'): Size {
  const m = /^(\d+)\s*[x×X]\s*(\d+)$/.exec(text.trim());
  if (!m) throw new UserError(`${flag} ${text}: expected WIDTHxHEIGHT, e.g. 832x1216`);
  const size = { width: Number(m[1]), height: Number(m[2]) };
  if (size.width < 1 || size.height < 1) throw new UserError(`${flag} ${text}: both sides must be at least 1`);
  return size;
}

/** The multiples of p nearest to n, nearest first (both when n lies halfway). */
function nearestMultiples(n: number, p: number): number[] {
  const lo = Math.floor(n / p) * p;
  return [lo, lo + p].filter((v) => v >= p).sort((a, b) => Math.abs(a - n) - Math.abs(b - n) || a - b);
}

/** An explicit bucket must already be a multiple of the patch size: say which sizes are, nearest first. */
export function checkAligned(size: Size, patch: number, flag = '--bucket'): void {
  if (size.width % patch === 0 && size.height % patch === 0) return;
  const sides = (n: number) => (n % patch === 0 ? [n] : nearestMultiples(n, patch));
  const options: Size[] = [];
  for (const width of sides(size.width)) for (const height of sides(size.height)) options.push({ width, height });
  const distance = (o: Size) => Math.abs(o.width - size.width) + Math.abs(o.height - size.height);
  options.sort((a, b) => distance(a) - distance(b));
  throw new UserError(`${flag} ${size.width}x${size.height} is not a multiple of the model's patch size ${patch}: use ${options.map((o) => `${o.width}x${o.height}`).join(' or ')}`);
}

/** `--buckets auto`: every (w, h) on the step grid whose area is closest below the target. */
export function autoBuckets(o: AutoBucketOptions = {}): Size[] {
  const area = o.area ?? 1024 * 1024;
  const step = o.step ?? 64;
  const minSide = o.minSide ?? step * Math.max(1, Math.round(Math.sqrt(area) / step / 2));
  const maxSide = o.maxSide ?? step * Math.round((Math.sqrt(area) * 2) / step);
  const maxAspect = o.maxAspect ?? 4;
  const out: Size[] = [];
  for (let w = Math.ceil(minSide / step) * step; w <= maxSide; w += step) {
    const h = Math.floor(area / w / step) * step;
    if (h < minSide || h > maxSide) continue;
    if (Math.max(w / h, h / w) > maxAspect) continue;
    out.push({ width: w, height: h });
  }
  if (out.length === 0) throw new UserError(`--buckets auto made no buckets for area ${area}, step ${step}, sides ${minSide}..${maxSide}: widen the limits`);
  return out;
}

export function presetBuckets(preset: Preset, auto: AutoBucketOptions = {}): Size[] {
  switch (preset) {
    case 'sdxl':
      return SDXL.map(([width, height]) => ({ width, height }));
    case 'sd15':
      return autoBuckets({ area: 512 * 512, step: 64, minSide: 256, maxSide: 1024 });
    case 'auto':
      return autoBuckets(auto);
  }
}

/**
 * The DINO input size for a trainer bucket: scaled by --dino-scale and rounded to the patch size.
 * With scale 1 an explicit bucket must already be aligned (checked by the caller); presets made
 * for 64-aligned latents are rounded for a patch size such as 14.
 */
export function dinoBucket(trainer: Size, scale: number, patch: number): Bucket {
  const round = (v: number) => Math.max(patch, Math.round((v * scale) / patch) * patch);
  return { width: round(trainer.width), height: round(trainer.height), trainer };
}

/** Nearest aspect ratio on a log scale; ties go to the larger area, then the wider bucket. */
export function assignBucket(size: Size, buckets: readonly Bucket[]): Bucket {
  const target = Math.log(size.width / size.height);
  let best = buckets[0]!;
  let bestDist = Infinity;
  for (const b of buckets) {
    const dist = Math.abs(Math.log(b.trainer.width / b.trainer.height) - target);
    const better = dist < bestDist - 1e-12 ||
      (Math.abs(dist - bestDist) <= 1e-12 && (b.width * b.height > best.width * best.height || (b.width * b.height === best.width * best.height && b.width > best.width)));
    if (better) {
      best = b;
      bestDist = dist;
    }
  }
  return best;
}

/**
 * The region of the upright source that becomes the model input. stretch: the whole image.
 * cover: the centred box of the trainer bucket's aspect (the region its latent covers; with
 * --dino-scale the DINO size may differ from it by the rounding to the patch size), spanning
 * the full width or height, its other side the nearest whole number of pixels. Integer
 * arithmetic, so the box does not depend on float rounding.
 */
export function cropBox(size: Size, bucket: Bucket, mode: ResizeMode): CropBox {
  const { width: W, height: H } = size;
  if (mode === 'stretch') return { x: 0, y: 0, w: W, h: H };
  const { width: bw, height: bh } = bucket.trainer;
  // round(a / b) for positive integers, halves up.
  const roundDiv = (a: number, b: number) => Math.floor((2 * a + b) / (2 * b));
  const wider = W * bh > H * bw;
  const w = wider ? Math.min(W, Math.max(1, roundDiv(H * bw, bh))) : W;
  const h = wider ? H : Math.min(H, Math.max(1, roundDiv(W * bh, bw)));
  return { x: Math.floor((W - w) / 2), y: Math.floor((H - h) / 2), w, h };
}

/** dinofeat's own rule: the bucket of nearest aspect ratio, the crop box of --resize. */
export function planByRule(size: Size, buckets: readonly Bucket[], mode: ResizeMode): ImagePlan {
  const bucket = assignBucket(size, buckets);
  return { bucket, crop: cropBox(size, bucket, mode) };
}

/**
 * --pool N averages N×N blocks of patches, so every bucket's patch grid must divide by N: one line
 * naming the buckets that do not, and what would.
 */
export function checkPoolable(buckets: readonly Bucket[], patch: number, pool: number): void {
  if (pool === 1) return;
  const cell = patch * pool;
  const bad = buckets.filter((b) => b.width % cell !== 0 || b.height % cell !== 0);
  if (!bad.length) return;
  const shown = bad.slice(0, 4).map((b) => `${b.width}x${b.height} (grid ${b.width / patch}x${b.height / patch})`).join(', ');
  throw new UserError(`--pool ${pool}: ${bad.length} DINO input size${bad.length === 1 ? '' : 's'} ${shown}${bad.length > 4 ? ', ...' : ''} ${bad.length === 1 ? 'has a patch grid that does' : 'have patch grids that do'} not divide by ${pool}: use buckets (after --dino-scale) that are multiples of ${cell} pixels, or another --pool`);
}

export function formatBucketTable(buckets: readonly Bucket[], patch: number): string {
  const rows = buckets.map((b) => [
    `${b.trainer.width}x${b.trainer.height}`,
    `${b.width}x${b.height}`,
    `${b.height / patch}x${b.width / patch}`,
    (b.trainer.width / b.trainer.height).toFixed(3),
    String(1 + (b.width / patch) * (b.height / patch)),
  ]);
  const head = ['bucket', 'dino input', 'grid (h x w)', 'aspect', 'tokens (cls+patches)'];
  const widths = head.map((h, k) => Math.max(h.length, ...rows.map((r) => r[k]!.length)));
  const line = (r: string[]) => r.map((c, k) => c.padEnd(widths[k]!)).join('  ').trimEnd();
  return [line(head), ...rows.map(line)].join('\n');
}

export interface BucketFlags {
  bucket?: readonly string[];
  buckets?: string;
  auto?: AutoBucketOptions;
  dinoScale: number;
}

/** The bucket flags as the command line gives them (extract and buckets take the same group). */
export interface BucketFlagValues {
  bucket?: readonly string[];
  buckets?: string;
  bucketArea?: number;
  bucketStep?: number;
  bucketMin?: number;
  bucketMax?: number;
  dinoScale: number;
}

export function bucketFlagsOf(v: BucketFlagValues): BucketFlags {
  return {
    bucket: v.bucket, buckets: v.buckets, dinoScale: v.dinoScale,
    auto: { area: v.bucketArea, step: v.bucketStep, minSide: v.bucketMin, maxSide: v.bucketMax },
  };
}

/** The run's buckets from flags: explicit sizes, a preset, or SDXL's list by default. */
export function resolveBuckets(flags: BucketFlags, patch: number): Bucket[] {
  if (flags.bucket?.length && flags.buckets) throw new UserError('use either --bucket or --buckets, not both');
  if (flags.bucket?.length) {
    return flags.bucket.map((text) => {
      const size = parseSize(text);
      if (flags.dinoScale === 1) checkAligned(size, patch);
      return dinoBucket(size, flags.dinoScale, patch);
    });
  }
  const preset = (flags.buckets ?? 'sdxl') as Preset;
  if (!PRESETS.includes(preset)) throw new UserError(`--buckets ${flags.buckets}: unknown preset; use one of ${PRESETS.join(', ')}`);
  if (preset === 'auto' && flags.auto?.step !== undefined && flags.auto.step % patch !== 0) {
    throw new UserError(`--bucket-step ${flags.auto.step} is not a multiple of the model's patch size ${patch}`);
  }
  const auto = { ...flags.auto, step: flags.auto?.step ?? patch * 4 }; // the flags pass step: undefined when not given
  return presetBuckets(preset, auto).map((s) => dinoBucket(s, flags.dinoScale, patch));
}
