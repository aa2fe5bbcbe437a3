/**
 * validate --model: the model file against the contract everything downstream relies on. Its
 * dinofeat metadata (patch size, registers, hidden size, token layout, mean/std) is present and
 * consistent; it loads; a batch of two different inputs at two bucket sizes gives
 * 1 + registers + (H/p)(W/p) tokens of the hidden size, finite values that depend on the input,
 * and pooler_output equal to token 0. With a cache, its description must be the cache's model.
 */
import { UserError, isUserError } from '../core/errors.js';
import { chooseDevice, sessionDevice } from '../model/device-choice.js';
import { startSession } from '../model/devices.js';
import { CONTRACT_FIXES, REQUIRED_METADATA, TEST_GRIDS, layoutProblems, missingMetadata, testContract } from '../model/contract.js';
import type { ModelInfo } from '../model/info.js';
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
  /** --device as given (a provider, optionally with a card). */
  device: string;
  threads?: number;
  /** The model the cache was made with (cache.json); compared field by field. */
  cacheModel?: ModelInfo;
}

const show = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v));

export async function checkModel(modelPath: string, o: ModelCheckOptions): Promise<ModelCheckOutput> {
  const rec = new CheckRecorder('model');
  const done = (): ModelCheckOutput => ({ result: rec.result() });
  rec.fix('metadata', 'convert the checkpoint with dinofeat convert (it writes this metadata)');
  rec.fix('layout', 'reconvert the model with dinofeat convert');
  rec.fix('load', 'pass an ONNX model that loads here (dinofeat convert and dinofeat pull make one; dinofeat devices lists working --device values)');
  for (const [kind, text] of Object.entries(CONTRACT_FIXES)) rec.fix(kind, text);

  let metadata: Record<string, string>;
  try {
    metadata = readOnnxHeader(modelPath).metadata;
  } catch {
    rec.fail('load', modelPath, 'not an ONNX model (cannot parse it)');
    return done();
  }
  const missing = missingMetadata(metadata);
  let info: ModelInfo;
  try {
    info = loadModelInfo(modelPath);
  } catch (e) {
    if (!isUserError(e)) throw e;
    rec.fail('metadata', modelPath, e.message);
    return done();
  }
  if (missing.length === REQUIRED_METADATA.length) rec.note('no dinofeat metadata in the file: the layout comes from the config.json beside it');
  else if (missing.length) rec.fail('metadata', modelPath, `metadata lacks ${missing.join(', ')}`);
  for (const p of layoutProblems(info)) rec.fail('layout', modelPath, p);
  if (rec.failed) return done();

  let session: OrtWorker;
  try {
    session = await startSession(modelPath, { ...sessionDevice(chooseDevice(o.device)), threads: o.threads }, modelPath);
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    rec.fail('load', modelPath, e.message);
    return done();
  }
  let keep = false;
  try {
    const test = await testContract(session, info);
    for (const f of test.findings) rec.fail(f.kind, f.where, f.detail);
    if (!test.pooler && !test.findings.some((f) => f.kind === 'contract')) rec.note('no pooler_output: CLS is taken from token 0 of last_hidden_state');
    if (test.hiddenSize) info = { ...info, hiddenSize: test.hiddenSize };
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
