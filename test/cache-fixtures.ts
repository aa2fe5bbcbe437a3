/** Shared fixtures for test/cache-*.test.ts: feature rows, shard metadata, a pyarrow runner. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ModelInfo } from '../src/model/info.js';
import type { CacheIdentity } from '../src/cache/identity.js';
import type { FeatureRow, ShardFormat, ShardMeta, TensorDtype } from '../src/shard/schema.js';

export const HIDDEN = 8;
export const NUM_REGISTERS = 2;

export const MODEL: ModelInfo = {
  family: 'dinov3',
  patchSize: 16,
  numRegisters: NUM_REGISTERS,
  hiddenSize: HIDDEN,
  tokenLayout: ['cls', 'registers', 'patches'],
  imageMean: [0.485, 0.456, 0.406],
  imageStd: [0.229, 0.224, 0.225],
  resample: 'bilinear',
  precision: 'fp32',
};

const made: string[] = [];
process.on('exit', () => made.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

/** A fresh temp dir, removed when the test process exits. */
export function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dinofeat-cache-'));
  made.push(dir);
  return dir;
}

export function shardMeta(dtype: TensorDtype, registersKept: boolean): ShardMeta {
  return {
    dinofeatVersion: '0.0.0-test',
    dtype,
    hiddenSize: HIDDEN,
    numRegisters: NUM_REGISTERS,
    registersKept,
    model: MODEL,
    preprocessing: { resize: 'stretch', background: '#ffffff' },
    fingerprint: 'fp-test',
  };
}

export function identity(format: ShardFormat = 'parquet', fingerprint = 'fp-test'): CacheIdentity {
  const meta = shardMeta('float16', false);
  return { ...meta, fingerprint, format, dtype: 'float16', registersKept: false };
}

/** Deterministic pseudo-random values spanning several binades, including negatives and tiny ones. */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = ((x / 2 ** 32) - 0.5) * 2 ** ((x % 13) - 6);
  }
  return out;
}

const GRIDS: ReadonlyArray<[number, number]> = [[2, 3], [3, 2], [1, 4], [2, 2], [4, 1]];

export function makeRow(i: number, registersKept: boolean, key = `dir ${i}/img_${i}.jpg`): FeatureRow {
  const [gridH, gridW] = GRIDS[i % GRIDS.length]!;
  return {
    key,
    sha256: i.toString(16).padStart(64, '0'),
    width: 100 + i, height: 80 + 2 * i,
    bucketWidth: gridW * 16, bucketHeight: gridH * 16,
    gridH, gridW,
    cropX: i, cropY: 2 * i, cropW: 90 + i, cropH: 70 + i,
    cls: values(HIDDEN, 1000 + i),
    ...(registersKept ? { registers: values(NUM_REGISTERS * HIDDEN, 2000 + i) } : {}),
    patches: values(gridH * gridW * HIDDEN, i),
  };
}

/** Float32 values are stored exactly; float16 ones within half a unit in the last place. */
export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, dtype: TensorDtype, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i]!;
    const a = actual[i]!;
    const tol = dtype === 'float32' ? 0 : Math.max(Math.abs(e) * 2 ** -11, 2 ** -25);
    assert.ok(Math.abs(a - e) <= tol, `${what}[${i}]: ${a} vs ${e} (tolerance ${tol})`);
  }
}

export const PYTHON = path.resolve('.venv/bin/python');

/** Runs Python with pyarrow; fails loudly when the venv is missing, as CI must create it. */
export function runPython(script: string, args: readonly string[]): string {
  assert.ok(fs.existsSync(PYTHON), `${PYTHON} is missing: create the venv with pyarrow, numpy and duckdb`);
  return execFileSync(PYTHON, ['-c', script, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
}
