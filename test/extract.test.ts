/**
 * `dinofeat extract` end to end, as issue 7's "Done when" list asks: the CLI in a child process on
 * generated images of mixed sizes and orientations; the shards read back with DuckDB and with
 * pyarrow; the stored features checked against ONNX Runtime run directly on each image's
 * pixel_values; EXIF orientation; the 832x1216 bucket; resume, replacement of an edited image,
 * the Arrow format and the refusal to mix models in one cache.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { TINY_TEST_MODEL } from '../src/convert/test-model.js';
import { resolveBuckets } from '../src/image/buckets.js';
import { DEFAULT_MAX_PIXELS } from '../src/image/decode.js';
import { loadModelInfo } from '../src/model/load-info.js';
import ort from '../src/model/ort.js';
import { createImagePreparer } from '../src/pipeline/prepare.js';
import type { StoredScalars } from './fixtures/feature-rows.js';
import { structuredImage, writeStructured } from './fixtures/images.js';
import { tokenCosines } from './fixtures/reference-outputs.js';
import { makeTinyModel, type TinyModel } from './fixtures/tiny-model.js';
import { runCli } from './helpers/cli.js';
import type { Completed } from './helpers/process.js';
import { pythonJson } from './helpers/python.js';
import { tempDir } from './helpers/temp.js';

const HIDDEN = TINY_TEST_MODEL.hiddenSize;
const REGISTERS = TINY_TEST_MODEL.numRegisters;
const BUCKETS = ['64x64', '96x64', '64x96'];
const BUCKET_FLAGS = BUCKETS.flatMap((b) => ['--bucket', b]);

/** Key → [width, height] as generated, and the bucket its aspect ratio must land in. */
const PLAIN: Record<string, { size: [number, number]; bucket: string }> = {
  'land.jpg': { size: [200, 120], bucket: '96x64' },
  'port.png': { size: [90, 150], bucket: '64x96' },
  'square.jpg': { size: [128, 128], bucket: '64x64' },
  'wide.png': { size: [300, 100], bucket: '96x64' },
  'sub/tall.jpeg': { size: [60, 140], bucket: '64x96' },
  'sub/small.JPG': { size: [40, 30], bucket: '96x64' },
  'upright.png': { size: [96, 160], bucket: '64x96' },
};
/** Stored rotated with an EXIF orientation tag; upright they are upright.png. */
const ROTATED = ['exif6.png', 'exif8.png', 'exif6.jpg', 'exif8.jpg'];
const ALL_KEYS = [...Object.keys(PLAIN), ...ROTATED].sort();

const COLUMNS = [
  'key', 'sha256', 'width', 'height', 'bucket_width', 'bucket_height', 'grid_h', 'grid_w',
  'crop_x', 'crop_y', 'crop_w', 'crop_h', 'cls', 'patches',
];

interface Reference {
  bucketWidth: number;
  bucketHeight: number;
  cls: Float32Array;
  registers: Float32Array;
  patches: Float32Array;
}

interface PyRow extends StoredScalars {
  cls_length: number;
  patches_shape: number[];
  registers_shape?: number[];
  cls?: number[];
  patches?: number[];
  registers?: number[];
}

interface PyCache {
  files: string[];
  types: Record<string, string>;
  metadata: Record<string, string>;
  rows: PyRow[];
}

let dir: string;
let images: string;
let model: TinyModel;
let otherModel: TinyModel;
let reference: Map<string, Reference>;
let db: DuckDBConnection;
/** The main cache: float16 Parquet with registers, made in before(). */
let f16Cache: string;

function readWithPyarrow(cache: string, values = true): Promise<PyCache> {
  return pythonJson<PyCache>([path.resolve('test/read-cache.py')], JSON.stringify({ cache, values }));
}

async function extract(args: string[], quiet = true): Promise<Completed> {
  const r = await runCli(['extract', ...args, '--model', model.onnx, ...(quiet ? ['--quiet'] : [])]);
  assert.equal(r.code, 0, `extract ${args.join(' ')} exited ${r.code}:\n${r.stdout}${r.stderr}`);
  return r;
}

async function duckRows(cache: string, select = '*'): Promise<Record<string, unknown>[]> {
  const reader = await db.runAndReadAll(`SELECT ${select} FROM read_parquet('${cache}/shards/*.parquet') ORDER BY key`);
  return reader.getRowObjectsJS() as Record<string, unknown>[];
}

/** ONNX Runtime run directly on each image's pixel_values, tokens sliced as [CLS, registers, patches]. */
async function directReference(onnx: string, imageDir: string, keys: readonly string[], buckets = BUCKETS): Promise<Map<string, Reference>> {
  const info = loadModelInfo(onnx);
  const preparer = await createImagePreparer(info, {
    buckets: resolveBuckets({ bucket: buckets, dinoScale: 1 }, info.patchSize),
    resize: 'stretch',
    dinoScale: 1,
    decode: { maxPixels: DEFAULT_MAX_PIXELS, background: '#ffffff', icc: 'ignore' },
  });
  const session = await ort.InferenceSession.create(onnx);
  const out = new Map<string, Reference>();
  try {
    for (const key of keys) {
      const p = await preparer.prepare(fs.readFileSync(path.join(imageDir, key)));
      const result = await session.run({ pixel_values: new ort.Tensor('float32', p.pixels, [1, 3, p.bucketHeight, p.bucketWidth]) });
      const hidden = result.last_hidden_state!;
      const patchCount = (p.bucketHeight / 16) * (p.bucketWidth / 16);
      assert.deepEqual(hidden.dims, [1, 1 + REGISTERS + patchCount, HIDDEN]);
      const h = hidden.data as Float32Array;
      out.set(key, {
        bucketWidth: p.bucketWidth,
        bucketHeight: p.bucketHeight,
        cls: h.slice(0, HIDDEN),
        registers: h.slice(HIDDEN, (1 + REGISTERS) * HIDDEN),
        patches: h.slice((1 + REGISTERS) * HIDDEN),
      });
    }
  } finally {
    await session.release();
    await preparer.close();
  }
  return out;
}

/**
 * Stored values against the direct run. `rounding` is the storage dtype's relative precision
 * (float16: 2^-11, half a unit in the last place; float32: exact); `slack` covers ONNX Runtime
 * computing a batch of several images instead of one.
 */
function assertMatches(stored: ArrayLike<number>, expected: Float32Array, rounding: number, what: string, slack = 2e-6): void {
  assert.equal(stored.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i]!;
    const tolerance = Math.max(Math.abs(e) * rounding, 2 ** -25) + slack * Math.max(1, Math.abs(e));
    if (!(Math.abs(stored[i]! - e) <= tolerance)) assert.fail(`${what}[${i}]: stored ${stored[i]} vs expected ${e} (tolerance ${tolerance})`);
  }
}

function sha256(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** Every file under `root` with its size, modification time and hash. */
function snapshot(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of fs.readdirSync(root, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const file = path.join(entry.parentPath, entry.name);
    const st = fs.statSync(file);
    out[path.relative(root, file)] = `${st.size} ${st.mtimeMs} ${sha256(file)}`;
  }
  return out;
}

before(async () => {
  dir = tempDir();
  images = path.join(dir, 'images');
  model = await makeTinyModel(dir);
  otherModel = await makeTinyModel(dir, TINY_TEST_MODEL.seed + 1);
  let seed = 1;
  for (const [key, { size }] of Object.entries(PLAIN)) await writeStructured(path.join(images, key), size[0], size[1], seed++);
  // Orientation 6 means "turn 90° clockwise to view", so the stored pixels are the upright image
  // turned 90° counter-clockwise; 8 the other way. sharp's rotate() turns clockwise.
  const upright = fs.readFileSync(path.join(images, 'upright.png'));
  for (const [orientation, turn] of [[6, 270], [8, 90]] as const) {
    const stored = sharp(upright).rotate(turn).withMetadata({ orientation });
    await stored.clone().png().toFile(path.join(images, `exif${orientation}.png`));
    await stored.clone().jpeg({ quality: 95, chromaSubsampling: '4:4:4' }).toFile(path.join(images, `exif${orientation}.jpg`));
  }
  reference = await directReference(model.onnx, images, ALL_KEYS);
  db = await (await DuckDBInstance.create()).connect();
  f16Cache = path.join(dir, 'cache-f16');
  await extract([images, '--out', f16Cache, ...BUCKET_FLAGS, '--registers']);
});

test('fp16 Parquet with --registers: one row per image, every column, grids reshape, values equal direct ONNX Runtime (DuckDB and pyarrow)', async () => {
  const cache = f16Cache;

  // DuckDB: the columns, one row per image, sizes and buckets, CLS values.
  const duck = await duckRows(cache, "*, octet_length(patches)::INTEGER AS patch_bytes, octet_length(registers)::INTEGER AS register_bytes");
  assert.deepEqual(duck.map((r) => r.key), ALL_KEYS);
  const described = (await db.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet('${cache}/shards/*.parquet')`)).getRowObjectsJS();
  assert.deepEqual(described.map((c) => c.column_name), [...COLUMNS.slice(0, 13), 'registers', 'patches']);
  for (const r of duck) {
    const key = r.key as string;
    const ref = reference.get(key)!;
    assert.equal(r.sha256, sha256(path.join(images, key)), `${key}: sha256 of the file bytes`);
    assert.equal(`${r.bucket_width}x${r.bucket_height}`, `${ref.bucketWidth}x${ref.bucketHeight}`);
    const plain = PLAIN[key];
    if (plain) {
      assert.deepEqual([r.width, r.height], plain.size, `${key}: original size`);
      assert.equal(`${r.bucket_width}x${r.bucket_height}`, plain.bucket, `${key}: bucket by aspect ratio`);
    }
    assert.deepEqual([r.grid_h, r.grid_w], [(r.bucket_height as number) / 16, (r.bucket_width as number) / 16]);
    assert.deepEqual([r.crop_x, r.crop_y, r.crop_w, r.crop_h], [0, 0, r.width, r.height], `${key}: stretch keeps the whole image`);
    assert.equal(r.patch_bytes, (r.grid_h as number) * (r.grid_w as number) * HIDDEN * 2, `${key}: [grid_h, grid_w, hidden] float16`);
    assert.equal(r.register_bytes, REGISTERS * HIDDEN * 2);
    // CLS is stored as float32 in both dtypes.
    assertMatches(r.cls as number[], ref.cls, 0, `${key} cls (DuckDB)`);
  }

  // pyarrow + numpy: float16 decoded independently, reshaped to [grid_h, grid_w, hidden].
  const py = await readWithPyarrow(cache);
  assert.equal(py.metadata['dinofeat.dtype'], 'float16');
  assert.equal(py.metadata['dinofeat.registers_kept'], 'true');
  assert.deepEqual(Object.keys(py.types), [...COLUMNS.slice(0, 13), 'registers', 'patches']);
  assert.deepEqual(py.rows.map((r) => r.key).sort(), ALL_KEYS);
  for (const r of py.rows) {
    const ref = reference.get(r.key)!;
    assert.deepEqual(r.patches_shape, [r.grid_h, r.grid_w, HIDDEN]);
    assert.deepEqual(r.registers_shape, [REGISTERS, HIDDEN]);
    assert.equal(r.cls_length, HIDDEN);
    assertMatches(r.cls!, ref.cls, 0, `${r.key} cls (pyarrow)`);
    assertMatches(r.patches!, ref.patches, 2 ** -11, `${r.key} patches (pyarrow)`);
    assertMatches(r.registers!, ref.registers, 2 ** -11, `${r.key} registers (pyarrow)`);
  }
});

test('fp32 storage equals direct ONNX Runtime to ~1e-6; without --registers there is no registers column', async () => {
  const cache = path.join(dir, 'cache-f32');
  await extract([images, '--out', cache, ...BUCKET_FLAGS, '--dtype', 'float32']);
  const py = await readWithPyarrow(cache);
  assert.equal(py.metadata['dinofeat.dtype'], 'float32');
  assert.deepEqual(Object.keys(py.types), COLUMNS);
  assert.deepEqual(py.rows.map((r) => r.key).sort(), ALL_KEYS);
  for (const r of py.rows) {
    const ref = reference.get(r.key)!;
    assert.deepEqual(r.patches_shape, [r.grid_h, r.grid_w, HIDDEN]);
    assertMatches(r.cls!, ref.cls, 0, `${r.key} cls`);
    assertMatches(r.patches!, ref.patches, 0, `${r.key} patches`);
  }
});

test('EXIF orientation 6 and 8: upright width/height, the portrait bucket, the upright pixels', async () => {
  const rows = new Map((await readWithPyarrow(f16Cache)).rows.map((r) => [r.key, r]));
  const upright = rows.get('upright.png')!;
  for (const key of ROTATED) {
    const r = rows.get(key)!;
    const stored = await sharp(path.join(images, key)).metadata();
    assert.deepEqual([stored.width, stored.height], [160, 96], `${key} is stored landscape`);
    assert.deepEqual([r.width, r.height, r.bucket_width, r.bucket_height], [96, 160, 64, 96], `${key}: upright size and bucket`);
    assert.deepEqual([r.crop_w, r.crop_h], [96, 160]);
    if (key.endsWith('.png')) {
      // Lossless: turned upright, the pixels are upright.png's up to the resampler's fixed-point
      // y pass, which runs along the other axis of a transposed frame (pixels within 5.7e-5,
      // resample.test.ts), so are the features: measured 2.9e-6 beyond float16's rounding, slack 5e-6.
      assertMatches(r.patches!, Float32Array.from(upright.patches!), 2 ** -10, `${key} patches vs upright.png`, 5e-6);
    } else {
      // JPEG recompression moves the features a little (mean cosine 0.99992 measured); a wrong
      // turn (180°, or a mirror) would put every patch elsewhere.
      const cos = tokenCosines(r.patches!, upright.patches!, HIDDEN);
      assert.ok(cos.reduce((a, c) => a + c, 0) / cos.length > 0.999, `${key}: patches close to upright.png's`);
    }
  }
});

test('--bucket 832x1216 puts every image in 832x1216 with a 52x76 (W x H) grid', async () => {
  const few = path.join(dir, 'images-832');
  for (const key of ['land.jpg', 'port.png', 'exif6.jpg']) {
    fs.mkdirSync(few, { recursive: true });
    fs.copyFileSync(path.join(images, key), path.join(few, key));
  }
  const cache = path.join(dir, 'cache-832');
  await extract([few, '--out', cache, '--bucket', '832x1216']);
  const rows = await duckRows(cache, 'key, bucket_width, bucket_height, grid_h, grid_w, octet_length(patches)::INTEGER AS bytes');
  assert.equal(rows.length, 3);
  for (const r of rows) {
    assert.deepEqual([r.bucket_width, r.bucket_height, r.grid_w, r.grid_h], [832, 1216, 52, 76], `${r.key}`);
    assert.equal(r.bytes, 76 * 52 * HIDDEN * 2);
  }
  const py = await readWithPyarrow(cache, false);
  assert.ok(py.rows.every((r) => r.patches_shape.join() === `76,52,${HIDDEN}`));
});

test('a rerun after completion writes nothing new and says everything is cached', async () => {
  const cache = f16Cache;
  const shards = snapshot(path.join(cache, 'shards'));
  const journal = snapshot(path.join(cache, 'manifest'));
  const r = await runCli(['extract', images, '--out', cache, '--model', model.onnx, ...BUCKET_FLAGS, '--registers']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`0 extracted, ${ALL_KEYS.length} already cached, 0 failed of ${ALL_KEYS.length} images`));
  assert.deepEqual(snapshot(path.join(cache, 'shards')), shards, 'shard files: same names, bytes and times');
  assert.deepEqual(snapshot(path.join(cache, 'manifest')), journal, 'shard journal unchanged');
});

test('editing one image and rerunning replaces exactly that row', async () => {
  const own = path.join(dir, 'images-edit');
  fs.cpSync(images, own, { recursive: true });
  const cache = path.join(dir, 'cache-edit');
  await extract([own, '--out', cache, ...BUCKET_FLAGS]);
  const before = new Map((await duckRows(cache, 'key, sha256')).map((r) => [r.key as string, r.sha256 as string]));

  // Same size, new content: same bucket, new bytes.
  await structuredImage(128, 128, 99).jpeg({ quality: 92 }).toFile(path.join(own, 'square.jpg'));
  const r = await extract([own, '--out', cache, ...BUCKET_FLAGS], false);
  assert.match(r.stdout, new RegExp(`1 extracted, ${ALL_KEYS.length - 1} already cached, 0 failed, 1 replaced`));

  const grouped = (await db.runAndReadAll(`SELECT key, count(*)::INTEGER AS n FROM read_parquet('${cache}/shards/*.parquet') GROUP BY key ORDER BY key`)).getRowObjectsJS();
  assert.deepEqual(grouped.map((g) => [g.key, g.n]), ALL_KEYS.map((k) => [k, 1]), 'each key exactly once in a plain read');
  const after = new Map((await duckRows(cache, 'key, sha256, cls')).map((row) => [row.key as string, row]));
  for (const key of ALL_KEYS) {
    if (key === 'square.jpg') assert.equal(after.get(key)!.sha256, sha256(path.join(own, key)));
    else assert.equal(after.get(key)!.sha256, before.get(key), `${key} untouched`);
  }
  const fresh = (await directReference(model.onnx, own, ['square.jpg'])).get('square.jpg')!;
  assertMatches(after.get('square.jpg')!.cls as number[], fresh.cls, 0, 'replaced row has the new image features');
});

test('--format arrow: Arrow IPC stream shards that pyarrow reads, same features', async () => {
  const cache = path.join(dir, 'cache-arrow');
  await extract([images, '--out', cache, ...BUCKET_FLAGS, '--format', 'arrow']);
  const py = await readWithPyarrow(cache);
  assert.ok(py.files.length > 0 && py.files.every((f) => f.endsWith('.arrow')));
  assert.deepEqual(Object.keys(py.types), COLUMNS);
  assert.equal(py.types.patches, 'binary');
  assert.deepEqual(py.rows.map((r) => r.key).sort(), ALL_KEYS);
  for (const r of py.rows) {
    const ref = reference.get(r.key)!;
    assert.deepEqual(r.patches_shape, [r.grid_h, r.grid_w, HIDDEN]);
    assertMatches(r.cls!, ref.cls, 0, `${r.key} cls`);
    assertMatches(r.patches!, ref.patches, 2 ** -11, `${r.key} patches`);
  }
});

test('another model into the same cache: one line and exit 2, unless --overwrite', async () => {
  const few = path.join(dir, 'images-model');
  fs.mkdirSync(few);
  fs.copyFileSync(path.join(images, 'land.jpg'), path.join(few, 'land.jpg'));
  const cache = path.join(dir, 'cache-model');
  await extract([few, '--out', cache, '--bucket', '64x64']);
  const shards = snapshot(path.join(cache, 'shards'));
  const fingerprint = (await readWithPyarrow(cache, false)).metadata['dinofeat.fingerprint'];

  const refused = await runCli(['extract', few, '--out', cache, '--bucket', '64x64', '--model', otherModel.onnx]);
  assert.equal(refused.code, 2);
  assert.equal(refused.stderr.trim().split('\n').length, 1, `one line, got:\n${refused.stderr}`);
  assert.match(refused.stderr, /other settings.*--overwrite/);
  assert.deepEqual(snapshot(path.join(cache, 'shards')), shards, 'the cache is left as it was');

  const replaced = await runCli(['extract', few, '--out', cache, '--bucket', '64x64', '--model', otherModel.onnx, '--overwrite', '--quiet']);
  assert.equal(replaced.code, 0, replaced.stderr);
  const py = await readWithPyarrow(cache);
  assert.notEqual(py.metadata['dinofeat.fingerprint'], fingerprint);
  assert.deepEqual(py.rows.map((r) => r.key), ['land.jpg']);
  const other = (await directReference(otherModel.onnx, few, ['land.jpg'], ['64x64'])).get('land.jpg')!;
  assertMatches(py.rows[0]!.cls!, other.cls, 0, 'rows now come from the other model');
});
