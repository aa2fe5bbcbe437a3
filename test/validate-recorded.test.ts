/**
 * `dinofeat validate` and `dinofeat inspect` as the README shows them, with no argument and no
 * flags: in a directory where `dinofeat extract` wrote ./dinofeat-cache, validate checks the
 * images and recomputes a few rows from what the cache recorded (folders, list files, the model
 * and its weights hash); a model that moved or changed is one line saying what to pass instead.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { readRunRecord, recordRun, runRecordPath } from '../src/cache/run-record.js';
import { DEFAULT_RECOMPUTE } from '../src/validate/validate.js';
import { modelWeightsSha256 } from '../src/model/weights-hash.js';
import { TINY_TEST_MODEL } from '../src/convert/test-model.js';
import { writeStructured } from './fixtures/images.js';
import { makeTinyModel, type TinyModel } from './fixtures/tiny-model.js';
import { runCli } from './helpers/cli.js';
import { tempDir } from './helpers/temp.js';

const BUCKET = ['--bucket', '64x64', '--quiet'];

/** Where the user works: photos/ (walked), more/ (read through more/list.txt), ./dinofeat-cache. */
let work: string;
let photos: string;
let list: string;
let model: TinyModel;
let otherModel: TinyModel;

before(async () => {
  work = tempDir();
  photos = path.join(work, 'photos');
  const more = path.join(work, 'more');
  let seed = 1;
  for (const key of ['a.png', 'b.jpg', 'sub/c.png']) await writeStructured(path.join(photos, key), 96, 80, seed++);
  for (const key of ['x.png', 'y.jpg']) await writeStructured(path.join(more, key), 70, 90, seed++);
  list = path.join(more, 'list.txt');
  fs.writeFileSync(list, 'x.png\ny.jpg\n');
  const models = tempDir();
  model = await makeTinyModel(models);
  otherModel = await makeTinyModel(models, TINY_TEST_MODEL.seed + 1);
  const r = await runCli(['extract', 'photos', '--list', 'more/list.txt', '--model', model.onnx, ...BUCKET], {}, { cwd: work });
  assert.equal(r.code, 0, r.stdout + r.stderr);
});

const validateHere = (...flags: string[]) => runCli(['validate', ...flags], {}, { cwd: work });
/** The report's check lines: "PASS    images" → ['PASS', 'images']. */
const checkLines = (stdout: string) => [...stdout.matchAll(/^(PASS|FAIL|SKIPPED) +(\w+)$/gm)].map((m) => [m[1], m[2]]);

test('extract records its inputs and model, absolute, outside cache.json', async () => {
  const cache = path.join(work, 'dinofeat-cache');
  const record = await readRunRecord(cache);
  assert.deepEqual(record?.inputs, { dirs: [photos], lists: [list], stdin: false });
  assert.deepEqual(record?.models.map((m) => m.path), [path.resolve(model.onnx)]);
  assert.ok(fs.existsSync(runRecordPath(cache, '0')));
  assert.doesNotMatch(fs.readFileSync(path.join(cache, 'cache.json'), 'utf8'), /photos|list\.txt/);
});

test('validate with no argument checks ./dinofeat-cache: cache, model, the recorded images, a recomputed sample', async () => {
  const r = await validateHere();
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^dinofeat validate \.\/dinofeat-cache$/m);
  assert.deepEqual(checkLines(r.stdout), [['PASS', 'cache'], ['PASS', 'model'], ['PASS', 'images'], ['PASS', 'recompute']]);
  assert.ok(r.stdout.includes(`5 images in ${photos} --list ${list}: 5 stored, 0 in the errors log, 0 missing, 0 stale`), r.stdout);
  assert.match(r.stdout, new RegExp(`${DEFAULT_RECOMPUTE} of ${DEFAULT_RECOMPUTE} sampled rows \\(seed 0\\) extracted again with ${path.resolve(model.onnx).replaceAll('.', '\\.')}`));
});

test('--recompute 0 skips recomputing, and with it the recorded model', async () => {
  const r = await validateHere('--recompute', '0');
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.deepEqual(checkLines(r.stdout), [['PASS', 'cache'], ['PASS', 'images']]);
});

test('inspect with no argument summarises ./dinofeat-cache', async () => {
  const r = await runCli(['inspect'], {}, { cwd: work });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^\.\/dinofeat-cache \(cache\)$/m);
  assert.match(r.stdout, /rows +5 in 1 shard/);
});

test('a recorded model that moved or changed is one line naming it and the way out', async () => {
  const moved = `${model.onnx}.moved`;
  fs.renameSync(model.onnx, moved);
  try {
    const gone = await validateHere();
    assert.equal(gone.code, 2);
    assert.equal(gone.stdout, '');
    assert.deepEqual(gone.stderr.trimEnd().split('\n').length, 1, gone.stderr);
    assert.match(gone.stderr, new RegExp(`^dinofeat: the cache's model ${path.resolve(model.onnx).replaceAll('.', '\\.')} is gone \\(moved or deleted\\): pass --model`));
    assert.equal((await validateHere('--recompute', '0')).code, 0, 'nothing needs the model');
    const given = await validateHere('--model', moved);
    assert.equal(given.code, 0, given.stdout + given.stderr);
    assert.match(given.stdout, /PASS +recompute/);

    fs.copyFileSync(otherModel.onnx, model.onnx);
    const changed = await validateHere();
    assert.equal(changed.code, 2);
    assert.deepEqual(changed.stderr.trimEnd().split('\n').length, 1, changed.stderr);
    assert.match(changed.stderr, /^dinofeat: the cache's model .* changed since extract ran .*: pass --model/);
  } finally {
    fs.renameSync(moved, model.onnx);
  }
});

test('a recorded folder that moved is one line naming it; --images takes over', async () => {
  const cache = path.join(tempDir(), 'cache');
  fs.cpSync(path.join(work, 'dinofeat-cache'), cache, { recursive: true });
  const gone = path.join(work, 'moved-away');
  await recordRun(cache, '0', { inputs: { paths: [gone], lists: [] }, model: { path: model.onnx, weightsSha256: await modelWeightsSha256(model.onnx) } });
  const r = await runCli(['validate', cache]);
  assert.equal(r.code, 2);
  assert.equal(r.stderr, `dinofeat: the cache's recorded input ${gone} is gone (moved or deleted): pass --images DIR or --list FILE for where the images are now\n`);
  const given = await runCli(['validate', cache, '--images', photos, '--list', list]);
  assert.equal(given.code, 0, given.stdout + given.stderr);
});

test('a later run adds its inputs; workers of one run each keep their own record', async () => {
  const cache = path.join(tempDir(), 'cache');
  const later = path.join(work, 'later');
  await writeStructured(path.join(later, 'z.png'), 80, 80, 42);
  for (const input of [photos, later]) {
    const r = await runCli(['extract', input, '--out', cache, '--model', model.onnx, ...BUCKET]);
    assert.equal(r.code, 0, r.stderr);
  }
  assert.deepEqual((await readRunRecord(cache))?.inputs.dirs, [photos, later]);
  const v = await runCli(['validate', cache]);
  assert.equal(v.code, 0, v.stdout + v.stderr);
  assert.ok(v.stdout.includes(`4 images in ${photos} ${later}: 4 stored`), v.stdout);

  const shared = path.join(tempDir(), 'cache');
  for (const index of ['0', '1']) {
    const r = await runCli(['extract', photos, '--list', list, '--out', shared, '--model', model.onnx, '--num-workers', '2', '--worker-index', index, ...BUCKET]);
    assert.equal(r.code, 0, r.stderr);
  }
  assert.deepEqual(fs.readdirSync(path.join(shared, 'manifest')).filter((n) => n.startsWith('inputs-')).sort(), ['inputs-0_of_2.json', 'inputs-1_of_2.json']);
  const both = await runCli(['validate', shared]);
  assert.equal(both.code, 0, both.stdout + both.stderr);
  assert.match(both.stdout, /5 images in .*: 5 stored/);
});

test('a run adds its inputs to the record of its part; readers take the union over parts, the newest model first', async () => {
  const cache = tempDir();
  await recordRun(cache, '0_of_2', { inputs: { paths: ['a'], lists: ['l.txt'] }, model: { path: model.onnx, weightsSha256: await modelWeightsSha256(model.onnx) } });
  await recordRun(cache, '1_of_2', { inputs: { paths: ['b'], lists: ['-'] }, model: { path: otherModel.onnx, weightsSha256: await modelWeightsSha256(otherModel.onnx) } });
  await recordRun(cache, '0_of_2', { inputs: { paths: ['a', 'c'], lists: [] }, model: { path: model.onnx, weightsSha256: await modelWeightsSha256(model.onnx) } });
  const record = await readRunRecord(cache);
  assert.deepEqual(record?.inputs, { dirs: ['a', 'c', 'b'].map((d) => path.resolve(d)), lists: [path.resolve('l.txt')], stdin: true });
  assert.deepEqual(record?.models.map((m) => m.path), [model.onnx, otherModel.onnx].map((m) => path.resolve(m)), 'most recent first');
  assert.deepEqual(fs.readdirSync(path.join(cache, 'manifest')).sort(), ['inputs-0_of_2.json', 'inputs-1_of_2.json'], 'no temp files left');
});

test('a list read from stdin cannot be recorded, an older cache records nothing: validate checks the cache and says what to pass', async () => {
  const stdin = path.join(tempDir(), 'cache');
  const extracted = await runCli(['extract', '--list', '-', '--out', stdin, '--model', model.onnx, ...BUCKET], {}, { stdin: 'a.png\nb.jpg\nsub/c.png\n', cwd: photos });
  assert.equal(extracted.code, 0, extracted.stderr);
  assert.deepEqual((await readRunRecord(stdin))?.inputs, { dirs: [], lists: [], stdin: true });
  const r = await runCli(['validate', stdin]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.deepEqual(checkLines(r.stdout), [['PASS', 'cache'], ['SKIPPED', 'images'], ['SKIPPED', 'recompute']]);
  assert.match(r.stdout, /list from stdin, which the cache cannot record: pass --images DIR or --list FILE/);
  const explicit = await runCli(['validate', stdin, '--images', photos]);
  assert.equal(explicit.code, 0, explicit.stdout + explicit.stderr);
  assert.match(explicit.stdout, /PASS +recompute/);

  fs.rmSync(runRecordPath(stdin, '0'));
  const older = await runCli(['validate', stdin]);
  assert.equal(older.code, 0, older.stdout + older.stderr);
  assert.match(older.stdout, /SKIPPED images\n +the cache records no inputs .*: pass --images DIR or --list FILE/);
  assert.match((await runCli(['validate', stdin, '--recompute', '2'])).stderr, /--recompute needs the images: the cache records no inputs/);
});
