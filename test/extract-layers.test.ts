/**
 * Intermediate layers end to end: `dinofeat convert --layers` makes the model, `extract` stores
 * layer<k>_cls / layer<k>_patches beside the final columns (Parquet and Arrow, float32 and
 * float16), pyarrow and DuckDB read them, their values are the model's layer output for the
 * pixels of a uniform image (run here on ONNX Runtime directly, not through extract's code),
 * the layer set changes the fingerprint, and validate and inspect know the columns.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import ort from '../src/model/ort.js';
import { convertCheckpoint } from '../src/convert/convert.js';
import { TINY_TEST_MODEL, writeTestCheckpoint } from '../src/convert/test-model.js';
import { layerOutput } from '../src/model/contract.js';
import { shardColumns, type EncodedRow } from '../src/shard/schema.js';
import { readWithPyarrow, type PyarrowCache } from './fixtures/pyarrow-cache.js';
import { writeStructured } from './fixtures/images.js';
import { uniformInput, writeUniform, type Colour } from './fixtures/uniform-image.js';
import { validate } from '../src/validate/validate.js';
import { copyCache, replaceRow } from './fixtures/damaged-cache.js';
import { runCli } from './helpers/cli.js';
import { tempDir } from './helpers/temp.js';

const HIDDEN = TINY_TEST_MODEL.hiddenSize;
const PREFIX = 1 + TINY_TEST_MODEL.numRegisters;
const COLOUR: Colour = [200, 120, 40];
/** The tiny model's preprocessor config: ImageNet statistics. */
const MEAN = [0.485, 0.456, 0.406];
const STD = [0.229, 0.224, 0.225];
const BUCKET = ['--bucket', '64x64'];

let dir: string;
let layered: string;
let plain: string;
let convertOut: string;
let caches: { layered: PyarrowCache; plain: PyarrowCache; arrow16: PyarrowCache };
let layeredCache: string;
let images: string;

const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let k = 0; k < a.length; k++) m = Math.max(m, Math.abs(a[k]! - b[k]!));
  return m;
};

before(async () => {
  dir = tempDir();
  const checkpoint = path.join(dir, 'checkpoint');
  await writeTestCheckpoint(checkpoint, TINY_TEST_MODEL);
  layered = path.join(dir, 'layered.onnx');
  plain = path.join(dir, 'plain.onnx');
  // Block 2 is the last of the tiny model's two: it is last_hidden_state already.
  const converted = await runCli(['convert', checkpoint, '--out', layered, '--layers', '2,1']);
  assert.equal(converted.code, 0, converted.stderr);
  convertOut = converted.stdout;
  await convertCheckpoint(checkpoint, plain, { precision: 'fp32' });

  images = path.join(dir, 'images');
  await writeUniform(path.join(images, 'uniform.png'), 64, 64, COLOUR);
  await writeStructured(path.join(images, 'structured.jpg'), 80, 60, 3);
  layeredCache = path.join(dir, 'cache-layered');
  const runs = await Promise.all([
    runCli(['extract', images, '--out', layeredCache, '--model', layered, ...BUCKET, '--dtype', 'float32', '--quiet']),
    runCli(['extract', images, '--out', path.join(dir, 'cache-plain'), '--model', plain, ...BUCKET, '--dtype', 'float32', '--quiet']),
    runCli(['extract', images, '--out', path.join(dir, 'cache-arrow16'), '--model', layered, ...BUCKET, '--format', 'arrow', '--registers', '--quiet']),
  ]);
  for (const r of runs) assert.equal(r.code, 0, r.stderr);
  const [l, p, a] = await Promise.all(['cache-layered', 'cache-plain', 'cache-arrow16'].map((c) => readWithPyarrow(path.join(dir, c))));
  caches = { layered: l!, plain: p!, arrow16: a! };
});

test('convert --layers 2,1 on a 2-block model adds block 1 only and says so', () => {
  assert.match(convertOut, /layers: 1 and the last/);
});

test('shards hold layer1_cls (list<float>) and layer1_patches (binary) after the final columns; pyarrow reads both formats', () => {
  const l = caches.layered;
  assert.deepEqual(Object.keys(l.types), [...shardColumns(false, [1])]);
  assert.match(l.types.layer1_cls!, /^list<element: float/);
  assert.equal(l.types.layer1_patches, 'binary');
  assert.deepEqual(JSON.parse(l.metadata['dinofeat.model']!).layers, [1]);
  assert.match(l.metadata['dinofeat.layout']!, /layer<k>_cls, layer<k>_patches for k in 1/);
  assert.deepEqual(Object.keys(caches.arrow16.types), [...shardColumns(true, [1])]);
  assert.equal(caches.arrow16.types.layer1_patches, 'binary');

  const p = caches.plain;
  assert.deepEqual(Object.keys(p.types), [...shardColumns(false)]);
  assert.equal(p.metadata['dinofeat.layout'], 'patches: [grid_h*grid_w, hidden] row-major little-endian float32; cls: list<float32>[hidden]');
  assert.equal(JSON.parse(p.metadata['dinofeat.model']!).layers, undefined);
});

test('layer1 columns are the model\'s layer output for the image\'s pixels; the final columns are unchanged by adding layers', async (t) => {
  const session = await ort.InferenceSession.create(layered);
  const out = await session.run({ pixel_values: new ort.Tensor('float32', uniformInput(COLOUR, MEAN, STD, 64, 64), [1, 3, 64, 64]) });
  const tokens = (name: string) => out[name]!.data as Float32Array;
  const row = caches.layered.rows['uniform.png']!;
  const layer = tokens(layerOutput(1));
  const last = tokens('last_hidden_state');
  const diffs = {
    layerCls: maxDiff(row.layer1_cls as number[], layer.subarray(0, HIDDEN)),
    layerPatches: maxDiff(row.layer1_patches as number[], layer.subarray(PREFIX * HIDDEN)),
    cls: maxDiff(row.cls as number[], last.subarray(0, HIDDEN)),
    patches: maxDiff(row.patches as number[], last.subarray(PREFIX * HIDDEN)),
  };
  // Measured up to 1.1e-6 (the batch of two at extract vs one here): 10x margin. Block 1 read from
  // last_hidden_state instead (a plausible bug) is 1.6 off.
  t.diagnostic(JSON.stringify(diffs));
  for (const [what, d] of Object.entries(diffs)) assert.ok(d <= 1e-5, `${what}: max abs diff ${d}`);
  assert.ok(maxDiff(row.layer1_patches as number[], row.patches as number[]) > 0.1, 'block 1 differs from the last block');

  for (const key of ['uniform.png', 'structured.jpg']) {
    const plainRow = caches.plain.rows[key]!;
    const layeredRow = caches.layered.rows[key]!;
    assert.ok(maxDiff(plainRow.patches as number[], layeredRow.patches as number[]) <= 1e-5, `${key}: final patches match the model without layers`);
    // float16 storage: half a unit in the last place of values of magnitude up to ~10.
    assert.ok(maxDiff(caches.arrow16.rows[key]!.layer1_patches as number[], layeredRow.layer1_patches as number[]) <= 1e-2);
  }
});

test('the layer set is part of the fingerprint', () => {
  assert.notEqual(caches.layered.metadata['dinofeat.fingerprint'], caches.plain.metadata['dinofeat.fingerprint']);
});

test('DuckDB reads the layer columns', async () => {
  const db = await (await DuckDBInstance.create()).connect();
  const rows = (await db.runAndReadAll(`SELECT key, len(layer1_cls) AS n, octet_length(layer1_patches) AS bytes FROM read_parquet('${layeredCache}/shards/*.parquet') ORDER BY key`)).getRowObjectsJS();
  assert.deepEqual(rows.map((r) => [r.key, Number(r.n), Number(r.bytes)]), [['structured.jpg', HIDDEN, 16 * HIDDEN * 4], ['uniform.png', HIDDEN, 16 * HIDDEN * 4]]);
});

test('validate recomputes the layer columns; a model without the layer fails it; inspect shows the layers', async () => {
  const ok = await runCli(['validate', layeredCache]);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /layer1_patches: lowest token cosine/);
  const other = await runCli(['validate', layeredCache, '--model', plain]);
  assert.equal(other.code, 1, other.stdout);
  assert.match(other.stdout, /layer 1 is stored but .*plain\.onnx does not output it/);

  const summary = await runCli(['inspect', layeredCache]);
  assert.match(summary.stdout, /layers +blocks 1 \(layer<k>_cls, layer<k>_patches/);
  const row = await runCli(['inspect', layeredCache, '--key', 'uniform.png']);
  assert.match(row.stdout, /layer 1 +cls norm [\d.]+; patches mean norm [\d.]+/);
});

test('validate\'s row checks catch a layer column cut short and a NaN in a layer CLS, naming the column', async () => {
  const cases: Array<[(row: EncodedRow) => EncodedRow, string, RegExp]> = [
    [(row) => ({ ...row, layer1_patches: row.layer1_patches!.slice(0, -HIDDEN * 4) }), 'patch-count', /layer1_patches holds 15 vectors, grid 4x4 needs 16/],
    [(row) => ({ ...row, layer1_cls: Float32Array.from(row.layer1_cls!, (v, k) => (k === 3 ? NaN : v)) }), 'non-finite', /NaN\/Inf values: layer1_cls 1/],
  ];
  for (const [mutate, kind, detail] of cases) {
    const damaged = copyCache(layeredCache);
    await replaceRow(damaged, 'uniform.png', mutate);
    const r = await validate(damaged, { recompute: 0 });
    const cache = r.checks.find((c) => c.check === 'cache')!;
    assert.deepEqual(Object.keys(cache.counts), [kind], JSON.stringify(cache.findings));
    assert.match(cache.findings[0]!.detail, detail);
  }
});

test('a changed image is re-extracted into a layered cache: the rewritten shard keeps the other row\'s layer columns', async () => {
  const cache = copyCache(layeredCache);
  await writeUniform(path.join(images, 'uniform.png'), 64, 64, [10, 20, 30]);
  try {
    const r = await runCli(['extract', images, '--out', cache, '--model', layered, ...BUCKET, '--dtype', 'float32', '--quiet']);
    assert.equal(r.code, 0, r.stderr);
    const after = await readWithPyarrow(cache);
    assert.deepEqual(after.rows['structured.jpg']!.layer1_patches, caches.layered.rows['structured.jpg']!.layer1_patches);
    assert.ok(maxDiff(after.rows['uniform.png']!.layer1_cls as number[], caches.layered.rows['uniform.png']!.layer1_cls as number[]) > 0.01);
    const v = await validate(cache, { recompute: 2 });
    assert.ok(v.checks.every((c) => c.status !== 'fail'), JSON.stringify(v.checks.filter((c) => c.status === 'fail')));
  } finally {
    await writeUniform(path.join(images, 'uniform.png'), 64, 64, COLOUR);
  }
});
