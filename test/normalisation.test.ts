/**
 * Normalisation at convert, end to end: by default the checkpoint's preprocessor config decides
 * the mean and std; --norm sat493m or --image-mean/--image-std replace them. The chosen constants
 * reach the ONNX metadata, the pixels extract feeds the model (a uniform image's features equal
 * the model run directly on (colour / 255 - mean) / std, and not on ImageNet's), the shards'
 * model and preprocessing records, and the fingerprint.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import ort from '../src/model/ort.js';
import { TINY_CONVNEXT_TEST_MODEL, writeConvNextTestCheckpoint } from '../src/convert/test-convnext.js';
import { TINY_TEST_MODEL, writeTestCheckpoint } from '../src/convert/test-model.js';
import { METADATA_KEYS } from '../src/model/info.js';
import { NORM_PRESETS } from '../src/model/normalisation.js';
import { readOnnxHeader } from '../src/onnx/metadata-reader.js';
import { readWithPyarrow } from './fixtures/pyarrow-cache.js';
import { uniformInput, writeUniform, type Colour } from './fixtures/uniform-image.js';
import { runCli } from './helpers/cli.js';
import { tempDir } from './helpers/temp.js';

const HIDDEN = TINY_TEST_MODEL.hiddenSize;
const COLOUR: Colour = [90, 160, 220];
const SAT = NORM_PRESETS.sat493m;
const IMAGENET = NORM_PRESETS.imagenet;

let dir: string;
let checkpoint: string;
let images: string;

const metaOf = (onnx: string) => {
  const m = readOnnxHeader(onnx).metadata;
  return { mean: JSON.parse(m[METADATA_KEYS.imageMean]!) as number[], std: JSON.parse(m[METADATA_KEYS.imageStd]!) as number[] };
};

async function convert(name: string, ...flags: string[]): Promise<string> {
  const out = path.join(dir, `${name}.onnx`);
  const r = await runCli(['convert', checkpoint, '--out', out, ...flags]);
  assert.equal(r.code, 0, r.stderr);
  return out;
}

before(async () => {
  dir = tempDir();
  checkpoint = path.join(dir, 'checkpoint');
  await writeTestCheckpoint(checkpoint, TINY_TEST_MODEL);
  images = path.join(dir, 'images');
  await writeUniform(path.join(images, 'uniform.png'), 64, 64, COLOUR);
});

test('the checkpoint\'s preprocessor config decides by default; --norm and --image-mean/--image-std replace it', async () => {
  assert.deepEqual(metaOf(await convert('default')), { mean: [...IMAGENET.mean], std: [...IMAGENET.std] });
  assert.deepEqual(metaOf(await convert('sat', '--norm', 'sat493m')), { mean: [0.43, 0.411, 0.296], std: [0.213, 0.156, 0.143] });
  assert.deepEqual(metaOf(await convert('custom', '--image-mean', '0.5,0.4,0.3', '--image-std', '0.2,0.25,0.3')), { mean: [0.5, 0.4, 0.3], std: [0.2, 0.25, 0.3] });
  assert.deepEqual(metaOf(await convert('mean-only', '--image-mean', '0.5,0.4,0.3')), { mean: [0.5, 0.4, 0.3], std: [...IMAGENET.std] });

  // A checkpoint whose processor config says other constants: those are the default.
  const other = path.join(dir, 'other-checkpoint');
  fs.cpSync(checkpoint, other, { recursive: true });
  const pre = path.join(other, 'preprocessor_config.json');
  fs.writeFileSync(pre, JSON.stringify({ ...JSON.parse(fs.readFileSync(pre, 'utf8')), image_mean: [0.3, 0.3, 0.3], image_std: [0.1, 0.2, 0.3] }));
  const out = path.join(dir, 'other.onnx');
  assert.equal((await runCli(['convert', other, '--out', out])).code, 0);
  assert.deepEqual(metaOf(out), { mean: [0.3, 0.3, 0.3], std: [0.1, 0.2, 0.3] });
});

test('a DINOv3 ConvNeXt takes the same overrides: --norm sat493m and --image-std replace its processor config\'s constants', async () => {
  const convnext = path.join(dir, 'convnext-checkpoint');
  await writeConvNextTestCheckpoint(convnext, TINY_CONVNEXT_TEST_MODEL);
  const convertConvNext = async (name: string, ...flags: string[]) => {
    const out = path.join(dir, `${name}.onnx`);
    const r = await runCli(['convert', convnext, '--out', out, ...flags]);
    assert.equal(r.code, 0, r.stderr);
    return out;
  };
  assert.deepEqual(metaOf(await convertConvNext('convnext-default')), { mean: [...IMAGENET.mean], std: [...IMAGENET.std] });
  assert.deepEqual(metaOf(await convertConvNext('convnext-sat', '--norm', 'sat493m')), { mean: [...SAT.mean], std: [...SAT.std] });
  assert.deepEqual(metaOf(await convertConvNext('convnext-std', '--image-std', '0.2,0.25,0.3')), { mean: [...IMAGENET.mean], std: [0.2, 0.25, 0.3] });
});

test('a preset with explicit constants, or an unusable std, is refused with one line naming the flags', async () => {
  const both = await runCli(['convert', checkpoint, '--out', path.join(dir, 'x.onnx'), '--norm', 'sat493m', '--image-std', '0.2,0.2,0.2']);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /--norm sat493m and --image-mean\/--image-std both set the normalisation: pass one of them/);
  const zero = await runCli(['convert', checkpoint, '--out', path.join(dir, 'x.onnx'), '--image-std', '0.2,0,0.2']);
  assert.equal(zero.code, 2);
  assert.match(zero.stderr, /--image-std must be three numbers above 0 for R,G,B/);
  const preset = await runCli(['convert', checkpoint, '--out', path.join(dir, 'x.onnx'), '--norm', 'landsat']);
  assert.equal(preset.code, 2);
  assert.match(preset.stderr, /--norm.*imagenet, sat493m/);
  assert.equal(fs.existsSync(path.join(dir, 'x.onnx')), false);
});

test('sat493m constants reach the pixels extract feeds the model, the shards and the fingerprint', async (t) => {
  const sat = await convert('sat-extract', '--norm', 'sat493m');
  const imagenet = await convert('imagenet-extract');
  const caches = { sat: path.join(dir, 'cache-sat'), imagenet: path.join(dir, 'cache-imagenet') };
  for (const [name, model] of [['sat', sat], ['imagenet', imagenet]] as const) {
    const r = await runCli(['extract', images, '--out', caches[name], '--model', model, '--bucket', '64x64', '--dtype', 'float32', '--quiet']);
    assert.equal(r.code, 0, r.stderr);
  }
  const stored = await readWithPyarrow(caches.sat);
  const row = stored.rows['uniform.png']!;

  // The same ONNX model run here on each candidate input: the stored CLS is the sat493m one.
  const session = await ort.InferenceSession.create(sat);
  const clsFor = async (n: { mean: readonly number[]; std: readonly number[] }) => {
    const out = await session.run({ pixel_values: new ort.Tensor('float32', uniformInput(COLOUR, n.mean, n.std, 64, 64), [1, 3, 64, 64]) });
    return (out.last_hidden_state!.data as Float32Array).subarray(0, HIDDEN);
  };
  const diff = (a: ArrayLike<number>, b: ArrayLike<number>) => Math.max(...Array.from(a, (v, k) => Math.abs(v - b[k]!)));
  const toSat = diff(row.cls as number[], await clsFor(SAT));
  const toImagenet = diff(row.cls as number[], await clsFor(IMAGENET));
  t.diagnostic(`stored CLS vs the model on sat493m pixels: ${toSat.toExponential(2)}; on ImageNet pixels: ${toImagenet.toExponential(2)}`);
  // Measured ~1e-6 (float32 rounding of the image stage's normalisation): 10x margin.
  assert.ok(toSat <= 1e-5, `stored CLS is not the model's on sat493m-normalised pixels (${toSat})`);
  assert.ok(toImagenet > 0.05, `ImageNet pixels would give nearly the same CLS (${toImagenet}): the check could not tell them apart`);

  const model = JSON.parse(stored.metadata['dinofeat.model']!) as { imageMean: number[]; imageStd: number[] };
  const preprocessing = JSON.parse(stored.metadata['dinofeat.preprocessing']!) as { mean: number[]; std: number[] };
  assert.deepEqual([model.imageMean, model.imageStd], [[...SAT.mean], [...SAT.std]]);
  assert.deepEqual([preprocessing.mean, preprocessing.std], [[...SAT.mean], [...SAT.std]]);
  const cacheJson = JSON.parse(fs.readFileSync(path.join(caches.sat, 'cache.json'), 'utf8')) as { fingerprint: string; model: { imageMean: number[] } };
  assert.deepEqual(cacheJson.model.imageMean, [...SAT.mean]);
  assert.equal(cacheJson.fingerprint, stored.metadata['dinofeat.fingerprint']);
  const other = await readWithPyarrow(caches.imagenet);
  assert.notEqual(other.metadata['dinofeat.fingerprint'], stored.metadata['dinofeat.fingerprint']);
});
