/**
 * The model store (src/store/): its layout under $DINOFEAT_HOME, and a checkpoint directory given
 * to --model converted once into converted/<key>/ and reused (by extract, and when copied), a new
 * folder when its content changes. Pull then extract is in hub.test.ts, beside the fake Hub.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { TINY_TEST_MODEL, writeTestCheckpoint } from '../src/convert/test-model.js';
import { loadModelInfo } from '../src/model/load-info.js';
import { checkpointKey } from '../src/store/convert-once.js';
import { checkpointDirOf, convertedModelDir, defaultModelPath, modelFile, precisionOfModelFile, pulledModelDir } from '../src/store/layout.js';
import { resolveModelPath } from '../src/store/resolve.js';
import { writeStructured } from './fixtures/images.js';
import { runCli } from './helpers/cli.js';
import { tempDir } from './helpers/temp.js';

let work: string;
let checkpoint: string;
let images: string;

before(async () => {
  work = tempDir();
  checkpoint = path.join(work, 'checkpoint');
  await writeTestCheckpoint(checkpoint, TINY_TEST_MODEL);
  images = path.join(work, 'images');
  await writeStructured(path.join(images, 'a.png'), 40, 56, 1);
  await writeStructured(path.join(images, 'b.jpg'), 64, 48, 2);
});

test('one layout: every model folder holds model-<precision>.onnx; pulled under models/, local checkpoints under converted/<key>/', () => {
  const env = { DINOFEAT_HOME: '/h' };
  const pulled = pulledModelDir('facebook/dinov2-small', 'v1', env);
  assert.equal(pulled, path.join('/h', 'models', 'facebook--dinov2-small', 'v1'));
  assert.equal(checkpointDirOf(pulled), path.join(pulled, 'checkpoint'));
  assert.equal(modelFile(pulled, 'int8'), path.join(pulled, 'model-int8.onnx'));
  const local = convertedModelDir('0123456789abcdef', env);
  assert.equal(local, path.join('/h', 'converted', '0123456789abcdef'));
  assert.equal(modelFile(local, 'fp32'), path.join(local, 'model-fp32.onnx'));
  assert.equal(defaultModelPath(env), path.join('/h', 'default.onnx'));
  assert.equal(precisionOfModelFile('model-fp16.onnx'), 'fp16');
  assert.equal(precisionOfModelFile('model-fp16.onnx.data'), undefined);
  assert.equal(precisionOfModelFile('checkpoint'), undefined);
});

test('a checkpoint directory given to --model is converted once into converted/<key>/ and reused by the next extract', { timeout: 120_000 }, async () => {
  const home = path.join(work, 'home-extract');
  const env = { DINOFEAT_HOME: home, DINOFEAT_MODEL: '' };
  const modelPath = modelFile(convertedModelDir(await checkpointKey(checkpoint), env), 'fp32');
  assert.match(path.relative(home, modelPath), /^converted\/[0-9a-f]{16}\/model-fp32\.onnx$/);

  const first = await runCli(['extract', images, '--model', checkpoint, '--out', path.join(work, 'cache-1')], env);
  assert.equal(first.code, 0, first.stderr);
  assert.ok(first.stderr.includes(`converting ${checkpoint} to ${modelPath} (once)`), first.stderr);
  assert.equal(fs.readdirSync(path.join(home, 'converted')).length, 1);
  const mtime = fs.statSync(modelPath).mtimeMs;

  const second = await runCli(['extract', images, '--model', checkpoint, '--out', path.join(work, 'cache-2')], env);
  assert.equal(second.code, 0, second.stderr);
  assert.ok(!second.stderr.includes('converting'), second.stderr);
  assert.equal(fs.statSync(modelPath).mtimeMs, mtime, 'the conversion is reused, not rewritten');
  const modelOf = (cache: string) => (JSON.parse(fs.readFileSync(path.join(work, cache, 'cache.json'), 'utf8')) as { model: unknown }).model;
  assert.deepEqual(modelOf('cache-2'), modelOf('cache-1'));
});

test('the converted folder is keyed by content: a copy reuses it, a changed preprocessor config gets its own', { timeout: 60_000 }, async () => {
  const env = { DINOFEAT_HOME: path.join(work, 'home-content') };
  const original = await resolveModelPath(checkpoint, env);
  const mtime = fs.statSync(original).mtimeMs;

  // A copy has newer files but the same content: the same model, not converted again.
  const copy = path.join(work, 'copy');
  fs.cpSync(checkpoint, copy, { recursive: true });
  assert.equal(await resolveModelPath(copy, env), original);
  assert.equal(fs.statSync(original).mtimeMs, mtime);

  // Other normalisation is another model: a new folder, converted with the new mean.
  const preprocessorFile = path.join(copy, 'preprocessor_config.json');
  const preprocessor = JSON.parse(fs.readFileSync(preprocessorFile, 'utf8')) as { image_mean: number[] };
  fs.writeFileSync(preprocessorFile, JSON.stringify({ ...preprocessor, image_mean: [0.5, 0.5, 0.5] }));
  const changed = await resolveModelPath(copy, env);
  assert.notEqual(changed, original);
  assert.equal(path.dirname(path.dirname(changed)), path.join(env.DINOFEAT_HOME, 'converted'));
  assert.deepEqual(loadModelInfo(changed).imageMean, [0.5, 0.5, 0.5]);
  assert.deepEqual(loadModelInfo(original).imageMean, [0.485, 0.456, 0.406]);
});

test('--model takes an .onnx file as is and a Hub-layout folder by its onnx/model.onnx', async () => {
  const env = { DINOFEAT_HOME: path.join(work, 'home-files') };
  const file = path.join(work, 'some.onnx');
  fs.writeFileSync(file, 'not read here');
  assert.equal(await resolveModelPath(file, env), file);
  const hubLayout = path.join(work, 'hub-layout');
  fs.mkdirSync(path.join(hubLayout, 'onnx'), { recursive: true });
  fs.writeFileSync(path.join(hubLayout, 'onnx', 'model.onnx'), 'not read here');
  assert.equal(await resolveModelPath(hubLayout, env), path.join(hubLayout, 'onnx', 'model.onnx'));
  assert.equal(fs.existsSync(env.DINOFEAT_HOME), false, 'nothing is written to the store for them');
});
