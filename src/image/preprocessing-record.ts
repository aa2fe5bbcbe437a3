/**
 * Reads back the preprocessing record a cache was made with (describePreprocessing's JSON, in
 * cache.json and every shard's metadata), so validate can re-derive each row's bucket and crop
 * box, re-extract rows exactly as extract did, and map DINO patches to trainer pixels.
 */
import type { JsonObject } from '../shard/schema.js';
import type { Bucket, ResizeMode } from './buckets.js';
import type { IccMode } from './decode.js';
import type { Resample } from '../model/info.js';
import type { PrepareSettings } from '../pipeline/prepare.js';

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
}

/** "<trainer w>x<h>→<dino w>x<h>", as describePreprocessing writes it. */
const BUCKET = /^(\d+)x(\d+)→(\d+)x(\d+)$/;

function parseBucketPair(text: string): Bucket | undefined {
  const m = BUCKET.exec(text);
  if (!m) return undefined;
  return { width: Number(m[3]), height: Number(m[4]), trainer: { width: Number(m[1]), height: Number(m[2]) } };
}

const isTriple = (v: unknown): v is [number, number, number] =>
  Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number' && Number.isFinite(x));

/** The record, or what is missing or unreadable in it. */
export function parsePreprocessing(record: JsonObject): { value: RecordedPreprocessing } | { problem: string } {
  const r = record as Record<string, unknown>;
  const problems: string[] = [];
  const want = <T>(key: string, ok: (v: unknown) => boolean): T | undefined => {
    if (ok(r[key])) return r[key] as T;
    problems.push(`${key}=${JSON.stringify(r[key]) ?? 'missing'}`);
    return undefined;
  };
  const resize = want<ResizeMode>('resize', (v) => v === 'stretch' || v === 'cover');
  const resample = want<Resample>('resample', (v) => v === 'bilinear' || v === 'bicubic');
  const mean = want<[number, number, number]>('mean', isTriple);
  const std = want<[number, number, number]>('std', isTriple);
  const texts = want<string[]>('buckets', (v) => Array.isArray(v) && v.length > 0 && v.every((b) => typeof b === 'string' && BUCKET.test(b)));
  const dinoScale = want<number>('dinoScale', (v) => typeof v === 'number' && v > 0);
  const background = want<string>('background', (v) => typeof v === 'string');
  const icc = want<IccMode>('icc', (v) => v === 'ignore' || v === 'convert');
  if (problems.length) return { problem: `preprocessing record lacks or garbles ${problems.join(', ')}` };
  return {
    value: {
      resize: resize!, resample: resample!, mean: mean!, std: std!, dinoScale: dinoScale!, background: background!, icc: icc!,
      buckets: texts!.map((t) => parseBucketPair(t)!),
    },
  };
}

/** Settings that make createImagePreparer do what extract did for this cache. */
export function prepareSettingsOf(p: RecordedPreprocessing, maxPixels: number): PrepareSettings {
  return {
    buckets: p.buckets,
    resize: p.resize,
    dinoScale: p.dinoScale,
    decode: { maxPixels, background: p.background, icc: p.icc },
  };
}
