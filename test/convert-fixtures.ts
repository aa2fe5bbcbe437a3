/** Shared fixtures for test/convert-*.test.ts: golden data, ONNX runs, comparisons, HF's forward. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ort, { type InferenceSession } from '../src/model/ort.js';

/** ../shared/golden beside the clone (CI checks it out there too). */
export const GOLDEN = path.resolve('..', 'shared', 'golden');

export interface GoldenCase {
  model: string;
  input: string;
  height: number;
  width: number;
  batch: number;
  patch_grid: [number, number];
  last_hidden_state: { file: string; shape: number[] };
  pooler_output: { file: string; shape: number[] };
  pos_embed?: { file: string; shape: number[] };
}
export interface GoldenIndex {
  cases: GoldenCase[];
  inputs: Record<string, { file: string; shape: number[] }>;
  models: Record<string, { dir: string; safetensors_sha256: string; config: Record<string, unknown> }>;
}

export function goldenIndex(name: 'index.json' | 'dinov2.json'): GoldenIndex {
  const file = path.join(GOLDEN, name);
  assert.ok(fs.existsSync(file), `${file} missing: the golden data must sit at ../shared/golden`);
  return JSON.parse(fs.readFileSync(file, 'utf8')) as GoldenIndex;
}

export function readF32(file: string): Float32Array {
  const b = fs.readFileSync(path.isAbsolute(file) ? file : path.join(GOLDEN, file));
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
}

const made: string[] = [];
process.on('exit', () => made.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

/** A fresh temp dir, removed when the test process exits. */
export function tempDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'dinofeat-convert-'));
  made.push(d);
  return d;
}

export interface ModelOutputs {
  lastHiddenState: Float32Array;
  poolerOutput: Float32Array;
  dims: readonly number[];
}

export async function runModel(session: InferenceSession, pixels: Float32Array, dims: readonly number[]): Promise<ModelOutputs> {
  const out = await session.run({ pixel_values: new ort.Tensor('float32', pixels, dims) });
  return {
    lastHiddenState: out.last_hidden_state!.data as Float32Array,
    poolerOutput: out.pooler_output!.data as Float32Array,
    dims: out.last_hidden_state!.dims,
  };
}

export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length, 'output sizes differ');
  let m = 0;
  for (let k = 0; k < a.length; k++) m = Math.max(m, Math.abs(a[k]! - b[k]!));
  return Number.isNaN(m) ? Infinity : m;
}

/** Cosine similarity of each token ([tokens, hidden] rows) between two outputs. */
export function tokenCosines(a: Float32Array, b: Float32Array, hidden: number): Float64Array {
  const n = a.length / hidden;
  const out = new Float64Array(n);
  for (let t = 0; t < n; t++) {
    let ab = 0;
    let aa = 0;
    let bb = 0;
    for (let k = t * hidden; k < (t + 1) * hidden; k++) {
      ab += a[k]! * b[k]!;
      aa += a[k]! * a[k]!;
      bb += b[k]! * b[k]!;
    }
    out[t] = ab / Math.sqrt(aa * bb);
  }
  return out;
}

/** Asserts one model output against a reference: max abs diff and per-token cosine. */
export function assertClose(label: string, got: ModelOutputs, want: { lastHiddenState: Float32Array; poolerOutput: Float32Array }, hidden: number, tol = 1e-4): number {
  const d = maxAbsDiff(got.lastHiddenState, want.lastHiddenState);
  const dp = maxAbsDiff(got.poolerOutput, want.poolerOutput);
  assert.ok(d <= tol, `${label}: last_hidden_state max abs diff ${d} > ${tol}`);
  assert.ok(dp <= tol, `${label}: pooler_output max abs diff ${dp} > ${tol}`);
  const minCos = Math.min(...tokenCosines(got.lastHiddenState, want.lastHiddenState, hidden));
  assert.ok(minCos >= 0.999999, `${label}: min token cosine ${minCos}`);
  return d;
}

export interface HfModelJob {
  name: string;
  /** transformers class, e.g. DINOv3ViTModel, Dinov2Model, Dinov2WithRegistersModel. */
  class: string;
  config: Record<string, unknown>;
  seed: number;
  /** [batch, height, width] per input. */
  inputs: [number, number, number][];
}

/** Python from the project's venv (CI creates it); tests that need it fail loudly without it. */
export function venvPython(): string {
  const py = path.resolve('.venv/bin/python');
  assert.ok(fs.existsSync(py), `${py} missing: run scripts/python-env.sh (CI does)`);
  return py;
}

/**
 * Runs Hugging Face's forward (test/hf-reference.py) for each model: checkpoints land in
 * <dir>/<name>/ (save_pretrained), inputs and outputs in <dir>/<name>/<b>x<h>x<w>.*.bin.
 */
export async function hfReference(models: HfModelJob[]): Promise<string> {
  const dir = tempDir();
  await new Promise<void>((resolve, reject) => {
    const child = execFile(venvPython(), [path.resolve('test/hf-reference.py')], { maxBuffer: 2 ** 24 }, (err, _out, stderr) =>
      err ? reject(new Error(`hf-reference.py failed: ${stderr}`)) : resolve(),
    );
    child.stdin!.end(JSON.stringify({ out: dir, models }));
  });
  return dir;
}

export function hfOutputs(dir: string, model: string, [b, h, w]: readonly number[]): { pixels: Float32Array; dims: number[]; lastHiddenState: Float32Array; poolerOutput: Float32Array } {
  const stem = path.join(dir, model, `${b}x${h}x${w}`);
  return {
    pixels: readF32(`${stem}.pixel_values.bin`),
    dims: [b!, 3, h!, w!],
    lastHiddenState: readF32(`${stem}.last_hidden_state.bin`),
    poolerOutput: readF32(`${stem}.pooler_output.bin`),
  };
}

export interface PrecisionStats {
  clsMin: number;
  clsMean: number;
  patchMin: number;
  patchMean: number;
  maxAbs: number;
}

/** Accumulates CLS and patch-token cosines and the max abs diff of low-precision vs fp32 outputs. */
export class PrecisionMeter {
  private cls: number[] = [];
  private patches: number[] = [];
  private maxAbs = 0;

  add(reference: Float32Array, got: Float32Array, dims: readonly number[], numRegisters: number): void {
    const [batch, tokens, hidden] = dims as [number, number, number];
    const cos = tokenCosines(reference, got, hidden);
    for (let b = 0; b < batch; b++) {
      this.cls.push(cos[b * tokens]!);
      for (let t = 1 + numRegisters; t < tokens; t++) this.patches.push(cos[b * tokens + t]!);
    }
    this.maxAbs = Math.max(this.maxAbs, maxAbsDiff(reference, got));
  }

  stats(): PrecisionStats {
    const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
    return { clsMin: Math.min(...this.cls), clsMean: mean(this.cls), patchMin: Math.min(...this.patches), patchMean: mean(this.patches), maxAbs: this.maxAbs };
  }
}
