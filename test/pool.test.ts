/**
 * --pool N (issue 16): the stored patches are the N×N mean of the unpooled ones (read back by
 * pyarrow), the pool is recorded in the metadata and the fingerprint only when N > 1, validate
 * (recompute, row geometry, alignment) accounts for it, and a bucket grid that does not divide by N
 * is one clear setup error that leaves nothing behind.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { poolPatches } from '../src/model/pool.js';
import { validate } from '../src/validate/validate.js';
import { extractCache } from './fixtures/damaged-cache.js';
import { writeStructured } from './fixtures/images.js';
import { makeTinyModel, type TinyModel } from './fixtures/tiny-model.js';
import { runCli } from './helpers/cli.js';
import { pythonJson } from './helpers/python.js';
import { tempDir } from './helpers/temp.js';

/** Grids 4x4 and 8x4 (patch 16): both divide by 2. */
const BUCKETS = ['--bucket', '64x64', '--bucket', '128x64'];
const IMAGES: Record<string, [number, number]> = { 'a.png': [200, 100], 'b.png': [90, 90], 'c/d.png': [300, 160] };

let images: string;
let model: TinyModel;
let plain: string;
let pooled: string;

before(async () => {
  const dir = tempDir();
  images = path.join(dir, 'images');
  let seed = 3;
  for (const [key, [w, h]] of Object.entries(IMAGES)) await writeStructured(path.join(images, key), w, h, seed++);
  model = await makeTinyModel(dir);
  // float32 on both sides, so the comparison sees only the pooling.
  plain = await extractCache(images, model.onnx, [...BUCKETS, '--dtype', 'float32', '--resize', 'cover']);
  pooled = await extractCache(images, model.onnx, [...BUCKETS, '--dtype', 'float32', '--resize', 'cover', '--pool', '2']);
});

// For each key: the pooled cache's patches against the 2x2 mean of the plain cache's, as pyarrow reads them.
const COMPARE = `
import json, sys
import numpy as np, pyarrow.parquet as pq, glob, os
job = json.load(sys.stdin)
def rows(cache):
    out = {}
    for f in sorted(glob.glob(os.path.join(cache, "shards", "*.parquet"))):
        t = pq.read_table(f)
        meta = {k.decode(): v.decode() for k, v in t.schema.metadata.items()}
        hidden = int(meta["dinofeat.hidden_size"])
        for r in t.to_pylist():
            out[r["key"]] = (r["grid_h"], r["grid_w"], np.frombuffer(r["patches"], dtype=np.float32).reshape(r["grid_h"], r["grid_w"], hidden), r["cls"], meta)
    return out
plain, pooled = rows(job["plain"]), rows(job["pooled"])
report = {}
for key, (gh, gw, p, cls, meta) in plain.items():
    qh, qw, q, qcls, qmeta = pooled[key]
    mean = p.reshape(gh // 2, 2, gw // 2, 2, -1).mean(axis=(1, 3))
    report[key] = {
        "grid": [gh, gw], "pooled_grid": [qh, qw],
        "max_diff": float(np.abs(mean - q).max()), "scale": float(np.abs(mean).max()),
        "cls_equal": cls == qcls,
        "plain_pool": json.loads(meta["dinofeat.preprocessing"]).get("pool", "absent"),
        "pooled_pool": json.loads(qmeta["dinofeat.preprocessing"]).get("pool"),
    }
print(json.dumps(report))
`;

test('--pool 2 stores the 2x2 mean of the unpooled patches, recorded only when pooled', async () => {
  const report = await pythonJson<Record<string, { grid: number[]; pooled_grid: number[]; max_diff: number; scale: number; cls_equal: boolean; plain_pool?: number | string; pooled_pool?: number }>>(
    ['-c', COMPARE], JSON.stringify({ plain, pooled }),
  );
  assert.deepEqual(Object.keys(report).sort(), Object.keys(IMAGES).sort());
  for (const [key, r] of Object.entries(report)) {
    assert.deepEqual(r.pooled_grid, [r.grid[0]! / 2, r.grid[1]! / 2], key);
    // Measured at most 2.4e-7 against values up to 3.1 (float32 rounding of the mean): 1e-6 of the
    // scale is ~10x that, while a block taken from the wrong columns is off by ~1.4.
    assert.ok(r.max_diff <= 1e-6 * r.scale, `${key}: pooled differs from the 2x2 mean by ${r.max_diff} (scale ${r.scale})`);
    assert.ok(r.cls_equal, `${key}: CLS is not pooled`);
    assert.equal(r.plain_pool, 'absent', 'an unpooled cache records no pool (its record is as before)');
    assert.equal(r.pooled_pool, 2);
  }
  const fingerprint = (dir: string) => (JSON.parse(fs.readFileSync(path.join(dir, 'cache.json'), 'utf8')) as { fingerprint: string }).fingerprint;
  assert.notEqual(fingerprint(plain), fingerprint(pooled), 'the pool is fingerprinted');
});

test('validate accounts for the pool: rows, recompute and alignment pass on the pooled cache', async () => {
  // Latent token = 8 x 4 = 32 trainer pixels: the pooled grid (bucket / 32) lines up, the plain one (bucket / 16) does not.
  const o = { model: model.onnx, images: [images], recompute: 3, latentStride: 8, ditPatch: 4 };
  const r = await validate(pooled, o);
  assert.deepEqual(r.checks.map((c) => [c.check, c.status]), [
    ['cache', 'pass'], ['model', 'pass'], ['images', 'pass'], ['recompute', 'pass'], ['alignment', 'pass'],
  ], JSON.stringify(r.checks, null, 1));
  const unpooled = await validate(plain, { latentStride: 8, ditPatch: 4 });
  assert.equal(unpooled.checks.find((c) => c.check === 'alignment')?.status, 'fail');
});

test('--pool whose blocks do not tile a bucket grid is one line naming the flag and the buckets, and writes nothing', async () => {
  const out = path.join(tempDir(), 'cache');
  const r = await runCli(['extract', images, '--out', out, '--model', model.onnx, '--quiet', ...BUCKETS, '--pool', '3']);
  assert.equal(r.code, 2, r.stderr);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, /--pool 3: .*64x64 \(grid 4x4\).*multiples of 48 pixels/);
  assert.equal(fs.existsSync(out), false);
});

test('poolPatches averages each block of the row-major grid', () => {
  // grid 2x4, hidden 2: token (i, j) holds [10i + j, -(10i + j)].
  const grid = Float32Array.from({ length: 2 * 4 * 2 }, (_, k) => {
    const t = Math.floor(k / 2);
    const v = 10 * Math.floor(t / 4) + (t % 4);
    return k % 2 ? -v : v;
  });
  assert.deepEqual([...poolPatches(grid, 2, 4, 2, 2)], [5.5, -5.5, 7.5, -7.5]);
  assert.equal(poolPatches(grid, 2, 4, 2, 1), grid);
});
