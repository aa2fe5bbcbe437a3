/**
 * Does DINO patch (i, j) cover the same pixels as latent token (i, j)? The trainer encodes a
 * bucket of T_w x T_h pixels with a VAE of stride S and patchifies the latent by P, so token
 * (i, j) covers trainer pixels [j*S*P, (j+1)*S*P) x [i*S*P, (i+1)*S*P). DINO saw the same image
 * region (the same crop: both follow the cache's resize mode) resized to its input D_w x D_h, so
 * its patch (i, j) covers trainer pixels [j*p*T_w/D_w, ...). The two agree for every (i, j)
 * exactly when the latent grid is whole (T divisible by S*P) and the grids are equal
 * (D / p = T / (S*P) on both axes); equal grids also mean equal aspect ratios, hence equal crops.
 * A DINO grid k times coarser on both axes (latent grid = k · DINO grid, k whole) tiles the latent
 * grid instead: position (i, j) covers exactly tokens [k·i, k·i + k) x [k·j, k·j + k). That is how
 * a ConvNeXt lines up (one stride-32 position = 2x2 tokens at VAE stride 8 and DiT patch 2), so for
 * one it is reported, not failed; a ViT's patch grid is meant to equal the tokens, so for a ViT it
 * stays a failure with the --dino-scale that fixes it.
 */
import type { JsonObject } from '../shard/schema.js';
import type { ModelInfo } from '../model/info.js';
import type { Bucket } from '../image/buckets.js';
import { abbreviate, plural } from '../core/text.js';
import { bucketText, parsePreprocessing } from '../image/preprocessing-record.js';
import { CheckRecorder, type CheckResult } from './check.js';

export interface AlignmentInput {
  patchSize: number;
  /** The cache's buckets: DINO input sizes with the trainer bucket each came from. */
  buckets: readonly Bucket[];
  latentStride: number;
  ditPatch: number;
  /** --pool of the cache: one stored token spans pool×pool DINO patches (default 1). */
  pool?: number;
}

export interface BucketAlignment {
  /** "<trainer>→<dino>", as the preprocessing record writes it. */
  label: string;
  /** DINO input size "<w>x<h>", as rows count buckets. */
  dinoLabel: string;
  /** Patches across and down. */
  dinoGrid: { w: number; h: number };
  /** Latent tokens across and down; fractional when the bucket is not a multiple of S*P. */
  latentGrid: { w: number; h: number };
  /** Trainer pixels one DINO patch spans, and one latent token. */
  dinoPatchPixels: { w: number; h: number };
  tokenPixels: number;
  aligned: boolean;
  /**
   * Latent tokens one DINO position covers along each axis when the DINO grid tiles a whole latent
   * grid: 1 when aligned, k ≥ 2 when k times coarser on both axes; undefined otherwise.
   */
  tokensPerPosition?: number;
  /** Why not, in words, with what to change. */
  reasons: string[];
}

const fmt = (v: number) => (Number.isInteger(v) ? String(v) : v.toFixed(2));

export function alignBucket(b: Bucket, input: Omit<AlignmentInput, 'buckets'>): BucketAlignment {
  // A stored token of a pooled cache spans pool×pool patches: that is the cell the latent grid must match.
  const p = input.patchSize * (input.pool ?? 1);
  const tok = input.latentStride * input.ditPatch;
  const t = b.trainer;
  const dinoGrid = { w: b.width / p, h: b.height / p };
  const latentGrid = { w: t.width / tok, h: t.height / tok };
  const dinoPatchPixels = { w: (p * t.width) / b.width, h: (p * t.height) / b.height };
  const reasons: string[] = [];
  const whole = Number.isInteger(latentGrid.w) && Number.isInteger(latentGrid.h);
  if (!whole) {
    reasons.push(`trainer bucket ${t.width}x${t.height} is not a multiple of latent stride ${input.latentStride} x DiT patch ${input.ditPatch} = ${tok}: the latent grid would be ${fmt(latentGrid.w)}x${fmt(latentGrid.h)}`);
  }
  if (dinoGrid.w !== latentGrid.w || dinoGrid.h !== latentGrid.h) {
    const span = `one DINO patch spans ${fmt(dinoPatchPixels.w)}x${fmt(dinoPatchPixels.h)} trainer pixels, one latent token ${tok}x${tok}`;
    const scale = p / tok;
    const fix = whole ? `; extract with --dino-scale ${scale} (DINO input ${latentGrid.w * p}x${latentGrid.h * p}) to line them up` : '';
    reasons.push(`DINO grid ${dinoGrid.w}x${dinoGrid.h} vs latent grid ${fmt(latentGrid.w)}x${fmt(latentGrid.h)}: ${span}${fix}`);
  }
  const k = latentGrid.w / dinoGrid.w;
  return {
    label: bucketText(b),
    dinoLabel: `${b.width}x${b.height}`,
    dinoGrid, latentGrid, dinoPatchPixels, tokenPixels: tok,
    aligned: reasons.length === 0,
    ...(whole && Number.isInteger(k) && latentGrid.h === k * dinoGrid.h ? { tokensPerPosition: k } : {}),
    reasons,
  };
}

/** A ConvNeXt's grid (stride 32) is coarser than a DiT's tokens by design; a ViT's is meant to equal them. */
const coarseByDesign = (model: Pick<ModelInfo, 'family'>) => model.family === 'dinov3-convnext';

export function alignBuckets(input: AlignmentInput): BucketAlignment[] {
  return input.buckets.map((b) => alignBucket(b, input));
}

/**
 * The alignment check over a cache's buckets: a bucket holding rows that does not line up fails;
 * empty ones that would not line up either are noted. A ConvNeXt's grid that tiles the latent
 * grid (each position k x k tokens) is reported as such.
 */
export function checkAlignment(
  preprocessing: JsonObject, model: Pick<ModelInfo, 'family' | 'patchSize'>, rowsPerBucket: Readonly<Record<string, number>>, latentStride: number, ditPatch: number,
): CheckResult {
  const patchSize = model.patchSize;
  const rec = new CheckRecorder('alignment');
  const parsed = parsePreprocessing(preprocessing);
  if ('problem' in parsed) {
    rec.fail('preprocessing', 'cache', `${parsed.problem}: the trainer bucket of each DINO input is unknown`);
    rec.fix('preprocessing', 'rebuild the cache with this dinofeat (dinofeat extract ... --overwrite): it records the buckets');
    return rec.result();
  }
  // With --crops the rows' buckets are the crops file's, and its fallback rows the flags'.
  const all = [...parsed.value.buckets, ...(parsed.value.crops?.buckets ?? [])];
  const buckets = [...new Map(all.map((b) => [bucketText(b), b])).values()];
  const { pool } = parsed.value;
  const results = alignBuckets({ patchSize, buckets, latentStride, ditPatch, pool });
  const known = new Set(results.map((r) => r.dinoLabel));
  const emptyMisaligned: string[] = [];
  for (const r of results) {
    const rows = rowsPerBucket[r.dinoLabel] ?? 0;
    const k = r.tokensPerPosition;
    if (r.aligned) rec.info(`${r.label}: DINO grid ${r.dinoGrid.w}x${r.dinoGrid.h} = latent grid, ${plural(rows, 'row')}`);
    else if (k !== undefined && coarseByDesign(model)) {
      rec.info(`${r.label}: DINO grid ${r.dinoGrid.w}x${r.dinoGrid.h} tiles latent grid ${r.latentGrid.w}x${r.latentGrid.h}, each position covering ${k}x${k} tokens (${r.tokenPixels * k} trainer pixels), ${plural(rows, 'row')}`);
    } else if (rows > 0) for (const reason of r.reasons) rec.fail('misaligned', `${r.label} (${plural(rows, 'row')})`, reason);
    else emptyMisaligned.push(r.label);
  }
  for (const [label, rows] of Object.entries(rowsPerBucket)) {
    if (!known.has(label)) rec.fail('misaligned', `${label} (${plural(rows, 'row')})`, 'not one of the buckets in the preprocessing record: its trainer bucket is unknown');
  }
  if (emptyMisaligned.length) rec.note(`buckets without rows that would not line up either: ${abbreviate(emptyMisaligned)}`);
  rec.info(`latent token = VAE stride ${latentStride} x DiT patch ${ditPatch} = ${latentStride * ditPatch} trainer pixels; DINO patch ${patchSize} pixels of its input${pool > 1 ? `, stored tokens pooled ${pool}x${pool} (${patchSize * pool} pixels)` : ''} (dino-scale ${parsed.value.dinoScale}, resize ${parsed.value.resize}); grids are across x down`);
  rec.fix('misaligned', 'extract with the --dino-scale (and buckets) the reasons name, into a new --out');
  return rec.result();
}
