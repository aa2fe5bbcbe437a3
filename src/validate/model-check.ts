/**
 * validate --model: the model file against the contract everything downstream relies on. Its
 * dinofeat metadata (patch size, registers, hidden size, token layout, mean/std) is present and
 * consistent; it loads; a batch of two different inputs at two bucket sizes gives
 * 1 + registers + (H/p)(W/p) tokens of the hidden size, finite values that depend on the input,
 * and pooler_output equal to token 0. With a cache, its description must be the cache's model.
 */
import { UserError, isUserError } from '../core/errors.js';
import { startSession } from '../model/devices.js';
import { METADATA_KEYS, tokenCount, type ModelInfo } from '../model/info.js';
import { loadModelInfo } from '../model/load-info.js';
import type { OrtWorker } from '../model/ort-worker.js';
import { readOnnxHeader } from '../onnx/metadata-reader.js';
import { CheckRecorder, type CheckResult } from './check.js';

export interface LoadedModel {
  path: string;
  /** From the file's metadata, with the hidden size seen in its output. */
  info: ModelInfo;
  session: OrtWorker;
}

export interface ModelCheckOutput {
  result: CheckResult;
  /** Present when the model loaded and honours the contract; the caller closes the session. */
  model?: LoadedModel;
}

export interface ModelCheckOptions {
  device: string;
  threads?: number;
  /** The model the cache was made with (cache.json); compared field by field. */
  cacheModel?: ModelInfo;
}

/** Grids (h, w) of the two test inputs: different sizes and aspect ratios. */
const TEST_GRIDS: ReadonlyArray<readonly [number, number]> = [[2, 3], [3, 1]];

const REQUIRED_KEYS = ['family', 'patchSize', 'numRegisters', 'hiddenSize', 'tokenLayout', 'imageMean', 'imageStd', 'resample', 'precision'] as const;
const GROUPS = ['cls', 'registers', 'patches'];

/** What is wrong with a token layout, if anything. */
function layoutProblems(info: Pick<ModelInfo, 'tokenLayout' | 'numRegisters' | 'patchSize' | 'hiddenSize'>): string[] {
  const problems: string[] = [];
  const layout = info.tokenLayout;
  const unknown = layout.filter((g) => !GROUPS.includes(g));
  if (unknown.length) problems.push(`token layout [${layout.join(', ')}] has unknown groups ${unknown.join(', ')}`);
  for (const g of GROUPS) if (layout.filter((x) => x === g).length > 1) problems.push(`token layout [${layout.join(', ')}] lists ${g} twice`);
  if (!layout.includes('cls') || !layout.includes('patches')) problems.push(`token layout [${layout.join(', ')}] lacks cls or patches`);
  if (layout.includes('registers') !== info.numRegisters > 0) {
    problems.push(`token layout [${layout.join(', ')}] ${layout.includes('registers') ? 'lists' : 'lacks'} registers but the model has ${info.numRegisters}`);
  }
  if (!(info.patchSize >= 1)) problems.push(`patch size ${info.patchSize}`);
  return problems;
}

/** Deterministic, input-like values in [-2, 2] (a fixed LCG: the test must be repeatable). */
function testPixels(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out[i] = (x / 2 ** 32) * 4 - 2;
  }
  return out;
}

function maxAbsDiff(a: Float32Array, aStart: number, b: Float32Array, bStart: number, n: number): { diff: number; scale: number } {
  let diff = 0;
  let scale = 0;
  for (let k = 0; k < n; k++) {
    diff = Math.max(diff, Math.abs(a[aStart + k]! - b[bStart + k]!));
    scale = Math.max(scale, Math.abs(a[aStart + k]!));
  }
  return { diff, scale };
}

const show = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v));

export async function checkModel(modelPath: string, o: ModelCheckOptions): Promise<ModelCheckOutput> {
  const rec = new CheckRecorder('model');
  const done = (): ModelCheckOutput => ({ result: rec.result() });
  rec.fix('metadata', 'convert the checkpoint with dinofeat convert (it writes this metadata)');
  rec.fix('layout', 'reconvert the model with dinofeat convert');
  rec.fix('load', 'pass an ONNX model that loads here (dinofeat convert and dinofeat pull make one; dinofeat devices lists working --device values)');
  rec.fix('run', 'the model fails on inputs of whole patches: check its patch size metadata, or reconvert it with dinofeat convert');
  rec.fix('non-finite', 'the model overflows: convert it at fp32 (dinofeat convert --precision fp32)');
  rec.fix('degenerate', 'the model ignores its input: reconvert it from the checkpoint with dinofeat convert');

  let metadata: Record<string, string>;
  try {
    metadata = readOnnxHeader(modelPath).metadata;
  } catch {
    rec.fail('load', modelPath, 'not an ONNX model (cannot parse it)');
    return done();
  }
  const missing = REQUIRED_KEYS.filter((k) => metadata[METADATA_KEYS[k]] === undefined).map((k) => METADATA_KEYS[k]);
  let info: ModelInfo;
  try {
    info = loadModelInfo(modelPath);
  } catch (e) {
    if (!isUserError(e)) throw e;
    rec.fail('metadata', modelPath, e.message);
    return done();
  }
  if (missing.length === REQUIRED_KEYS.length) rec.note('no dinofeat metadata in the file: the layout comes from the config.json beside it');
  else if (missing.length) rec.fail('metadata', modelPath, `metadata lacks ${missing.join(', ')}`);
  for (const p of layoutProblems(info)) rec.fail('layout', modelPath, p);
  if (rec.failed) return done();

  let session: OrtWorker;
  try {
    session = await startSession(modelPath, { device: o.device, threads: o.threads }, modelPath);
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    rec.fail('load', modelPath, e.message);
    return done();
  }
  let keep = false;
  try {
    const hidden = await runTestBatches(session, info, rec);
    if (hidden) info = { ...info, hiddenSize: hidden };
    if (o.cacheModel) {
      const fields = Object.keys({ ...o.cacheModel, ...info }) as (keyof ModelInfo)[];
      const differs = fields.filter((f) => JSON.stringify(info[f]) !== JSON.stringify(o.cacheModel![f]));
      if (differs.length) {
        rec.fail('cache-model', modelPath, `not the model the cache was made with: ${differs.map((f) => `${f} ${show(info[f])} vs the cache's ${show(o.cacheModel![f])}`).join('; ')}`);
        rec.fix('cache-model', 'validate with the model the cache was made with, or rebuild the cache with this one (dinofeat extract ... --model M --overwrite)');
      }
    }
    rec.info(`${modelPath}: ${info.family}, patch ${info.patchSize}, ${info.numRegisters} registers, hidden ${info.hiddenSize}, ${info.precision}, tokens [${info.tokenLayout.join(', ')}]; tested at ${TEST_GRIDS.map(([h, w]) => `${w * info.patchSize}x${h * info.patchSize}`).join(' and ')}, batch 2`);
    const result = rec.result();
    // Another model than the cache's can still run: recompute then shows how far its features are.
    keep = Object.keys(result.counts).every((kind) => kind === 'cache-model');
    return { result, ...(keep ? { model: { path: modelPath, info, session } } : {}) };
  } finally {
    if (!keep) await session.close();
  }
}

/** Runs the two test batches; returns the hidden size seen (0 when the output is unusable). */
async function runTestBatches(session: OrtWorker, info: ModelInfo, rec: CheckRecorder): Promise<number> {
  if (!session.inputNames.includes('pixel_values') || !session.outputNames.includes('last_hidden_state')) {
    rec.fail('contract', 'model', `inputs [${session.inputNames.join(', ')}], outputs [${session.outputNames.join(', ')}]; expected input pixel_values and output last_hidden_state`);
    rec.fix('contract', 'convert the checkpoint with dinofeat convert');
    return 0;
  }
  const pooler = session.outputNames.includes('pooler_output');
  if (!pooler) rec.note('no pooler_output: CLS is taken from token 0 of last_hidden_state');
  let hidden = 0;
  for (const [gh, gw] of TEST_GRIDS) {
    const h = gh * info.patchSize;
    const w = gw * info.patchSize;
    const where = `${w}x${h} input`;
    const plane = 3 * h * w;
    let out;
    try {
      out = await session.run(
        { pixel_values: { type: 'float32', data: testPixels(2 * plane, gh * 31 + gw), dims: [2, 3, h, w] } },
        pooler ? ['last_hidden_state', 'pooler_output'] : ['last_hidden_state'],
      );
    } catch (e) {
      rec.fail('run', where, `inference failed: ${(e as Error).message.split('\n')[0]}`);
      return 0;
    }
    const lhs = out.last_hidden_state!;
    const tokens = tokenCount(info, gh, gw);
    const [b, t, d] = lhs.dims as [number, number, number];
    if (lhs.dims.length !== 3 || b !== 2 || t !== tokens) {
      rec.fail('token-count', where, `last_hidden_state is [${lhs.dims.join(', ')}], expected [2, ${tokens}, hidden] = 1 CLS + ${info.numRegisters} registers + ${gh}x${gw} patches`);
      rec.fix('token-count', 'the metadata does not describe this model (patch size or register count): reconvert it with dinofeat convert');
      return 0;
    }
    if (info.hiddenSize && d !== info.hiddenSize) {
      rec.fail('hidden-size', where, `tokens have ${d} values, the metadata says hidden size ${info.hiddenSize}`);
      rec.fix('hidden-size', 'reconvert the model with dinofeat convert');
    }
    hidden = d;
    const data = lhs.data as Float32Array;
    let bad = 0;
    for (let k = 0; k < data.length; k++) if (!Number.isFinite(data[k]!)) bad++;
    if (bad) rec.fail('non-finite', where, `${bad} NaN/Inf values in last_hidden_state`);
    const perImage = t * d;
    if (maxAbsDiff(data, 0, data, perImage, perImage).diff === 0) {
      rec.fail('degenerate', where, 'both images of the batch give identical outputs: the model ignores its input');
    }
    if (pooler) {
      const pool = out.pooler_output!;
      if (pool.dims.length !== 2 || pool.dims[0] !== 2 || pool.dims[1] !== d) {
        rec.fail('pooler', where, `pooler_output is [${pool.dims.join(', ')}], expected [2, ${d}]`);
      } else {
        for (let k = 0; k < 2; k++) {
          const { diff, scale } = maxAbsDiff(data, k * perImage, pool.data as Float32Array, k * d, d);
          // Token 0 and the pooler are the same tensor in a correct graph; allow rounding only.
          if (!(diff <= 1e-6 * Math.max(1, scale))) rec.fail('pooler', `${where}, image ${k}`, `pooler_output differs from token 0 by up to ${diff.toPrecision(3)}`);
        }
      }
      rec.fix('pooler', 'the model does not put CLS first: reconvert it with dinofeat convert');
    }
  }
  return hidden;
}
