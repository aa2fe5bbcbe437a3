/**
 * The examples a user starts from, on a real cache made by the CLI: examples/load_cache.py (batches
 * by bucket, padded [CLS, patches] context with its attention mask, float16 / float32 decoding,
 * intermediate layers) and examples/queries.sql (DuckDB).
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { convertCheckpoint } from '../src/convert/convert.js';
import { TINY_TEST_MODEL } from '../src/convert/test-model.js';
import { writeStructured } from './fixtures/images.js';
import { makeTinyModel } from './fixtures/tiny-model.js';
import { runCli } from './helpers/cli.js';
import { pythonJson, runPython } from './helpers/python.js';
import { tempDir } from './helpers/temp.js';

const HIDDEN = TINY_TEST_MODEL.hiddenSize;
const REGISTERS = TINY_TEST_MODEL.numRegisters;
const BATCH = 3;

/** Key → bucket its aspect ratio lands in among 64x64, 96x64 and 64x96; grid = bucket / 16. */
const IMAGES: Record<string, { size: [number, number]; bucket: [number, number] }> = {
  'land.jpg': { size: [200, 120], bucket: [96, 64] },
  'wide.png': { size: [300, 100], bucket: [96, 64] },
  'a/small.jpg': { size: [50, 36], bucket: [96, 64] },
  'a/b/land2.png': { size: [150, 100], bucket: [96, 64] },
  'port.png': { size: [90, 150], bucket: [64, 96] },
  'tall.jpg': { size: [60, 140], bucket: [64, 96] },
  'square.jpg': { size: [128, 128], bucket: [64, 64] },
};
/** A byte-for-byte copy of land.jpg under another key, and a file that is not an image. */
const COPY = 'copies/land-copy.jpg';
const BROKEN = 'broken.jpg';
const STORED = [...Object.keys(IMAGES), COPY].sort();
const gridOf = (key: string) => {
  const [w, h] = IMAGES[key === COPY ? 'land.jpg' : key]!.bucket;
  return [h / 16, w / 16];
};

let dir: string;
let images: string;
let checkpoint: string;
let parquetCache: string;
let arrowCache: string;
/** What the loader gave on the float16 Parquet cache (compared with the float32 one) and on the float32 Arrow cache. */
let fromParquet: Batches;
let fromArrow: Batches;

interface Batches {
  dtype: string;
  registers_kept: boolean;
  sampler_len: number;
  bucket: Array<{ keys: string[]; cls: number[]; patches: number[]; registers?: number[]; matches_items: boolean }>;
  padded: Array<{
    keys: string[];
    context: number[];
    mask: number[];
    mask_sums: number[];
    grids: number[][];
    cls_first: boolean;
    patches_follow: boolean;
    padding_zero: boolean;
    masked_attention_ignores_padding: boolean;
  }>;
  /** Per key: largest |float16 value − float32 value| relative to the float32 value's size. */
  float16_vs_float32: Record<string, number>;
}

// Drives the example loader the way a training script would, and reports what it got.
const CHECK = `
import json, sys
import torch
sys.path.insert(0, "examples")
from load_cache import BucketBatchSampler, FeatureCache, pad_context, stack_bucket
from torch.utils.data import DataLoader

job = json.load(sys.stdin)
cache = FeatureCache(job["cache"])
items = {cache[i]["key"]: cache[i] for i in range(len(cache))}
sampler = BucketBatchSampler(cache, job["batch"], seed=1)
out = {"dtype": str(cache.dtype), "registers_kept": cache.registers_kept, "sampler_len": len(sampler), "bucket": [], "padded": []}
for b in DataLoader(cache, batch_sampler=sampler, collate_fn=stack_bucket):
    entry = {"keys": b["keys"], "cls": list(b["cls"].shape), "patches": list(b["patches"].shape),
             "matches_items": all(torch.equal(b["patches"][i], items[k]["patches"]) and torch.equal(b["cls"][i], items[k]["cls"]) for i, k in enumerate(b["keys"]))}
    if "registers" in b:
        entry["registers"] = list(b["registers"].shape)
    out["bucket"].append(entry)

torch.manual_seed(0)
for b in DataLoader(cache, batch_size=job["batch"], shuffle=True, collate_fn=pad_context):
    ctx, mask = b["context"], b["mask"]
    n = mask.sum(1)
    query = torch.randn(ctx.shape[0], 1, 1, ctx.shape[2])
    masked = torch.nn.functional.scaled_dot_product_attention(query, ctx[:, None], ctx[:, None], attn_mask=mask[:, None, None, :])
    alone = [torch.nn.functional.scaled_dot_product_attention(query[i:i + 1], ctx[i:i + 1, None, :n[i]], ctx[i:i + 1, None, :n[i]]) for i in range(len(n))]
    out["padded"].append({
        "keys": b["keys"], "context": list(ctx.shape), "mask": list(mask.shape), "mask_sums": n.tolist(), "grids": b["grids"].tolist(),
        "cls_first": all(torch.equal(ctx[i, 0], items[k]["cls"]) for i, k in enumerate(b["keys"])),
        "patches_follow": all(torch.equal(ctx[i, 1:n[i]], items[k]["patches"].reshape(-1, ctx.shape[2])) for i, k in enumerate(b["keys"])),
        "padding_zero": all(not mask[i, n[i]:].any() and not ctx[i, n[i]:].any() for i in range(len(n))),
        "masked_attention_ignores_padding": all(torch.allclose(masked[i], alone[i][0], atol=1e-6) for i in range(len(n))),
    })

if job.get("float32_cache"):
    full = FeatureCache(job["float32_cache"])
    exact = {full[i]["key"]: full[i]["patches"] for i in range(len(full))}
    out["float16_vs_float32"] = {k: float(((items[k]["patches"] - exact[k]).abs() / exact[k].abs().clamp(min=2**-14)).max()) for k in items}
json.dump(out, sys.stdout)
`;

function loadBatches(cache: string, float32Cache?: string): Promise<Batches> {
  return pythonJson<Batches>(['-c', CHECK], JSON.stringify({ cache, batch: BATCH, float32_cache: float32Cache }));
}

before(async () => {
  dir = tempDir();
  images = path.join(dir, 'images');
  let seed = 1;
  for (const [key, { size }] of Object.entries(IMAGES)) await writeStructured(path.join(images, key), size[0], size[1], seed++);
  fs.mkdirSync(path.join(images, 'copies'));
  fs.copyFileSync(path.join(images, 'land.jpg'), path.join(images, COPY));
  fs.writeFileSync(path.join(images, BROKEN), 'not a JPEG');
  const model = await makeTinyModel(dir);
  checkpoint = model.checkpoint;
  const buckets = ['--bucket', '64x64', '--bucket', '96x64', '--bucket', '64x96'];
  parquetCache = path.join(dir, 'cache-parquet');
  arrowCache = path.join(dir, 'cache-arrow');
  const runs = await Promise.all([
    runCli(['extract', images, '--out', parquetCache, '--model', model.onnx, ...buckets, '--registers', '--quiet']),
    runCli(['extract', images, '--out', arrowCache, '--model', model.onnx, ...buckets, '--format', 'arrow', '--dtype', 'float32', '--quiet']),
  ]);
  for (const r of runs) assert.equal(r.code, 1, `one image fails, so exit 1:\n${r.stdout}${r.stderr}`);
  [fromParquet, fromArrow] = await Promise.all([loadBatches(parquetCache, arrowCache), loadBatches(arrowCache)]);
});

test('load_cache.py by bucket: every image once, one grid per batch, [B, grid_h, grid_w, hidden]', () => {
  for (const got of [fromParquet, fromArrow]) {
    assert.equal(got.bucket.length, got.sampler_len);
    assert.deepEqual(got.bucket.flatMap((b) => b.keys).sort(), STORED, `${got.dtype}: every stored image once`);
    for (const b of got.bucket) {
      const grids = new Set(b.keys.map((k) => gridOf(k).join('x')));
      assert.equal(grids.size, 1, `one grid per batch: ${b.keys}`);
      const [gh, gw] = gridOf(b.keys[0]!);
      assert.ok(b.keys.length <= BATCH);
      assert.deepEqual(b.cls, [b.keys.length, HIDDEN]);
      assert.deepEqual(b.patches, [b.keys.length, gh, gw, HIDDEN]);
      assert.ok(b.matches_items, 'the batch holds the rows of its keys');
    }
    if (got === fromParquet) {
      assert.equal(got.registers_kept, true);
      assert.ok(got.bucket.every((b) => b.registers?.join() === `${b.keys.length},${REGISTERS},${HIDDEN}`));
    } else {
      assert.ok(got.bucket.every((b) => b.registers === undefined));
    }
  }
});

test('load_cache.py padded: [CLS, patches] context, zero padding, and a mask attention can use', () => {
  const got = fromParquet;
  assert.deepEqual(got.padded.flatMap((b) => b.keys).sort(), STORED);
  for (const b of got.padded) {
    const lengths = b.keys.map((k) => 1 + gridOf(k)[0]! * gridOf(k)[1]!);
    assert.deepEqual(b.mask_sums, lengths, `mask marks 1 + grid_h*grid_w real tokens: ${b.keys}`);
    assert.deepEqual(b.context, [b.keys.length, Math.max(...lengths), HIDDEN]);
    assert.deepEqual(b.mask, [b.keys.length, Math.max(...lengths)]);
    assert.deepEqual(b.grids, b.keys.map(gridOf));
    assert.ok(b.cls_first && b.patches_follow && b.padding_zero, JSON.stringify(b));
    assert.ok(b.masked_attention_ignores_padding, 'SDPA with the mask = attention over the real tokens alone');
  }
  assert.ok(got.padded.some((b) => new Set(b.mask_sums).size > 1), 'some batch mixes grid sizes');
});

test('load_cache.py decodes float16 and float32 shards by their metadata', () => {
  const got = fromParquet;
  assert.equal(got.dtype, 'float16');
  assert.deepEqual(Object.keys(got.float16_vs_float32).sort(), STORED);
  for (const [key, rel] of Object.entries(got.float16_vs_float32)) {
    // Half a float16 unit in the last place, plus what batching the images differently costs.
    assert.ok(rel <= 2 ** -11 + 1e-5, `${key}: float16 rows are the float32 rows rounded (relative ${rel})`);
  }
  assert.equal(fromArrow.dtype, 'float32');
});

// The loader on a --flip cache against the raw columns as pyarrow reads them.
const FLIPPED = `
import json, sys
import numpy as np, pyarrow.parquet as pq, glob, os, torch
sys.path.insert(0, "examples")
from load_cache import FeatureCache, stack_bucket, BucketBatchSampler
from torch.utils.data import DataLoader
job = json.load(sys.stdin)
raw = {}
for f in glob.glob(os.path.join(job["flip_cache"], "shards", "*.parquet")):
    for r in pq.read_table(f).to_pylist():
        raw[r["key"]] = r
cache = FeatureCache(job["flip_cache"])
half = lambda b: torch.from_numpy(np.frombuffer(b, np.float16).astype(np.float32))
out = {"rows": {}}
for i in range(len(cache)):
    up, fl = cache.get(i), cache.get(i, flipped=True)
    r = raw[up["key"]]
    out["rows"][up["key"]] = {
        "upright": torch.equal(up["patches"].reshape(-1), half(r["patches"])) and torch.equal(up["registers"].reshape(-1), half(r["registers"])) and up["cls"].tolist() == r["cls"],
        "flipped": torch.equal(fl["patches"].reshape(-1), half(r["patches_flip"])) and torch.equal(fl["registers"].reshape(-1), half(r["registers_flip"])) and fl["cls"].tolist() == r["cls_flip"],
        "flags": [up["flipped"], fl["flipped"]],
        "crops": [list(up["crop"]), list(fl["crop"])],
        "size": [r["width"], r["height"]],
    }
random_cache = FeatureCache(job["flip_cache"], random_flip=True, seed=2)
draws = [random_cache[0] for _ in range(40)]
out["random"] = {
    "both": sorted({d["flipped"] for d in draws}),
    "consistent": all(torch.equal(d["patches"], cache.get(0, flipped=d["flipped"])["patches"]) for d in draws),
}
batch = next(iter(DataLoader(random_cache, batch_sampler=BucketBatchSampler(random_cache, 2), collate_fn=stack_bucket)))
out["batch_flipped"] = batch["flipped"]
errors = []
plain = FeatureCache(job["plain_cache"])
for attempt in (lambda: plain.get(0, flipped=True), lambda: FeatureCache(job["plain_cache"], random_flip=True)):
    try:
        attempt()
    except ValueError as e:
        errors.append(str(e))
out["errors"] = errors
json.dump(out, sys.stdout)
`;

test('load_cache.py returns the upright or the flipped copy of a --flip cache, with its crop box', async () => {
  const flipCache = path.join(dir, 'cache-flip');
  const model = await makeTinyModel(dir);
  const small = path.join(dir, 'small');
  await writeStructured(path.join(small, 'a.png'), 201, 100, 1);
  await writeStructured(path.join(small, 'b.png'), 90, 150, 2);
  const r = await runCli(['extract', small, '--out', flipCache, '--model', model.onnx, '--bucket', '96x64', '--bucket', '64x96', '--resize', 'cover', '--registers', '--flip', '--quiet']);
  assert.equal(r.code, 0, r.stderr);
  const got = await pythonJson<{
    rows: Record<string, { upright: boolean; flipped: boolean; flags: boolean[]; crops: number[][]; size: number[] }>;
    random: { both: boolean[]; consistent: boolean };
    batch_flipped: boolean[];
    errors: string[];
  }>(['-c', FLIPPED], JSON.stringify({ flip_cache: flipCache, plain_cache: parquetCache }));
  assert.deepEqual(Object.keys(got.rows).sort(), ['a.png', 'b.png']);
  for (const [key, row] of Object.entries(got.rows)) {
    assert.ok(row.upright && row.flipped, `${key}: the loader reads the plain and the _flip columns`);
    assert.deepEqual(row.flags, [false, true]);
    const [[x, y, w, h], mirrored] = row.crops as [number[], number[]];
    assert.deepEqual(mirrored, [row.size[0]! - x! - w!, y, w, h], `${key}: the flipped copy covers the crop box mirrored`);
  }
  // 201x100 into 96x64 leaves 51 columns: the mirrored box is a pixel off.
  assert.notDeepEqual(got.rows['a.png']!.crops[0], got.rows['a.png']!.crops[1]);
  assert.deepEqual(got.random, { both: [false, true], consistent: true });
  assert.ok(got.batch_flipped.length >= 1 && got.batch_flipped.every((f) => typeof f === 'boolean'), 'a batch says which of its items are flipped');
  assert.equal(got.errors.length, 2, 'asking a cache without flipped copies for one is an error');
  assert.ok(got.errors.every((e) => /--flip/.test(e)));
});

test('load_cache.py as a script prints the cache and its batches', async () => {
  const r = await runPython(['examples/load_cache.py', arrowCache, '--batch-size', String(BATCH)]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^${STORED.length} images, float32 features of ${HIDDEN}`));
  assert.match(r.stdout, /grids \(h x w\): 4x4: 1, 4x6: 5, 6x4: 2/);
  assert.match(r.stdout, /by bucket: cls \[\d, 64\], patches \[\d, \d, \d, 64\]/);
  assert.match(r.stdout, /padded: context \[3, \d+, 64\], mask \[3, \d+\]/);
});

test('queries.sql answers on the cache: buckets, one key, failures, nearest CLS, duplicates, metadata', async () => {
  const sql = fs.readFileSync('examples/queries.sql', 'utf8');
  const queries = Object.fromEntries(sql.split(/^-- name: /m).slice(1).map((block) => {
    const [name, ...body] = block.split('\n');
    return [name!.trim(), body.join('\n')];
  }));
  assert.deepEqual(Object.keys(queries), ['per_bucket', 'find_key', 'failures', 'nearest', 'duplicates', 'metadata']);
  const db = await (await DuckDBInstance.create()).connect();
  await db.run(`SET VARIABLE cache = '${parquetCache}'`);
  await db.run(`SET VARIABLE image = 'land.jpg'`);
  const run = async (name: string) => (await db.runAndReadAll(queries[name]!)).getRowObjectsJS();

  const perBucket = await run('per_bucket');
  assert.deepEqual(perBucket.map((r) => [r.bucket, r.grid_w, r.grid_h, Number(r.images)]), [['96x64', 6, 4, 5], ['64x96', 4, 6, 2], ['64x64', 4, 4, 1]]);
  assert.ok(perBucket.every((r) => Number(r.patch_bytes) === Number(r.images) * (r.grid_w as number) * (r.grid_h as number) * HIDDEN * 2));

  const found = await run('find_key');
  assert.equal(found.length, 1);
  assert.deepEqual([found[0]!.width, found[0]!.height, found[0]!.bucket_width, found[0]!.bucket_height], [200, 120, 96, 64]);
  assert.match(found[0]!.shard as string, /shards\/part-0-\d+\.parquet$/);

  const failures = await run('failures');
  assert.deepEqual(failures.map((r) => [r.stage, Number(r.images), r.example]), [['decode', 1, BROKEN]]);

  const nearest = await run('nearest');
  assert.equal(nearest.length, STORED.length - 1);
  assert.equal(nearest[0]!.key, COPY, 'the copy of the image is its nearest neighbour');
  assert.ok((nearest[0]!.cosine as number) > 0.99999);
  assert.ok(nearest.slice(1).every((r) => (r.cosine as number) < 0.9999));

  const duplicates = await run('duplicates');
  assert.deepEqual(duplicates.map((r) => [Number(r.copies), r.keys]), [[2, [COPY, 'land.jpg']]]);

  const metadata = Object.fromEntries((await run('metadata')).map((r) => [r.key, r.value]));
  assert.equal(metadata['dinofeat.dtype'], 'float16');
  assert.equal(metadata['dinofeat.registers_kept'], 'true');
  assert.equal(JSON.parse(metadata['dinofeat.model'] as string).hiddenSize, HIDDEN);
});

// The loader on a cache with an intermediate layer: items and bucket batches carry it, shaped as the final features.
const LAYERS_CHECK = `
import json, sys
import numpy as np, pyarrow.parquet as pq, torch
sys.path.insert(0, "examples")
from load_cache import BucketBatchSampler, FeatureCache, stack_bucket
from torch.utils.data import DataLoader

cache = FeatureCache(sys.argv[1])
item = cache[0]
raw = pq.read_table(sys.argv[2]).to_pylist()
row = next(r for r in raw if r["key"] == item["key"])
batch = next(iter(DataLoader(cache, batch_sampler=BucketBatchSampler(cache, 8), collate_fn=stack_bucket)))
json.dump({
    "layers": cache.layers,
    "item": {k: [list(v["cls"].shape), list(v["patches"].shape)] for k, v in item["layers"].items()},
    "matches_column": bool(np.array_equal(item["layers"][1]["patches"].numpy().reshape(-1), np.frombuffer(row["layer1_patches"], dtype=np.float16).astype(np.float32))),
    "differs_from_last": bool((item["layers"][1]["patches"] - item["patches"]).abs().max() > 0.1),
    "batch": {k: [list(v["cls"].shape), list(v["patches"].shape)] for k, v in batch["layers"].items()},
}, sys.stdout)
`;

test('load_cache.py returns intermediate layers: item["layers"][k] and stacked bucket batches', async () => {
  const layered = path.join(dir, 'layered.onnx');
  await convertCheckpoint(checkpoint, layered, { precision: 'fp32', layers: [1] });
  const layerImages = path.join(dir, 'layer-images');
  await writeStructured(path.join(layerImages, 'one.png'), 96, 64, 1);
  await writeStructured(path.join(layerImages, 'two.png'), 90, 60, 2);
  const cache = path.join(dir, 'cache-layers');
  const r = await runCli(['extract', layerImages, '--out', cache, '--model', layered, '--bucket', '96x64', '--quiet']);
  assert.equal(r.code, 0, r.stderr);
  const shard = fs.readdirSync(path.join(cache, 'shards')).find((f) => f.endsWith('.parquet'))!;
  const got = await pythonJson<{ layers: number[]; item: Record<string, number[][]>; matches_column: boolean; differs_from_last: boolean; batch: Record<string, number[][]> }>(
    ['-c', LAYERS_CHECK, cache, path.join(cache, 'shards', shard)],
  );
  assert.deepEqual(got.layers, [1]);
  assert.deepEqual(got.item, { 1: [[HIDDEN], [4, 6, HIDDEN]] });
  assert.ok(got.matches_column && got.differs_from_last, JSON.stringify(got));
  assert.deepEqual(got.batch, { 1: [[2, HIDDEN], [2, 4, 6, HIDDEN]] });

  const script = await runPython(['examples/load_cache.py', cache]);
  assert.equal(script.code, 0, script.stderr);
  assert.match(script.stdout, /intermediate layers \(blocks\): 1\n/);
  assert.match(script.stdout, /  layer 1: cls \[2, 64\], patches \[2, 4, 6, 64\]/);
});
