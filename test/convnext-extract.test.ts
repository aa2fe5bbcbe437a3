/**
 * A DINOv3 ConvNeXt model downstream of convert: its metadata (stride 32 as the patch, no
 * registers) is all extract, validate and the latent-alignment check need. The model is the
 * generated tiny ConvNeXt (random weights), checked against Hugging Face first, so the
 * generator's layout is the one DINOv3ConvNextModel loads.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import ort from '../src/model/ort.js';
import { convertCheckpoint } from '../src/convert/convert.js';
import { TINY_CONVNEXT_TEST_MODEL, writeConvNextTestCheckpoint } from '../src/convert/test-convnext.js';
import { dinoBucket } from '../src/image/buckets.js';
import { loadModelInfo } from '../src/model/load-info.js';
import { alignBucket } from '../src/validate/alignment.js';
import { assertClose, readF32, runModel } from './fixtures/reference-outputs.js';
import { runCli } from './helpers/cli.js';
import { pythonStdout } from './helpers/python.js';
import { tempDir } from './helpers/temp.js';

const dir = tempDir();
const checkpoint = path.join(dir, 'convnext-tiny-test');
const model = path.join(dir, 'convnext.onnx');

before(async () => {
  await writeConvNextTestCheckpoint(checkpoint, TINY_CONVNEXT_TEST_MODEL);
  await convertCheckpoint(checkpoint, model, { precision: 'fp32' });
});

test('the generated ConvNeXt checkpoint loads in Hugging Face with no tensor missing or unused, and the model matches its forward', async () => {
  const [h, w] = [96, 160];
  const code = `
import sys, numpy as np, torch, transformers
m, info = transformers.DINOv3ConvNextModel.from_pretrained(sys.argv[1], output_loading_info=True)
assert not any(info.values()), info
x = torch.from_numpy(np.fromfile(sys.argv[2], dtype=np.float32).reshape(1, 3, ${h}, ${w}))
with torch.no_grad():
    o = m.eval()(pixel_values=x)
o.last_hidden_state.numpy().tofile(sys.argv[3])
o.pooler_output.numpy().tofile(sys.argv[4])`;
  const pixels = Float32Array.from({ length: 3 * h * w }, (_, k) => Math.sin(k * 0.37) * 2);
  const files = ['pixels', 'lhs', 'pool'].map((n) => path.join(dir, `hf-${n}.bin`));
  fs.writeFileSync(files[0]!, pixels);
  await pythonStdout(['-c', code, checkpoint, ...files]);
  const session = await ort.InferenceSession.create(model);
  const got = await runModel(session, pixels, [1, 3, h, w]);
  assertClose('generated tiny ConvNeXt', got, { lastHiddenState: readF32(files[1]!), poolerOutput: readF32(files[2]!) }, 64);
});

test('extract --bucket 832x1216 with a ConvNeXt: 26x38 positions per image, validate passes, alignment reports 2x2 tokens per position', async () => {
  const info = loadModelInfo(model);
  assert.deepEqual([info.family, info.patchSize, info.numRegisters, info.hiddenSize], ['dinov3-convnext', 32, 0, 64]);
  const out = path.join(dir, 'cache');
  const images = path.resolve('examples/images');
  const r = await runCli(['extract', images, '--model', model, '--out', out, '--bucket', '832x1216', '--quiet']);
  assert.equal(r.code, 0, r.stderr);
  const db = await (await DuckDBInstance.create()).connect();
  const rows = (await db.runAndReadAll(`SELECT grid_w, grid_h, bucket_width, bucket_height, octet_length(patches) AS pb FROM read_parquet('${out}/shards/*.parquet')`)).getRowObjects();
  assert.equal(rows.length, fs.readdirSync(images).filter((f) => /\.(jpg|png)$/.test(f)).length);
  for (const row of rows) {
    assert.deepEqual([row.grid_w, row.grid_h, row.bucket_width, row.bucket_height], [26, 38, 832, 1216]);
    assert.equal(Number(row.pb), 26 * 38 * info.hiddenSize * 2);
  }
  // Aligned to a ViT's 16 but not to the stride: refused, naming the sizes that are.
  const bad = await runCli(['extract', images, '--model', model, '--out', path.join(dir, 'bad'), '--bucket', '832x1200']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /not a multiple of the model's patch size 32/);

  const v = await runCli(['validate', out, '--model', model, '--images', images, '--recompute', '2', '--latent-stride', '8', '--dit-patch', '2']);
  assert.equal(v.code, 0, v.stdout + v.stderr);
  assert.match(v.stdout, /every check passed/);
  assert.match(v.stdout, /832x1216→832x1216: DINO grid 26x38 tiles latent grid 52x76, each position covering 2x2 tokens \(32 trainer pixels\), 6 rows/);
});

test('a whole coarser tiling is told apart from other misalignments: every DINO edge a latent edge, every k-th latent edge a DINO edge', () => {
  const trainers = [[832, 1216], [1024, 1024], [1216, 832], [1000, 1000], [768, 1344], [96, 64]] as const;
  const settings = [
    { p: 32, scale: 1, s: 8, dit: 2 }, { p: 32, scale: 1, s: 8, dit: 1 }, { p: 32, scale: 0.5, s: 8, dit: 2 },
    { p: 32, scale: 2, s: 8, dit: 2 }, { p: 32, scale: 0.75, s: 8, dit: 2 }, { p: 16, scale: 0.5, s: 8, dit: 2 }, { p: 16, scale: 1, s: 8, dit: 2 },
  ];
  const seen = new Set<number | undefined>();
  for (const [tw, th] of trainers) {
    for (const { p, scale, s, dit } of settings) {
      const bucket = dinoBucket({ width: tw, height: th }, scale, p);
      const token = s * dit;
      // Reference: k such that the DINO edges in trainer pixels are exactly every k-th latent edge, per axis.
      const axis = (trainer: number, dino: number): number | undefined => {
        if (trainer % token !== 0) return undefined;
        const k = trainer / token / (dino / p);
        if (!Number.isInteger(k)) return undefined;
        const edges = Array.from({ length: dino / p + 1 }, (_, e) => (e * p * trainer) / dino);
        return edges.every((e, n) => Math.abs(e - n * k * token) < 1e-9) ? k : undefined;
      };
      const [kw, kh] = [axis(tw, bucket.width), axis(th, bucket.height)];
      const expected = kw !== undefined && kw === kh ? kw : undefined;
      const got = alignBucket(bucket, { patchSize: p, latentStride: s, ditPatch: dit });
      assert.equal(got.tokensPerPosition, expected, `${tw}x${th} p${p} scale ${scale} S${s} P${dit}`);
      assert.equal(got.aligned, expected === 1);
      seen.add(expected);
    }
  }
  for (const k of [undefined, 1, 2, 4]) assert.ok(seen.has(k), `k = ${k} is exercised`);
});
