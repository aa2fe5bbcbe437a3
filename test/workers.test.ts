import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { DuckDBInstance } from '@duckdb/node-api';
import { workerOfKey } from '../src/source/partition.js';
import { makeTinyModel } from './fixtures/tiny-model.js';
import { runCli } from './helpers/cli.js';
import { tempDir } from './helpers/temp.js';

test('three workers over one directory store every image exactly once; merge reports a missing worker as gaps', async () => {
  const dir = tempDir();
  const images = path.join(dir, 'images');
  fs.mkdirSync(path.join(images, 'sub'), { recursive: true });
  const keys: string[] = [];
  for (let k = 0; k < 24; k++) {
    const key = `${k % 3 === 0 ? 'sub/' : ''}img${k}.png`;
    keys.push(key);
    await sharp({ create: { width: 40 + k * 3, height: 60 - k, channels: 3, background: { r: k * 10, g: 255 - k * 10, b: 128 } } }).png().toFile(path.join(images, key));
  }
  const model = (await makeTinyModel(dir)).onnx;
  const out = path.join(dir, 'cache');
  const common = ['extract', images, '--model', model, '--out', out, '--bucket', '64x64', '--quiet'];

  // Workers 0 and 2 by flags and by the SLURM environment, concurrently; worker 1 never runs.
  const results = await Promise.all([
    runCli([...common, '--num-workers', '3', '--worker-index', '0']),
    runCli(common, { SLURM_ARRAY_TASK_ID: '2', SLURM_ARRAY_TASK_COUNT: '3' }),
  ]);
  for (const r of results) assert.equal(r.code, 0, r.stderr);

  const missing = keys.filter((k) => workerOfKey(k, 3) === 1).sort();
  assert.ok(missing.length > 0 && missing.length < keys.length);
  const merged = await runCli(['merge', out, '--images', images]);
  assert.equal(merged.code, 1, 'gaps make merge exit 1');
  assert.match(merged.stdout, new RegExp(`gaps: ${missing.length} images neither stored nor failed`));

  // The missing worker runs later (RANK/WORLD_SIZE this time); then nothing is missing.
  const last = await runCli(common, { RANK: '1', WORLD_SIZE: '3' });
  assert.equal(last.code, 0, last.stderr);
  const final = await runCli(['merge', out, '--images', images]);
  assert.equal(final.code, 0, final.stdout + final.stderr);
  assert.match(final.stdout, /gaps: 0 images/);

  const db = await (await DuckDBInstance.create()).connect();
  const rows = (await db.runAndReadAll(`SELECT key, count(*) AS n FROM read_parquet('${out}/shards/*.parquet') GROUP BY key ORDER BY key`)).getRowObjects();
  assert.deepEqual(rows.map((r) => r.key), [...keys].sort());
  assert.ok(rows.every((r) => Number(r.n) === 1));
  // Each worker wrote its own shards: three parts.
  const parts = new Set(fs.readdirSync(path.join(out, 'shards')).map((f) => f.split('-')[1]));
  assert.deepEqual([...parts].sort(), ['0_of_3', '1_of_3', '2_of_3']);
  const manifest = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'));
  assert.equal(manifest.counts.rows, keys.length);
});

test('a worker started with --device cuda takes the card of its local rank, and says so when that card cannot start', async () => {
  const dir = tempDir();
  const images = path.join(dir, 'images');
  fs.mkdirSync(images);
  await sharp({ create: { width: 32, height: 32, channels: 3, background: '#808080' } }).png().toFile(path.join(images, 'a.png'));
  const model = (await makeTinyModel(dir)).onnx;
  const common = ['extract', images, '--model', model, '--out', path.join(dir, 'cache'), '--bucket', '64x64', '--quiet'];
  // No CUDA here: the session fails, and its one line names the card the rank chose.
  const byRank = await runCli([...common, '--device', 'cuda'], { LOCAL_RANK: '3', CUDA_VISIBLE_DEVICES: '0,1' });
  assert.equal(byRank.code, 2, byRank.stderr);
  assert.match(byRank.stderr, /--device cuda:1 \(card chosen by LOCAL_RANK=3 of 2 cards; pass --device cuda:N or set CUDA_VISIBLE_DEVICES to choose another\) is not available here/);
  const explicit = await runCli([...common, '--device', 'cuda:5'], { LOCAL_RANK: '3' });
  assert.match(explicit.stderr, /--device cuda:5 is not available here/);
  const webgpu = await runCli([...common, '--device', 'webgpu:1']);
  assert.equal(webgpu.code, 2);
  assert.match(webgpu.stderr, /--device webgpu:1: ONNX Runtime's WebGPU provider cannot pick a card/);
  assert.ok(!fs.existsSync(path.join(dir, 'cache')), 'a device that cannot start leaves no cache behind');
});
