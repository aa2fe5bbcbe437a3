/**
 * The preprocessing record: what decides the pixels a model sees, and how its patch grid is stored
 * (--pool), as JSON. Keys beyond the base set come last, each only when it is not the default
 * (decode, crops, then pool), so a default record is byte for byte what it was. extract writes it into
 * cache.json (it is part of the fingerprint, so a changed setting is caught) and every shard's
 * metadata; validate and inspect read it back to re-derive each row's bucket and crop box,
 * re-extract rows exactly as extract did, and map DINO patches to trainer pixels. Writing and
 * reading live here together so they cannot drift. The JSON itself (keys, their order, the bucket
 * text) must stay as it is: existing caches and their fingerprints depend on it.
 */
import type { ModelInfo, Resample } from '../model/info.js';
import type { Bucket, ResizeMode } from './buckets.js';
import { CROPS_FORMATS, type CropsFormat, type CropsSource } from './crops-file.js';
import type { DecodeMode, IccMode } from './decode.js';
import type { PrepareSettings } from './prepare-settings.js';

/**
 * --decode fast as recorded: the rule of decode.ts fastDecodeSize (libjpeg's DCT scaling as sharp's
 * own shrink-on-load picks it). Development builds of 2026-12-02 recorded 'fast' for another rule
 * (twice the bucket) whose pixels differ: extract refuses to resume such a cache (its fingerprint
 * differs) and validate or inspect name its record garbled, rather than mixing the two.
 */
const FAST_RECORD = 'fast-dct';

/** The record as written. */
export interface PreprocessingRecord {
  resize: ResizeMode;
  resample: Resample;
  mean: readonly number[];
  std: readonly number[];
  /** trainer bucket → DINO input, e.g. '1024x1024→512x512' (bucketText). */
  buckets: string[];
  dinoScale: number;
  background: string;
  icc: IccMode;
  orientation: 'exif';
  /** Only when not 'exact' (--decode fast), so the records of exact caches stay as they were. */
  decode?: typeof FAST_RECORD;
  /** Only with --crops, so that every other cache's record (and fingerprint) stays as it was. */
  crops?: CropsRecord;
  /** --pool: patches averaged N×N on the grid; written only when N > 1, so older records stay as they were. */
  pool?: number;
}

/** A crops file as recorded: the file by its sha256 (another file, other features), its buckets. */
export interface CropsRecord {
  format: CropsFormat;
  sha256: string;
  fallback: boolean;
  buckets: string[];
}

/** The record as read back: the buckets as sizes again. */
export interface RecordedPreprocessing {
  resize: ResizeMode;
  resample: Resample;
  mean: [number, number, number];
  std: [number, number, number];
  /** DINO input sizes with the trainer bucket each was derived from. */
  buckets: Bucket[];
  dinoScale: number;
  background: string;
  icc: IccMode;
  orientation: 'exif';
  decode: DecodeMode;
  crops?: CropsSource;
  /** Patches per stored token along each side (1: not pooled). */
  pool: number;
}

export function describePreprocessing(info: Pick<ModelInfo, 'resample' | 'imageMean' | 'imageStd'>, s: PrepareSettings, pool = 1): PreprocessingRecord {
  return {
    resize: s.resize,
    resample: info.resample,
    mean: info.imageMean,
    std: info.imageStd,
    buckets: s.buckets.map(bucketText),
    dinoScale: s.dinoScale,
    background: s.decode.background,
    icc: s.decode.icc,
    orientation: 'exif',
    ...(s.decode.mode === 'fast' ? { decode: FAST_RECORD } : {}),
    ...(s.crops ? { crops: { format: s.crops.format, sha256: s.crops.sha256, fallback: s.crops.fallback, buckets: s.crops.buckets.map(bucketText) } } : {}),
    ...(pool > 1 ? { pool } : {}),
  };
}

/** "<trainer w>x<h>→<dino w>x<h>", a bucket as the record writes it. */
export function bucketText(b: Bucket): string {
  return `${b.trainer.width}x${b.trainer.height}→${b.width}x${b.height}`;
}

const BUCKET_TEXT = /^(\d+)x(\d+)→(\d+)x(\d+)$/;

function parseBucketText(text: string): Bucket | undefined {
  const m = BUCKET_TEXT.exec(text);
  if (!m) return undefined;
  return { width: Number(m[3]), height: Number(m[4]), trainer: { width: Number(m[1]), height: Number(m[2]) } };
}

const isTriple = (v: unknown): v is [number, number, number] =>
  Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number' && Number.isFinite(x));

const isCropsRecord = (v: unknown): v is CropsRecord => {
  const c = v as Partial<CropsRecord> | null;
  return !!c && CROPS_FORMATS.includes(c.format!) && typeof c.sha256 === 'string' && typeof c.fallback === 'boolean' &&
    Array.isArray(c.buckets) && c.buckets.every((b) => typeof b === 'string' && BUCKET_TEXT.test(b));
};

/** The record, or one line saying what is missing or unreadable in it. */
export function parsePreprocessing(record: object): { value: RecordedPreprocessing } | { problem: string } {
  const r = record as Record<string, unknown>;
  const problems: string[] = [];
  const want = <T>(key: string, ok: (v: unknown) => v is T): T | undefined => {
    if (ok(r[key])) return r[key];
    problems.push(`${key}=${JSON.stringify(r[key]) ?? 'missing'}`);
    return undefined;
  };
  const resize = want('resize', (v): v is ResizeMode => v === 'stretch' || v === 'cover');
  const resample = want('resample', (v): v is Resample => v === 'bilinear' || v === 'bicubic');
  const mean = want('mean', isTriple);
  const std = want('std', isTriple);
  const texts = want('buckets', (v): v is string[] => Array.isArray(v) && v.length > 0 && v.every((b) => typeof b === 'string' && BUCKET_TEXT.test(b)));
  const dinoScale = want('dinoScale', (v): v is number => typeof v === 'number' && v > 0);
  const background = want('background', (v): v is string => typeof v === 'string');
  const icc = want('icc', (v): v is IccMode => v === 'ignore' || v === 'convert');
  const orientation = want('orientation', (v): v is 'exif' => v === 'exif');
  // Absent in records of exact decodes (and of every cache made before --decode existed).
  const decode = r.decode === undefined ? 'exact' : want('decode', (v): v is typeof FAST_RECORD => v === FAST_RECORD) === undefined ? undefined : 'fast';
  const crops = r.crops === undefined ? undefined : want('crops', isCropsRecord);
  const pool = r.pool === undefined ? 1 : want('pool', (v): v is number => Number.isInteger(v) && (v as number) > 1);
  if (problems.length) return { problem: `preprocessing record lacks or garbles ${problems.join(', ')}` };
  return {
    value: {
      resize: resize!, resample: resample!, mean: mean!, std: std!, dinoScale: dinoScale!, background: background!, icc: icc!,
      orientation: orientation!, decode: decode!, buckets: texts!.map((t) => parseBucketText(t)!), pool: pool!,
      ...(crops ? { crops: { format: crops.format, sha256: crops.sha256, fallback: crops.fallback, buckets: crops.buckets.map((t) => parseBucketText(t)!) } } : {}),
    },
  };
}

/** Settings that make the image stage do what extract did for this cache. */
export function prepareSettingsOf(p: RecordedPreprocessing, maxPixels: number): PrepareSettings {
  return {
    buckets: p.buckets,
    resize: p.resize,
    dinoScale: p.dinoScale,
    decode: { maxPixels, background: p.background, icc: p.icc, ...(p.decode === 'fast' ? { mode: 'fast' as const } : {}) },
    ...(p.crops ? { crops: p.crops } : {}),
  };
}
