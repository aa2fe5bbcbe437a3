/**
 * The model contract everything downstream relies on, in one place: input pixel_values
 * [batch, 3, H, W] (H and W whole patches), output last_hidden_state [batch, 1 + registers +
 * (H/p)(W/p), hidden] in the metadata's token layout, optional pooler_output equal to token 0,
 * one output per intermediate layer the metadata lists (layer<k>_hidden_state, shaped as
 * last_hidden_state), and dinofeat metadata describing it. `dinofeat convert` writes models that follow it; extract's
 * probe (./probe.ts) and validate's model check test a model against it with the same inputs and
 * the same findings, so the two cannot drift apart.
 */
import { METADATA_KEYS, type ModelInfo } from './info.js';
import type { OrtWorker } from './ort-worker.js';

export const MODEL_INPUT = 'pixel_values';
export const MODEL_OUTPUT = 'last_hidden_state';
export const MODEL_POOLER = 'pooler_output';

/**
 * The output holding the hidden state after block k (1-based) through the model's final norm, as
 * Meta's get_intermediate_layers(norm=True) gives it for block index k - 1, and Hugging Face's
 * norm(hidden_states[k]) (hidden_states[0] is the embeddings).
 */
export const layerOutput = (k: number): string => `layer${k}_hidden_state`;

/** The token outputs extract reads: last_hidden_state, then one per intermediate layer. */
export function tokenOutputs(info: Pick<ModelInfo, 'layers'>): string[] {
  return [MODEL_OUTPUT, ...(info.layers ?? []).map(layerOutput)];
}

/** Grids (h, w) of the two test inputs: different sizes and aspect ratios, so a model that ignores the input size fails. */
export const TEST_GRIDS: ReadonlyArray<readonly [number, number]> = [[2, 3], [3, 1]];
/** Images per test batch: two different ones, so a model that ignores its input shows. */
const TEST_BATCH = 2;

/** Tokens of last_hidden_state for an input of gridH x gridW patches: CLS, registers, patches. */
export function tokenCount(info: Pick<ModelInfo, 'numRegisters'>, gridH: number, gridW: number): number {
  return 1 + info.numRegisters + gridH * gridW;
}

/** The metadata keys a dinofeat model carries (sourceRepo and weightsSha256 are optional). */
export const REQUIRED_METADATA = ['family', 'patchSize', 'numRegisters', 'hiddenSize', 'tokenLayout', 'imageMean', 'imageStd', 'resample', 'precision'] as const;

/** The required metadata keys (as stored) absent from a model's metadata_props. */
export function missingMetadata(metadata: Readonly<Record<string, string>>): string[] {
  return REQUIRED_METADATA.filter((k) => metadata[METADATA_KEYS[k]] === undefined).map((k) => METADATA_KEYS[k]);
}

const GROUPS = ['cls', 'registers', 'patches'];

/** What is wrong with a model description's token layout and patch size, if anything. */
export function layoutProblems(info: Pick<ModelInfo, 'tokenLayout' | 'numRegisters' | 'patchSize'>): string[] {
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

/** How a model run can break the contract. */
export type ContractKind = 'contract' | 'run' | 'token-count' | 'hidden-size' | 'non-finite' | 'degenerate' | 'pooler';

export interface ContractFinding {
  kind: ContractKind;
  /** 'model' (its input/output names) or the test input, e.g. '48x32 input'. */
  where: string;
  detail: string;
}

/** What to do about each kind of finding. */
export const CONTRACT_FIXES: Readonly<Record<ContractKind, string>> = {
  contract: 'convert the checkpoint with dinofeat convert',
  run: 'the model fails on inputs of whole patches: check its patch size metadata, or reconvert it with dinofeat convert',
  'token-count': 'the metadata does not describe this model (patch size or register count): reconvert it with dinofeat convert',
  'hidden-size': 'reconvert the model with dinofeat convert',
  'non-finite': 'the model overflows: convert it at fp32 (dinofeat convert --precision fp32)',
  degenerate: 'the model ignores its input: reconvert it from the checkpoint with dinofeat convert',
  pooler: 'the model does not put CLS first: reconvert it with dinofeat convert',
};

export interface ContractTest {
  findings: ContractFinding[];
  /** The hidden size the last output had (0 when no output was usable). */
  hiddenSize: number;
  /** Whether the model has pooler_output (without it, CLS is token 0 of last_hidden_state). */
  pooler: boolean;
}

/** The part of a loaded model the test needs. */
export type ContractModel = Pick<OrtWorker, 'inputNames' | 'outputNames' | 'run'>;

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

/**
 * Runs a batch of two different test images at each of TEST_GRIDS and checks the outputs against
 * the contract and `info`. A hidden size of 0 in `info` (a foreign export) is learnt from the
 * first output. Stops at the first finding that leaves nothing more to check.
 */
export async function testContract(model: ContractModel, info: ModelInfo): Promise<ContractTest> {
  const findings: ContractFinding[] = [];
  const fail = (kind: ContractKind, where: string, detail: string) => findings.push({ kind, where, detail });
  if (!model.inputNames.includes(MODEL_INPUT) || !model.outputNames.includes(MODEL_OUTPUT)) {
    fail('contract', 'model', `inputs [${model.inputNames.join(', ')}], outputs [${model.outputNames.join(', ')}]; expected input ${MODEL_INPUT} and output ${MODEL_OUTPUT}`);
    return { findings, hiddenSize: 0, pooler: false };
  }
  const missing = tokenOutputs(info).filter((name) => !model.outputNames.includes(name));
  if (missing.length) {
    fail('contract', 'model', `outputs [${model.outputNames.join(', ')}] lack ${missing.join(', ')}, which its metadata (layers ${info.layers?.join(',')}) promises`);
    return { findings, hiddenSize: 0, pooler: false };
  }
  const pooler = model.outputNames.includes(MODEL_POOLER);
  let hidden = info.hiddenSize;
  let seen = 0;
  for (const [gh, gw] of TEST_GRIDS) {
    const h = gh * info.patchSize;
    const w = gw * info.patchSize;
    const where = `${w}x${h} input`;
    const plane = 3 * h * w;
    let out;
    try {
      out = await model.run(
        { [MODEL_INPUT]: { type: 'float32', data: testPixels(TEST_BATCH * plane, gh * 31 + gw), dims: [TEST_BATCH, 3, h, w] } },
        [...tokenOutputs(info), ...(pooler ? [MODEL_POOLER] : [])],
      );
    } catch (e) {
      fail('run', where, `inference failed: ${(e as Error).message.split('\n')[0]}`);
      return { findings, hiddenSize: 0, pooler };
    }
    const lhs = out[MODEL_OUTPUT]!;
    const tokens = tokenCount(info, gh, gw);
    const [b, t, d] = lhs.dims as [number, number, number];
    if (lhs.dims.length !== 3 || b !== TEST_BATCH || t !== tokens) {
      fail('token-count', where, `${MODEL_OUTPUT} is [${lhs.dims.join(', ')}], expected [${TEST_BATCH}, ${tokens}, hidden] = 1 CLS + ${info.numRegisters} registers + ${gh}x${gw} patches of ${info.patchSize}px`);
      return { findings, hiddenSize: 0, pooler };
    }
    if (hidden && d !== hidden) {
      fail('hidden-size', where, `tokens have ${d} values, ${info.hiddenSize ? `the metadata says hidden size ${hidden}` : `${hidden} at the first test input`}`);
    }
    hidden ||= d;
    seen = d;
    const data = lhs.data as Float32Array;
    let bad = 0;
    for (let k = 0; k < data.length; k++) if (!Number.isFinite(data[k]!)) bad++;
    if (bad) fail('non-finite', where, `${bad} NaN/Inf values in ${MODEL_OUTPUT}`);
    const perImage = t * d;
    if (maxAbsDiff(data, 0, data, perImage, perImage).diff === 0) {
      fail('degenerate', where, 'both images of the batch give identical outputs: the model ignores its input');
    }
    for (const name of tokenOutputs(info).slice(1)) {
      const layer = out[name]!;
      if (layer.dims.join() !== lhs.dims.join()) fail('token-count', where, `${name} is [${layer.dims.join(', ')}], ${MODEL_OUTPUT} is [${lhs.dims.join(', ')}]`);
      else if (!(layer.data as Float32Array).every(Number.isFinite)) fail('non-finite', where, `NaN/Inf values in ${name}`);
    }
    if (pooler) {
      const pool = out[MODEL_POOLER]!;
      if (pool.dims.length !== 2 || pool.dims[0] !== TEST_BATCH || pool.dims[1] !== d) {
        fail('pooler', where, `${MODEL_POOLER} is [${pool.dims.join(', ')}], expected [${TEST_BATCH}, ${d}]`);
      } else {
        for (let k = 0; k < TEST_BATCH; k++) {
          const { diff, scale } = maxAbsDiff(data, k * perImage, pool.data as Float32Array, k * d, d);
          // Token 0 and the pooler are the same tensor in a correct graph; allow rounding only.
          if (!(diff <= 1e-6 * Math.max(1, scale))) fail('pooler', `${where}, image ${k}`, `${MODEL_POOLER} differs from token 0 by up to ${diff.toPrecision(3)}`);
        }
      }
    }
  }
  return { findings, hiddenSize: seen, pooler };
}
