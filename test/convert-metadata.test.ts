/**
 * The converted model describes itself: metadata_props round-trip through loadModelInfo; a
 * foreign export without them is described by a config.json beside it or one directory up (the
 * Hub layout onnx/model.onnx), or by --patch-size/--num-registers, and otherwise refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import ort from '../src/model/ort.js';
import { convertCheckpoint } from '../src/convert/convert.js';
import { loadModelInfo } from '../src/model/load-info.js';
import { METADATA_KEYS } from '../src/model/info.js';
import { readOnnxHeader } from '../src/onnx/metadata-reader.js';
import { readVarint } from '../src/onnx/protobuf.js';
import { UserError } from '../src/core/errors.js';
import { GOLDEN, goldenIndex } from './fixtures/reference-outputs.js';
import { run, tsxEval } from './helpers/process.js';
import { tempDir } from './helpers/temp.js';

const sha256 = (file: string) => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

test('DINOv3 metadata: patch, registers, hidden, layout, mean/std, resample, precision, repo, weights sha256', async () => {
  const dir = tempDir();
  const index = goldenIndex('index.json');
  const ckpt = path.join(GOLDEN, 'models', 'tiny');
  const out = path.join(dir, 'tiny-int8.onnx');
  const { info } = await convertCheckpoint(ckpt, out, { precision: 'int8', sourceRepo: 'facebook/dinov3-tiny-test' });
  const expected = {
    family: 'dinov3',
    patchSize: 16,
    numRegisters: 4,
    hiddenSize: 64,
    tokenLayout: ['cls', 'registers', 'patches'],
    imageMean: [0.485, 0.456, 0.406],
    imageStd: [0.229, 0.224, 0.225],
    resample: 'bilinear',
    precision: 'int8',
    sourceRepo: 'facebook/dinov3-tiny-test',
    weightsSha256: index.models.tiny!.safetensors_sha256,
  };
  assert.equal(expected.weightsSha256, sha256(path.join(ckpt, 'model.safetensors')));
  assert.deepEqual(info, expected);
  assert.deepEqual(loadModelInfo(out), expected);
  assert.equal(readOnnxHeader(out).metadata[METADATA_KEYS.tokenLayout], 'cls,registers,patches');
});

test('DINOv2 metadata: patch 14, bicubic from preprocessor_config resample 3, mean/std from the file', async () => {
  const dir = tempDir();
  const ckpt = path.join(dir, 'ckpt');
  fs.cpSync(path.join(GOLDEN, 'models', 'tiny_dinov2'), ckpt, { recursive: true });
  const pre = JSON.parse(fs.readFileSync(path.join(ckpt, 'preprocessor_config.json'), 'utf8')) as Record<string, unknown>;
  fs.writeFileSync(path.join(ckpt, 'preprocessor_config.json'), JSON.stringify({ ...pre, image_mean: [0.43, 0.411, 0.296], image_std: [0.213, 0.156, 0.143] }));
  const out = path.join(dir, 'dinov2.onnx');
  await convertCheckpoint(ckpt, out, { precision: 'fp32' });
  const info = loadModelInfo(out);
  assert.equal(info.family, 'dinov2');
  assert.equal(info.patchSize, 14);
  assert.equal(info.numRegisters, 0);
  assert.deepEqual(info.tokenLayout, ['cls', 'patches']);
  assert.equal(info.resample, 'bicubic');
  assert.deepEqual(info.imageMean, [0.43, 0.411, 0.296]);
  assert.deepEqual(info.imageStd, [0.213, 0.156, 0.143]);
  assert.equal(info.sourceRepo, undefined);
});

/** The same ONNX file without ModelProto.metadata_props (field 14), like a foreign export. */
function withoutMetadata(src: string, dst: string): void {
  const buf = fs.readFileSync(src);
  const keep: Buffer[] = [];
  for (let at = 0; at < buf.length; ) {
    const tag = readVarint(buf, at);
    const wire = tag.value & 7;
    let next: number;
    if (wire === 0) next = readVarint(buf, tag.next).next;
    else if (wire === 2) {
      const len = readVarint(buf, tag.next);
      next = len.next + len.value;
    } else throw new Error(`unexpected wire type ${wire} in a ModelProto`);
    if (tag.value >> 3 !== 14) keep.push(buf.subarray(at, next));
    at = next;
  }
  fs.writeFileSync(dst, Buffer.concat(keep));
}

test('a foreign export is described by config.json beside it or one level up, or by flags', async () => {
  const dir = tempDir();
  const src = path.join(GOLDEN, 'models', 'tiny_dinov2_reg');
  const ours = path.join(dir, 'ours.onnx');
  await convertCheckpoint(src, ours, { precision: 'fp32' });

  const hub = path.join(dir, 'hub');
  fs.mkdirSync(path.join(hub, 'onnx'), { recursive: true });
  const foreign = path.join(hub, 'onnx', 'model.onnx');
  withoutMetadata(ours, foreign);
  assert.deepEqual(readOnnxHeader(foreign).metadata, {});
  // Still a working model: only the description is gone.
  const s = await ort.InferenceSession.create(foreign);
  assert.deepEqual([...s.outputNames].sort(), ['last_hidden_state', 'pooler_output']);

  assert.throws(() => loadModelInfo(foreign), (e: unknown) => e instanceof UserError && /--patch-size/.test(e.message) && /--num-registers/.test(e.message));
  const fromFlags = loadModelInfo(foreign, { patchSize: 14, registers: 4 });
  assert.equal(fromFlags.patchSize, 14);
  assert.equal(fromFlags.numRegisters, 4);
  assert.deepEqual(fromFlags.tokenLayout, ['cls', 'registers', 'patches']);

  for (const f of ['config.json', 'preprocessor_config.json']) fs.copyFileSync(path.join(src, f), path.join(hub, f));
  const { weightsSha256: _, ...expected } = loadModelInfo(ours);
  assert.deepEqual(loadModelInfo(foreign), expected, 'Hub layout: config.json one directory up');
  fs.renameSync(path.join(hub, 'config.json'), path.join(hub, 'onnx', 'config.json'));
  assert.deepEqual(loadModelInfo(foreign).patchSize, 14, 'config.json beside the model');
  assert.equal(loadModelInfo(foreign, { registers: 0 }).numRegisters, 0, 'flags override the config');
  assert.deepEqual(loadModelInfo(foreign, { registers: 0 }).tokenLayout, ['cls', 'patches']);
});

test('dinofeat convert writes the model atomically and reports what it made', async () => {
  const dir = tempDir();
  const out = path.join(dir, 'nested', 'tiny-fp16.onnx');
  const args = ['convert', path.join(GOLDEN, 'models', 'tiny'), '--out', out, '--precision', 'fp16', '--source-repo', 'facebook/x'];
  const cli = `import { main } from ${JSON.stringify(path.resolve('src/cli.ts'))}; process.exitCode = await main(['node', 'dinofeat', ...${JSON.stringify(args)}]);`;
  const { code, stdout, stderr } = await run(process.execPath, tsxEval(cli));
  assert.equal(code, 0, stderr);
  assert.match(stdout, /tiny-fp16\.onnx .*fp16/);
  assert.match(stdout, /patch 16, 4 registers, hidden 64/);
  const info = loadModelInfo(out);
  assert.equal(info.precision, 'fp16');
  assert.equal(info.sourceRepo, 'facebook/x');
  assert.deepEqual(fs.readdirSync(path.dirname(out)), ['tiny-fp16.onnx'], 'no temp files left');
});
