/**
 * validate --recompute N: N rows, sampled by seed, are extracted again from their images with the
 * given model, exactly as extract did (the cache's recorded preprocessing, the same image stage),
 * and compared with the stored values per token group (CLS, registers when stored, patches, and
 * each stored intermediate layer's CLS and patches):
 * the lowest per-token cosine similarity and the largest absolute difference, against limits set
 * by the stored dtype and the model precision.
 */
import { createHash } from 'node:crypto';
import type { ReadTarget } from '../cache/open-read-only.js';
import { decodeRow, type FeatureRow, type MirroredFeatures, type ShardMeta, type TensorDtype } from '../shard/schema.js';
import { iterateShardRows, readShardRows } from '../shard/shard-reader.js';
import type { ImagePlan } from '../image/buckets.js';
import { parsePreprocessing, prepareSettingsOf } from '../image/preprocessing-record.js';
import { MODEL_INPUT, tokenOutputs } from '../model/contract.js';
import type { ModelInfo, Precision } from '../model/info.js';
import { poolPatches } from '../model/pool.js';
import { splitOutputs, TokenLayoutError, type ImageTokens } from '../model/split.js';
import { createImagePreparer, ImageFailure, type ImagePreparer } from '../pipeline/prepare.js';
import { inputArgs, locateKeys, type Inputs } from '../source/inputs.js';
import type { Origin } from '../source/types.js';
import { CheckRecorder, type CheckResult } from './check.js';
import type { LoadedModel } from './model-check.js';

export interface Tolerance {
  /** Every token's cosine similarity must be at least this. */
  minCosine: number;
  /** Largest |recomputed - stored|, as a fraction of the group's largest |stored value|. */
  maxRelDiff: number;
}

/**
 * Run-to-run differences of one model: fp32 differs only by summation order (batch of 4 at extract,
 * of 1 here); fp16 weights add their rounding. int8 quantises activations per model call, and both
 * extract and this check run it one image at a time (pipeline/extract.ts), so the batch no longer
 * moves its result; int4 quantises weights only. Their limits are still the loose ones set when
 * int8 ran batched: not yet re-measured. float16 storage adds half a unit in the last place.
 */
const MODEL_TOLERANCE: Readonly<Record<Precision, Tolerance>> = {
  fp32: { minCosine: 1 - 1e-4, maxRelDiff: 1e-3 },
  fp16: { minCosine: 1 - 1e-3, maxRelDiff: 1e-2 },
  int8: { minCosine: 0.98, maxRelDiff: 0.15 },
  int4: { minCosine: 0.98, maxRelDiff: 0.15 },
};
const STORAGE_REL_DIFF: Readonly<Record<TensorDtype, number>> = { float16: 2 ** -10, float32: 0 };

export function recomputeTolerance(dtype: TensorDtype, ...precisions: Precision[]): Tolerance {
  const loosest = precisions.map((p) => MODEL_TOLERANCE[p]).reduce((a, b) => (b.minCosine < a.minCosine ? b : a));
  return { minCosine: loosest.minCosine, maxRelDiff: loosest.maxRelDiff + STORAGE_REL_DIFF[dtype] };
}

const formatDiff = (v: number) => (v === 0 ? '0' : v.toPrecision(3));

export interface GroupComparison {
  /** Lowest cosine similarity over the group's tokens. */
  minCosine: number;
  maxAbsDiff: number;
  /** Largest |stored value|, the scale maxRelDiff is measured against. */
  maxAbs: number;
}

/** Compares two [tokens, width] groups token by token. */
export function compareGroup(stored: Float32Array, recomputed: Float32Array, width: number): GroupComparison {
  if (stored.length !== recomputed.length) throw new Error(`group sizes differ: ${stored.length} vs ${recomputed.length}`);
  let minCosine = 1;
  let maxAbsDiff = 0;
  let maxAbs = 0;
  for (let t = 0; t < stored.length / width; t++) {
    let dot = 0;
    let ss = 0;
    let rr = 0;
    for (let k = t * width; k < (t + 1) * width; k++) {
      const s = stored[k]!;
      const r = recomputed[k]!;
      dot += s * r;
      ss += s * s;
      rr += r * r;
      maxAbsDiff = Math.max(maxAbsDiff, Math.abs(s - r));
      maxAbs = Math.max(maxAbs, Math.abs(s));
    }
    const cosine = ss === 0 && rr === 0 ? 1 : dot / Math.sqrt(ss * rr);
    minCosine = Math.min(minCosine, Number.isNaN(cosine) ? -1 : cosine);
  }
  return { minCosine, maxAbsDiff, maxAbs };
}

export interface RowRef {
  key: string;
  shard: string;
  index: number;
  /** Where the row's image came from, as the journal records it (rows of older runs: none). */
  origin?: Origin;
}

/** The same `n` items for the same seed, whatever order they come in: the n smallest hashes. */
export function sampleRows(rows: readonly RowRef[], n: number, seed: number): RowRef[] {
  const rank = (r: RowRef) => createHash('sha256').update(`${seed}\0${r.shard}\0${r.index}\0${r.key}`).digest('hex');
  return rows.map((r) => ({ r, h: rank(r) })).sort((a, b) => (a.h < b.h ? -1 : a.h > b.h ? 1 : 0)).slice(0, n).map(({ r }) => r);
}

async function rowRefs(t: ReadTarget, readable: ReadonlyMap<string, ShardMeta>): Promise<RowRef[]> {
  const refs: RowRef[] = [];
  for (const shard of t.shards) {
    if (!readable.has(shard.name)) continue;
    if (shard.record) {
      shard.record.keys.forEach(([key, , origin], index) => refs.push({ key, shard: shard.name, index, origin }));
      continue;
    }
    let index = 0;
    for await (const batch of iterateShardRows(shard.path, { columns: ['key'] })) for (const r of batch) refs.push({ key: r.key, shard: shard.name, index: index++ });
  }
  return refs;
}

export interface RecomputeOptions {
  count: number;
  seed: number;
  /** What extract read: where the sampled rows' images are found again. */
  inputs: Inputs;
  /** Read each row's recorded origin (a file, a tar member, a Parquet row) rather than look its key up in `inputs`. */
  byOrigin: boolean;
  model: LoadedModel;
}

export async function recomputeRows(t: ReadTarget, shardMeta: ReadonlyMap<string, ShardMeta>, o: RecomputeOptions): Promise<CheckResult> {
  const rec = new CheckRecorder('recompute');
  const sample = sampleRows(await rowRefs(t, shardMeta), o.count, o.seed);
  const files = await locateKeys(o.inputs, new Map(sample.map((r) => [r.key, o.byOrigin ? r.origin : undefined])));
  const paths = new Map(t.shards.map((s) => [s.name, s.path]));
  const preparers = new Map<string, RecordedStage>();
  const worst = new Map<string, GroupComparison & { tolerance: Tolerance }>();
  let compared = 0;
  try {
    for (const ref of sample) {
      const where = `${ref.shard} row ${ref.index} (${ref.key})`;
      const meta = shardMeta.get(ref.shard)!;
      const [encoded] = await readShardRows(paths.get(ref.shard)!, { rowStart: ref.index, rowEnd: ref.index + 1 });
      if (!encoded || encoded.key !== ref.key) {
        rec.fail('row', where, 'the row is not where the journal says');
        continue;
      }
      const stored = decodeRow(encoded, meta.dtype);
      const stage = await preparerFor(meta, o.model.info, preparers, rec, where);
      if (!stage) continue;
      const file = files.get(ref.key);
      if (file === undefined) {
        rec.note(`${where}: no image of that key in ${inputArgs(o.inputs)}; not compared`);
        continue;
      }
      const recomputed = await recomputeRow(stored, file, stage, o.model, rec, where);
      if (!recomputed) continue;
      compared++;
      const tolerance = recomputeTolerance(meta.dtype, meta.model.precision, o.model.info.precision);
      const groups: Array<[string, Float32Array, Float32Array]> = [];
      const compare = (suffix: string, s: MirroredFeatures | undefined, r: ImageTokens | undefined) => {
        if (!s || !r) return;
        groups.push([`cls${suffix}`, s.cls, r.cls]);
        if (s.registers) groups.push([`registers${suffix}`, s.registers, r.registers]);
        groups.push([`patches${suffix}`, s.patches, r.patches]);
      };
      compare('', stored, recomputed.main);
      compare('_flip', stored.mirrored, recomputed.mirrored);
      for (const l of stored.layers ?? []) {
        const again = recomputed.main.layers.find((r) => r.layer === l.layer);
        if (!again) {
          rec.fail('mismatch', where, `layer ${l.layer} is stored but ${o.model.path} does not output it (layers ${o.model.info.layers?.join(',') ?? 'none'})`);
          continue;
        }
        groups.push([`layer${l.layer}_cls`, l.cls, again.cls], [`layer${l.layer}_patches`, l.patches, again.patches]);
      }
      for (const [name, s, r] of groups) {
        if (s.length !== r.length) {
          rec.fail('mismatch', where, `${name}: ${s.length} values stored, ${r.length} recomputed`);
          continue;
        }
        const c = compareGroup(s, r, meta.hiddenSize);
        const w = worst.get(name);
        if (!w || c.minCosine < w.minCosine) worst.set(name, { ...c, tolerance });
        const tooFar = c.minCosine < tolerance.minCosine || c.maxAbsDiff > tolerance.maxRelDiff * Math.max(c.maxAbs, 1e-6);
        if (tooFar) {
          rec.fail('mismatch', where, `${name}: lowest token cosine ${c.minCosine.toFixed(6)} (limit ${tolerance.minCosine}), max abs diff ${formatDiff(c.maxAbsDiff)} (limit ${formatDiff(tolerance.maxRelDiff * c.maxAbs)})`);
        }
      }
    }
  } finally {
    for (const s of preparers.values()) await s.preparer.close();
  }
  if (compared === 0) rec.fail('nothing-compared', inputArgs(o.inputs), `none of the ${sample.length} sampled rows could be extracted again (see the notes)`);
  rec.fix('mismatch', `the stored features are not what ${o.model.path} computes from the images: validate with the model the cache was made with; if it is that model, rebuild the cache (dinofeat extract ... --overwrite)`);
  rec.fix('row', 'the journal and the shard disagree: see the cache check');
  rec.fix('layout', "the model metadata does not describe its output, or the cache was made for another patch size: validate with the cache's model");
  rec.fix('run', "the model cannot run on the cache's bucket sizes: validate with the model the cache was made with");
  rec.fix('nothing-compared', '--images and --list must be what extract read (keys are paths relative to a folder, or as written in a list)');
  rec.fix('provenance', 'the row is not what extract makes of its image under the recorded preprocessing: delete its shard and run extract again (same flags)');
  rec.fix('preprocessing', 'this cache cannot be re-extracted exactly; rebuild it with this dinofeat (dinofeat extract ... --overwrite)');
  rec.info(`${compared} of ${sample.length} sampled rows (seed ${o.seed}) extracted again with ${o.model.path}`);
  for (const [name, w] of worst) {
    rec.info(`${name}: lowest token cosine ${w.minCosine.toFixed(6)} (limit ${w.tolerance.minCosine}), max abs diff ${formatDiff(w.maxAbsDiff)}`);
  }
  return rec.result();
}

/** The image stage of a shard's recorded preprocessing, and the --pool its patches were stored with. */
interface RecordedStage {
  preparer: ImagePreparer;
  pool: number;
  /** A cache made with --crops: the trainer's file chose each row's bucket and crop, so the row's own are used. */
  fromRow: boolean;
}

async function preparerFor(
  meta: ShardMeta, info: ModelInfo, preparers: Map<string, RecordedStage>, rec: CheckRecorder, where: string,
): Promise<RecordedStage | undefined> {
  const id = JSON.stringify(meta.preprocessing);
  const known = preparers.get(id);
  if (known) return known;
  const parsed = parsePreprocessing(meta.preprocessing);
  if ('problem' in parsed) {
    rec.fail('preprocessing', where, parsed.problem);
    return undefined;
  }
  const p = parsed.value;
  // The cache's own mean/std/filter, so only the model is being tested.
  const prepInfo: ModelInfo = { ...info, imageMean: p.mean, imageStd: p.std, resample: p.resample };
  // No pixel limit: only images whose bytes match the row's sha256 are decoded, and extract took them.
  // A cache with flipped copies has them recomputed too.
  const settings = { ...prepareSettingsOf(p, Number.MAX_SAFE_INTEGER), flipCopies: meta.flip === true };
  const stage = { preparer: await createImagePreparer(prepInfo, settings), pool: p.pool, fromRow: p.crops !== undefined };
  preparers.set(id, stage);
  return stage;
}

async function recomputeRow(
  stored: FeatureRow, image: { bytes: Buffer; display: string }, { preparer, pool, fromRow }: RecordedStage, model: LoadedModel, rec: CheckRecorder, where: string,
): Promise<{ main: ImageTokens; mirrored?: ImageTokens } | undefined> {
  const bytes = image.bytes;
  const sha = createHash('sha256').update(bytes).digest('hex');
  if (sha !== stored.sha256) {
    rec.note(`${where}: ${image.display} changed since it was extracted (stale, see the images check); not compared`);
    return undefined;
  }
  let prepared;
  try {
    const bucket = { width: stored.bucketWidth, height: stored.bucketHeight };
    const rowPlan: ImagePlan = {
      bucket: { ...bucket, trainer: bucket }, crop: { x: stored.cropX, y: stored.cropY, w: stored.cropW, h: stored.cropH }, flip: stored.flip === true,
    };
    // The row's own box and orientation when a crops file chose them, as extract planned it.
    prepared = await preparer.prepare(bytes, fromRow ? () => rowPlan : undefined);
  } catch (e) {
    if (!(e instanceof ImageFailure)) throw e;
    rec.fail('provenance', where, `the image no longer decodes: ${e.message}`);
    return undefined;
  }
  const was = `${stored.width}x${stored.height} → ${stored.bucketWidth}x${stored.bucketHeight}, crop ${stored.cropW}x${stored.cropH}+${stored.cropX}+${stored.cropY}`;
  const now = `${prepared.width}x${prepared.height} → ${prepared.bucketWidth}x${prepared.bucketHeight}, crop ${prepared.crop.w}x${prepared.crop.h}+${prepared.crop.x}+${prepared.crop.y}`;
  if (was !== now) {
    rec.fail('provenance', where, `the recorded preprocessing gives ${now}, the row has ${was}`);
    return undefined;
  }
  const p = model.info.patchSize;
  const [gridH, gridW] = [prepared.bucketHeight / p, prepared.bucketWidth / p];
  const pooled = (patches: Float32Array) => poolPatches(patches, gridH, gridW, model.info.hiddenSize, pool);
  /** One orientation through the model, split and pooled as extract stored it. */
  const features = async (pixels: Float32Array): Promise<ImageTokens | undefined> => {
    let out;
    try {
      out = await model.session.run({ [MODEL_INPUT]: { type: 'float32', data: pixels, dims: [1, 3, prepared.bucketHeight, prepared.bucketWidth] } }, tokenOutputs(model.info));
    } catch (e) {
      rec.fail('run', where, `inference failed on the ${prepared.bucketWidth}x${prepared.bucketHeight} input: ${(e as Error).message.split('\n')[0]}`);
      return undefined;
    }
    try {
      const groups = splitOutputs(out, model.info, gridH, gridW)[0]!;
      return { ...groups, patches: pooled(groups.patches), layers: groups.layers.map((l) => ({ ...l, patches: pooled(l.patches) })) };
    } catch (e) {
      if (!(e instanceof TokenLayoutError)) throw e;
      rec.fail('layout', where, e.message);
      return undefined;
    }
  };
  const main = await features(prepared.pixels);
  if (!main || !prepared.mirrored) return main && { main };
  const mirrored = await features(prepared.mirrored);
  return mirrored && { main, mirrored };
}
