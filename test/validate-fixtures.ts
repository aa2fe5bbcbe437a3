/**
 * Fixtures for test/validate.test.ts and test/inspect.test.ts: caches made by the real CLI, ways
 * to damage one exactly (a row rewritten through the low-level shard writer, which unlike the
 * sink does not refuse a bad row, and journaled like extract does), and tiny ViT-shaped ONNX
 * models built with GraphBuilder whose metadata or outputs break the contract on purpose.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { acquireLock } from '../src/cache/lock.js';
import type { ShardRecord } from '../src/cache/journal.js';
import { TMP_SUFFIX } from '../src/cache/layout.js';
import { writeManifest } from '../src/cache/manifest-summary.js';
import { CacheState } from '../src/cache/manifest.js';
import { removeKeys } from '../src/cache/remove-keys.js';
import { bucketLabel, type EncodedRow, type ShardMeta } from '../src/shard/schema.js';
import { readShardMeta, readShardRows } from '../src/shard/shard-reader.js';
import { createShardWriter } from '../src/shard/shard-writer.js';
import type { ModelInfo } from '../src/model/info.js';
import { DataType, GraphBuilder, encodeModel, i, ints, typedBytes } from '../src/onnx/builder.js';
import { runCli, tempDir } from './extract-fixtures.js';

export { makeTinyModel, runCli, structuredImage, tempDir, writeStructured, PYTHON } from './extract-fixtures.js';

/** `dinofeat extract` into a fresh directory; fails the test unless it exits 0. */
export async function extractCache(images: string, model: string, flags: readonly string[]): Promise<string> {
  const out = path.join(tempDir(), 'cache');
  const r = await runCli(['extract', images, '--out', out, '--model', model, '--quiet', ...flags]);
  assert.equal(r.code, 0, `extract failed:\n${r.stdout}${r.stderr}`);
  return out;
}

export function copyCache(src: string): string {
  const dst = path.join(tempDir(), 'cache');
  fs.cpSync(src, dst, { recursive: true });
  return dst;
}

/** The cache's only live shard (the test caches are small), relative and absolute. */
export async function onlyShard(dir: string): Promise<{ name: string; file: string; record: ShardRecord }> {
  const state = await CacheState.read(dir);
  assert.equal(state.shards.size, 1, 'test cache should have one shard');
  const [record] = [...state.shards.values()];
  return { name: record!.file, file: path.join(dir, record!.file), record: record! };
}

/** Writes rows as a new shard of `part` and journals it, as the sink does but without its checks. */
async function commitShard(state: CacheState, part: string, rows: readonly EncodedRow[], meta: ShardMeta): Promise<string> {
  const file = state.nextShardFile(part, 'parquet');
  const tmp = path.join(state.dir, file + TMP_SUFFIX);
  const writer = createShardWriter('parquet');
  await writer.open(tmp, meta);
  await writer.appendEncoded(rows);
  const written = await writer.close();
  fs.renameSync(tmp, path.join(state.dir, file));
  const buckets: Record<string, number> = {};
  for (const r of rows) buckets[bucketLabel(r)] = (buckets[bucketLabel(r)] ?? 0) + 1;
  await state.commit(part, {
    file, format: 'parquet', rows: rows.length, bytes: written.bytes, sha256: written.sha256,
    keys: rows.map((r) => [r.key, r.sha256]), buckets, time: new Date().toISOString(),
  });
  return file;
}

/** Runs `fn` as the holder of part `part` of the cache, then rebuilds manifest.json. */
async function asPart<T>(dir: string, part: string, fn: (state: CacheState) => Promise<T>): Promise<T> {
  const lock = await acquireLock(dir, part);
  try {
    return await fn(await CacheState.open(dir, part));
  } finally {
    await lock.release();
    await writeManifest(dir);
  }
}

async function storedRow(state: CacheState, key: string): Promise<{ row: EncodedRow; meta: ShardMeta }> {
  const entry = state.keyToEntry.get(key);
  assert.ok(entry, `no key ${key} in the cache`);
  const file = path.join(state.dir, entry.shard);
  const index = state.shards.get(entry.shard)!.keys.findIndex(([k]) => k === key);
  const [row] = await readShardRows(file, { rowStart: index, rowEnd: index + 1 });
  return { row: row!, meta: await readShardMeta(file) };
}

/**
 * Replaces the stored row of `key` by `mutate(row)`, in a new shard of part 9 (the old row is
 * removed as extract removes a changed image's row). Returns the new shard's name.
 */
export function replaceRow(dir: string, key: string, mutate: (row: EncodedRow) => EncodedRow): Promise<string> {
  return asPart(dir, '9', async (state) => {
    const { row, meta } = await storedRow(state, key);
    await removeKeys(state, '9', [key]);
    return commitShard(state, '9', [mutate(row)], meta);
  });
}

/** Stores a second copy of `key`'s row in a new shard of part 9. */
export function duplicateRow(dir: string, key: string): Promise<string> {
  return asPart(dir, '9', async (state) => {
    const { row, meta } = await storedRow(state, key);
    return commitShard(state, '9', [row], meta);
  });
}

/** Replaces `key`'s row by the row another cache holds for it (made with its model and metadata). */
export function transplantRow(dir: string, from: string, key: string): Promise<string> {
  return asPart(dir, '9', async (state) => {
    const donor = await storedRow(await CacheState.read(from), key);
    await removeKeys(state, '9', [key]);
    return commitShard(state, '9', [donor.row], donor.meta);
  });
}

export interface FakeVitOptions {
  patchSize: number;
  hidden: number;
  /** Register tokens the graph really emits. */
  registers: number;
  /** metadata_props; undefined writes none. */
  metadata?: Record<string, string>;
  /** pooler_output = this token of last_hidden_state (0 is right); undefined: no pooler output. */
  poolerToken?: number;
  /** Multiply the input by zero first: the output then ignores the image. */
  ignoreInput?: boolean;
}

export function fakeModelInfo(o: { patchSize: number; hidden: number; registers: number }): ModelInfo {
  return {
    family: 'dinov3', patchSize: o.patchSize, numRegisters: o.registers, hiddenSize: o.hidden,
    tokenLayout: o.registers > 0 ? ['cls', 'registers', 'patches'] : ['cls', 'patches'],
    imageMean: [0.485, 0.456, 0.406], imageStd: [0.229, 0.224, 0.225], resample: 'bilinear', precision: 'fp32',
  };
}

/**
 * A ViT-shaped toy: patchify (strided Conv) → tokens; CLS = mean of the patch tokens; register r
 * = CLS x (r + 2); last_hidden_state = [CLS, registers, patches]. Written to `file`.
 */
export function writeFakeVit(file: string, o: FakeVitOptions): string {
  const g = new GraphBuilder('fake-vit');
  const p = o.patchSize;
  let x = g.input('pixel_values', DataType.FLOAT, ['batch', 3, 'height', 'width']);
  if (o.ignoreInput) x = g.op('Mul', [x, g.constFloat([0])]);
  const weights = Float32Array.from({ length: o.hidden * 3 * p * p }, (_, k) => Math.sin(k * 0.37) * 0.1);
  const w = g.initializer('patch.weight', DataType.FLOAT, [o.hidden, 3, p, p], typedBytes(weights));
  const bias = g.initializer('patch.bias', DataType.FLOAT, [o.hidden], typedBytes(Float32Array.from({ length: o.hidden }, (_, k) => 0.01 * k)));
  const conv = g.op('Conv', [x, w, bias], { kernel_shape: ints([p, p]), strides: ints([p, p]) });
  const flat = g.op('Reshape', [conv, g.constInt64([0, o.hidden, -1])]);
  const patches = g.op('Transpose', [flat], { perm: ints([0, 2, 1]) });
  const cls = g.op('ReduceMean', [patches, g.constInt64([1])], { keepdims: i(1) });
  const registers = Array.from({ length: o.registers }, (_, r) => g.op('Mul', [cls, g.constFloat([r + 2])]));
  g.rename(g.op('Concat', [cls, ...registers, patches], { axis: i(1) }), 'last_hidden_state');
  g.output('last_hidden_state', DataType.FLOAT, ['batch', 'tokens', o.hidden]);
  if (o.poolerToken !== undefined) {
    g.rename(g.op('Gather', ['last_hidden_state', g.constInt64([o.poolerToken], [])], { axis: i(1) }), 'pooler_output');
    g.output('pooler_output', DataType.FLOAT, ['batch', o.hidden]);
  }
  fs.writeFileSync(file, encodeModel(g, { opsets: { '': 18 }, ...(o.metadata ? { metadata: o.metadata } : {}) }));
  return file;
}
