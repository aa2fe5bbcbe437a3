/**
 * An int8 model's features of an image are its own, whatever images share its batch. The int8
 * graph quantises each MatMul's activations with one scale per batch tensor (com.microsoft
 * DynamicQuantizeMatMul), so extract runs int8 models one image at a time (src/pipeline/extract.ts).
 * The control shows the effect is real for these images; the extract run, with --batch-size 4 and
 * the ViT-S-shaped model (slow enough that images queue up into batches), must store for every
 * image what the model gives for that image alone.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { convertCheckpoint } from '../src/convert/convert.js';
import { VITS16_SHAPED, seededRandom, writeTestCheckpoint } from '../src/convert/test-model.js';
import { openReadOnly } from '../src/cache/open-read-only.js';
import { resolveBuckets } from '../src/image/buckets.js';
import { DEFAULT_MAX_PIXELS } from '../src/image/decode.js';
import { loadModelInfo } from '../src/model/load-info.js';
import ort, { type InferenceSession } from '../src/model/ort.js';
import { createImagePreparer } from '../src/pipeline/prepare.js';
import { decodeRow } from '../src/shard/schema.js';
import { iterateShardRows } from '../src/shard/shard-reader.js';
import { structuredImage } from './fixtures/images.js';
import { maxAbsDiff } from './fixtures/reference-outputs.js';
import { runCli } from './helpers/cli.js';
import { tempDir } from './helpers/temp.js';

const SIDE = 224;
const HIDDEN = VITS16_SHAPED.hiddenSize;
const PATCHES = (SIDE / VITS16_SHAPED.patchSize) ** 2;
/** Model threads in extract and in the direct runs, so both pick the same kernels' partitions. */
const THREADS = 2;
/**
 * Stored float32 features against the model run on the image alone: measured 0 (bit-identical).
 * The margin allows another CPU's kernels to split the work differently; batching the images
 * moves them by ~1e-1 (the control below).
 */
const SAME_ALONE = 1e-5;

const work = tempDir();
const images = path.join(work, 'images');
let model: string;
/** Key → the image's normalised pixels, [3, SIDE, SIDE]. */
const pixels = new Map<string, Float32Array>();

/** A flat dark image and a bright noisy one: far apart in every activation range. */
async function writeImages(): Promise<void> {
  fs.mkdirSync(images, { recursive: true });
  const rand = seededRandom(5);
  for (let k = 0; k < 4; k++) {
    const noisy = Buffer.from(Array.from({ length: SIDE * SIDE * 3 }, () => 200 + Math.floor(56 * rand())));
    await structuredImage(SIDE, SIDE, k).png().toFile(path.join(images, `${k}-a-subject.png`));
    await sharp({ create: { width: SIDE, height: SIDE, channels: 3, background: { r: 6 + k, g: 8, b: 10 } } }).png().toFile(path.join(images, `${k}-b-dark.png`));
    await sharp(noisy, { raw: { width: SIDE, height: SIDE, channels: 3 } }).png().toFile(path.join(images, `${k}-c-bright.png`));
  }
}

before(async () => {
  await writeImages();
  const checkpoint = path.join(work, 'checkpoint');
  await writeTestCheckpoint(checkpoint, VITS16_SHAPED);
  model = path.join(work, 'int8.onnx');
  await convertCheckpoint(checkpoint, model, { precision: 'int8' });
  const info = loadModelInfo(model);
  const preparer = await createImagePreparer(info, {
    buckets: resolveBuckets({ bucket: [`${SIDE}x${SIDE}`], dinoScale: 1 }, info.patchSize),
    resize: 'stretch',
    dinoScale: 1,
    decode: { maxPixels: DEFAULT_MAX_PIXELS, background: '#ffffff', icc: 'ignore' },
  });
  try {
    for (const key of fs.readdirSync(images)) pixels.set(key, (await preparer.prepare(fs.readFileSync(path.join(images, key)))).pixels);
  } finally {
    await preparer.close();
  }
});

/** last_hidden_state of the images run as one batch, one [tokens · HIDDEN] array per image. */
async function runBatch(session: InferenceSession, keys: readonly string[]): Promise<Float32Array[]> {
  const per = 3 * SIDE * SIDE;
  const input = new Float32Array(keys.length * per);
  keys.forEach((key, k) => input.set(pixels.get(key)!, k * per));
  const out = (await session.run({ pixel_values: new ort.Tensor('float32', input, [keys.length, 3, SIDE, SIDE]) })).last_hidden_state!;
  const data = out.data as Float32Array;
  const tokens = data.length / keys.length;
  return keys.map((_, k) => data.slice(k * tokens, (k + 1) * tokens));
}

/** [CLS, patches] of a last_hidden_state (registers dropped, as extract stores them by default). */
function clsAndPatches(hidden: Float32Array): Float32Array {
  const out = new Float32Array((1 + PATCHES) * HIDDEN);
  out.set(hidden.subarray(0, HIDDEN));
  out.set(hidden.subarray((1 + VITS16_SHAPED.numRegisters) * HIDDEN), HIDDEN);
  return out;
}

test('control: the int8 graph run as one batch moves an image with its neighbours (one activation scale per batch)', async (t) => {
  const session = await ort.InferenceSession.create(model, { intraOpNumThreads: THREADS });
  try {
    const [alone] = await runBatch(session, ['0-a-subject.png']);
    const [, mixed] = await runBatch(session, ['0-b-dark.png', '0-a-subject.png', '0-c-bright.png']);
    const moved = maxAbsDiff(alone!, mixed!);
    t.diagnostic(`subject alone vs between a dark and a bright image: max abs ${moved.toExponential(2)}`);
    assert.ok(moved > 100 * SAME_ALONE, `batching moved the subject only by ${moved}: the test below could not tell`);
  } finally {
    await session.release();
  }
});

test('extract with --batch-size 4 stores for every int8 image what the model gives for it alone', async (t) => {
  const out = path.join(work, 'cache');
  const r = await runCli(['extract', images, '--out', out, '--model', model, '--bucket', `${SIDE}x${SIDE}`, '--batch-size', '4', '--threads', String(THREADS), '--dtype', 'float32', '--quiet']);
  assert.equal(r.code, 0, `exit ${r.code}\n${r.stdout}${r.stderr}`);
  assert.match(r.stdout, /batch: 1 image a call \(int8 model: one image at a time\)/, 'the model runs alone what --batch-size 4 asked to batch');
  const session = await ort.InferenceSession.create(model, { intraOpNumThreads: THREADS });
  const target = await openReadOnly(out);
  let seen = 0;
  let worst = 0;
  try {
    for (const shard of target.shards) {
      for await (const rows of iterateShardRows(shard.path)) {
        for (const encoded of rows) {
          const row = decodeRow(encoded, 'float32');
          const [alone] = await runBatch(session, [row.key]);
          const want = clsAndPatches(alone!);
          const got = new Float32Array([...row.cls, ...row.patches]);
          const diff = maxAbsDiff(want, got);
          worst = Math.max(worst, diff);
          assert.ok(diff <= SAME_ALONE, `${row.key}: stored features differ from the image alone by ${diff}`);
          seen++;
        }
      }
    }
  } finally {
    await session.release();
  }
  t.diagnostic(`${seen} images, largest difference from the image alone ${worst.toExponential(2)}`);
  assert.equal(seen, pixels.size);
});
