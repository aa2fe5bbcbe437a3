import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { convertCheckpoint } from '../src/convert/convert.js';
import { loadModelInfo } from '../src/model/load-info.js';
import { GOLDEN } from './fixtures/reference-outputs.js';
import { runCli } from './helpers/cli.js';
import { tempDir } from './helpers/temp.js';

test('a DINOv2-with-registers model: patch 14 from its metadata, 518x518 buckets give 37x37 grids, validate passes', async () => {
  const dir = tempDir();
  const model = path.join(dir, 'dinov2.onnx');
  await convertCheckpoint(path.join(GOLDEN, 'models', 'tiny_dinov2_reg'), model, { precision: 'fp32' });
  const info = loadModelInfo(model);
  assert.deepEqual([info.family, info.patchSize, info.numRegisters, info.resample], ['dinov2', 14, 4, 'bicubic']);

  const out = path.join(dir, 'cache');
  const images = path.resolve('examples/images');
  const r = await runCli(['extract', images, '--model', model, '--out', out, '--bucket', '518x518', '--registers', '--quiet']);
  assert.equal(r.code, 0, r.stderr);
  const db = await (await DuckDBInstance.create()).connect();
  const rows = (await db.runAndReadAll(`SELECT grid_h, grid_w, bucket_width, bucket_height, octet_length(patches) AS pb, octet_length(registers) AS rb FROM read_parquet('${out}/shards/*.parquet')`)).getRowObjects();
  assert.equal(rows.length, fs.readdirSync(images).filter((f) => /\.(jpg|png)$/.test(f)).length);
  for (const row of rows) {
    assert.deepEqual([row.grid_h, row.grid_w, row.bucket_width, row.bucket_height], [37, 37, 518, 518]);
    assert.equal(Number(row.pb), 37 * 37 * info.hiddenSize * 2);
    assert.equal(Number(row.rb), 4 * info.hiddenSize * 2);
  }
  // A bucket aligned to DINOv3's 16 but not to 14 is refused for this model.
  const bad = await runCli(['extract', images, '--model', model, '--out', path.join(dir, 'bad'), '--bucket', '512x512']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /not a multiple of the model's patch size 14: use 518x518 or 518x504 or 504x518 or 504x504/);

  const v = await runCli(['validate', out, '--model', model, '--images', images, '--recompute', '2']);
  assert.equal(v.code, 0, v.stdout + v.stderr);
  assert.match(v.stdout, /every check passed/);
});
