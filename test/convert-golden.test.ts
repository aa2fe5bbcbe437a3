/**
 * Every golden case (test/golden: Hugging Face's forward on DINOv3, DINOv2 and
 * DINOv2-with-registers checkpoints): fp32 conversion run in ONNX Runtime within 1e-4 over all
 * tokens; F16 and BF16 copies of the checkpoints give the same model; the in-graph position
 * resize reproduces the tables Hugging Face interpolated.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import ort, { type InferenceSession } from '../src/model/ort.js';
import { convertCheckpoint } from '../src/convert/convert.js';
import { resizePositionGrid } from '../src/convert/dinov2-graph.js';
import { openCheckpoint, writeSafetensors, type StDtype } from '../src/convert/safetensors.js';
import { DataType, GraphBuilder, encodeModel, typedBytes } from '../src/onnx/builder.js';
import { GOLDEN, type GoldenIndex, assertClose, goldenIndex, maxAbsDiff, readF32, runModel } from './fixtures/reference-outputs.js';
import { tempDir } from './helpers/temp.js';

const work = tempDir();
const indexes: [string, GoldenIndex][] = [['index.json', goldenIndex('index.json')], ['dinov2.json', goldenIndex('dinov2.json')]];

async function convertGolden(index: GoldenIndex, model: string, dir = path.join(GOLDEN, index.models[model]!.dir)): Promise<string> {
  const out = path.join(work, `${model}-${path.basename(dir)}.onnx`);
  await convertCheckpoint(dir, out, { precision: 'fp32' });
  return out;
}

for (const [file, index] of indexes) {
  test(`every case in golden/${file} matches Hugging Face within 1e-4 (fp32)`, async (t) => {
    const sessions = new Map<string, InferenceSession>();
    for (const c of index.cases) {
      if (!sessions.has(c.model)) sessions.set(c.model, await ort.InferenceSession.create(await convertGolden(index, c.model)));
      const input = index.inputs[c.input]!;
      const got = await runModel(sessions.get(c.model)!, readF32(input.file), input.shape);
      assert.deepEqual(got.dims, c.last_hidden_state.shape);
      const hidden = c.last_hidden_state.shape[2]!;
      const d = assertClose(`${c.model}/${c.input}`, got, { lastHiddenState: readF32(c.last_hidden_state.file), poolerOutput: readF32(c.pooler_output.file) }, hidden);
      t.diagnostic(`${c.model}/${c.input}: max abs diff ${d.toExponential(2)}`);
    }
  });
}

/** The golden checkpoint re-saved with every tensor in `dtype` (values are exact in F16 and BF16). */
async function copyAs(index: GoldenIndex, model: string, dtype: StDtype): Promise<string> {
  const src = path.join(GOLDEN, index.models[model]!.dir);
  const dir = path.join(work, `${model}-${dtype}`);
  fs.mkdirSync(dir);
  for (const f of ['config.json', 'preprocessor_config.json']) fs.copyFileSync(path.join(src, f), path.join(dir, f));
  const ckpt = openCheckpoint(src);
  try {
    const tensors = Object.fromEntries(ckpt.names().map((n) => [n, { dtype, shape: ckpt.info(n).shape, data: ckpt.read(n) }]));
    await writeSafetensors(path.join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  } finally {
    ckpt.close();
  }
  return dir;
}

test('F16 and BF16 copies of the golden checkpoints convert to the same model', async () => {
  for (const [, index] of indexes) {
    for (const model of Object.keys(index.models)) {
      const c = index.cases.find((k) => k.model === model)!;
      const input = index.inputs[c.input]!;
      const pixels = readF32(input.file);
      const reference = await runModel(await ort.InferenceSession.create(await convertGolden(index, model)), pixels, input.shape);
      for (const dtype of ['F16', 'BF16'] as const) {
        const copy = await copyAs(index, model, dtype);
        const written = openCheckpoint(copy);
        assert.ok(written.names().every((n) => written.info(n).dtype === dtype));
        written.close();
        const got = await runModel(await ort.InferenceSession.create(await convertGolden(index, model, copy)), pixels, input.shape);
        assert.equal(maxAbsDiff(got.lastHiddenState, reference.lastHiddenState), 0, `${model} ${dtype}: outputs differ from the F32 checkpoint's`);
        assertClose(`${model} ${dtype}`, got, { lastHiddenState: readF32(c.last_hidden_state.file), poolerOutput: readF32(c.pooler_output.file) }, input.shape[1]!);
      }
    }
  }
});

test('the in-graph bicubic resize reproduces the position tables Hugging Face interpolated', async (t) => {
  const index = goldenIndex('dinov2.json');
  for (const c of index.cases) {
    const ckpt = openCheckpoint(path.join(GOLDEN, index.models[c.model]!.dir));
    const table = ckpt.read('embeddings.position_embeddings');
    const [, n, d] = ckpt.info('embeddings.position_embeddings').shape as [number, number, number];
    ckpt.close();
    const G = Math.sqrt(n - 1);
    const grid = new Float32Array(d * G * G);
    for (let p = 0; p < G * G; p++) for (let k = 0; k < d; k++) grid[k * G * G + p] = table[(1 + p) * d + k]!;

    const g = new GraphBuilder('resize');
    const sizes = g.input('sizes', DataType.INT64, [4]);
    const gridName = g.initializer('grid', DataType.FLOAT, [1, d, G, G], typedBytes(grid));
    g.rename(resizePositionGrid(g, gridName, sizes, c.model === 'tiny_dinov2_reg'), 'resized');
    g.output('resized', DataType.FLOAT, [1, d, 'h', 'w']);
    const session = await ort.InferenceSession.create(encodeModel(g, { opsets: { '': 18 } }));
    const [hp, wp] = c.patch_grid;
    const out = (await session.run({ sizes: new ort.Tensor('int64', BigInt64Array.from([1n, BigInt(d), BigInt(hp), BigInt(wp)]), [4]) })).resized!.data as Float32Array;

    const expected = readF32(c.pos_embed!.file); // [1, 1 + hp·wp, d], row 0 = CLS
    assert.equal(maxAbsDiff(expected.subarray(0, d), table.subarray(0, d)), 0, 'CLS keeps position row 0');
    const ours = new Float32Array(hp * wp * d);
    for (let p = 0; p < hp * wp; p++) for (let k = 0; k < d; k++) ours[p * d + k] = out[k * hp * wp + p]!;
    const diff = maxAbsDiff(ours, expected.subarray(d));
    t.diagnostic(`${c.model} ${hp}x${wp}: ONNX Resize vs HF table max abs diff ${diff.toExponential(2)}`);
    assert.ok(diff <= 1e-5, `${c.model}: resized table differs by ${diff}`);
  }
});
