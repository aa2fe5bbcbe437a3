/**
 * Shared fixtures for the tests that run `dinofeat extract` end to end: the CLI as a child
 * process, a tiny converted model, structured test images and a Python runner.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import sharp, { type Sharp } from 'sharp';
import { convertCheckpoint } from '../src/convert/convert.js';
import { TINY_TEST_MODEL, writeTestCheckpoint } from '../src/convert/test-model.js';
import { PYTHON } from './cache-fixtures.js';

export { PYTHON, tempDir } from './cache-fixtures.js';

const CLI = path.resolve('bin/dinofeat.js');

export interface Completed {
  code: number;
  stdout: string;
  stderr: string;
}

function runProcess(command: string, args: readonly string[], stdin?: string, env: NodeJS.ProcessEnv = {}): Promise<Completed> {
  return new Promise((resolve, reject) => {
    // No __pycache__ left in examples/ or test/ by the Python runs.
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(stdin ?? '');
  });
}

/** `dinofeat <args>` as a user runs it: the built CLI in a child process (extra environment optional). */
export function runCli(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<Completed> {
  assert.ok(fs.existsSync(path.resolve('dist/cli.js')), 'dist/cli.js is missing: run npm run build first (npm test does)');
  return runProcess(process.execPath, [CLI, ...args], undefined, env);
}

/** Runs the venv's Python (a file, or ['-c', code]) with a JSON job on stdin; returns stdout parsed as JSON. */
export async function runPythonJson<T>(script: string | readonly string[], job: unknown): Promise<T> {
  const r = await runPython(typeof script === 'string' ? [script] : script, JSON.stringify(job));
  assert.equal(r.code, 0, `python ${typeof script === 'string' ? path.basename(script) : ''} failed:\n${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** The venv's Python; fails loudly when the venv is missing, as CI must create it. */
export function runPython(args: readonly string[], stdin?: string): Promise<Completed> {
  assert.ok(fs.existsSync(PYTHON), `${PYTHON} is missing: create the venv with scripts/python-env.sh`);
  return runProcess(PYTHON, args, stdin);
}

export interface TinyModel {
  /** Hugging Face layout (config.json + model.safetensors): what transformers loads. */
  checkpoint: string;
  /** The same weights converted to ONNX (fp32). */
  onnx: string;
}

/** The tiny DINOv3-shaped test model; another seed gives another model of the same shape. */
export async function makeTinyModel(dir: string, seed = TINY_TEST_MODEL.seed): Promise<TinyModel> {
  const checkpoint = path.join(dir, `checkpoint-${seed}`);
  const onnx = path.join(dir, `model-${seed}.onnx`);
  writeTestCheckpoint(checkpoint, { ...TINY_TEST_MODEL, seed });
  await convertCheckpoint(checkpoint, onnx, { precision: 'fp32' });
  return { checkpoint, onnx };
}

/**
 * RGB8 pixels with real structure, different per seed: colour gradients, a disc, a bar and fine
 * stripes, so that resize filters, orientation and crops all change what the model sees.
 */
export function structuredRgb(width: number, height: number, seed: number): Buffer {
  const px = Buffer.alloc(width * height * 3);
  const cx = width * (0.3 + 0.05 * (seed % 5));
  const cy = height * (0.35 + 0.04 * (seed % 7));
  const r = Math.min(width, height) * 0.22;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      const inDisc = (x - cx) ** 2 + (y - cy) ** 2 < r * r;
      const inBar = x > width * 0.6 && x < width * 0.85 && y > height * 0.15 && y < height * 0.9;
      const stripes = ((x + 2 * y + seed) >> 2) & 1;
      px[i] = inDisc ? 240 : Math.round((255 * x) / Math.max(1, width - 1));
      px[i + 1] = inBar ? 30 : Math.round((255 * y) / Math.max(1, height - 1));
      px[i + 2] = inDisc ? 40 : 90 + 60 * stripes + ((seed * 37) % 60);
    }
  }
  return px;
}

/** A sharp pipeline over structuredRgb, to be encoded by the caller. */
export function structuredImage(width: number, height: number, seed: number): Sharp {
  return sharp(structuredRgb(width, height, seed), { raw: { width, height, channels: 3 } });
}

/** Writes a structured image as JPEG or PNG by the file's extension. */
export async function writeStructured(file: string, width: number, height: number, seed: number): Promise<void> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const img = structuredImage(width, height, seed);
  await (/\.png$/i.test(file) ? img.png() : img.jpeg({ quality: 92 })).toFile(file);
}
