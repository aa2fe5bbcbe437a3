/**
 * `dinofeat validate`, as issue 4 asks: caches made by the real CLI pass every check; the same
 * caches damaged in each listed way (flipped bytes, truncated shard, wrong patch count, NaN,
 * duplicated key, changed source image, another model) fail with a finding that names the shard,
 * row or image; --recompute passes on a clean cache and fails on one made with another model;
 * models that break the contract fail the model check; the alignment check agrees with an
 * explicit pixel-by-pixel comparison.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ErrorsLog } from '../src/cache/errors-log.js';
import { fingerprintOf, type CacheConfig } from '../src/cache/identity.js';
import { MANIFEST_FILE } from '../src/cache/layout.js';
import { writeManifest } from '../src/cache/manifest-summary.js';
import { parquetWriteFile } from 'hyparquet-writer';
import { parquetSchema } from '../src/shard/parquet-shard.js';
import { createShardWriter } from '../src/shard/shard-writer.js';
import { INT_COLUMNS, encodeRow, metaToKeyValue, shardColumns, type EncodedRow } from '../src/shard/schema.js';
import { runValidate, type ValidateCommandOptions } from '../src/commands/validate.js';
import { validate, type ValidateOptions, type ValidationReport } from '../src/validate/validate.js';
import { UserError } from '../src/core/errors.js';
import { dinoBucket } from '../src/image/buckets.js';
import { TINY_TEST_MODEL } from '../src/convert/test-model.js';
import { infoToMetadata } from '../src/model/info.js';
import { alignBucket } from '../src/validate/alignment.js';
import { formatChecks, type CheckResult } from '../src/validate/check.js';
import { checkModel } from '../src/validate/model-check.js';
import { compareGroup, recomputeTolerance, sampleRows } from '../src/validate/recompute.js';
import { countNonFinite } from '../src/validate/row-checks.js';
import { copyCache, duplicateRow, extractCache, onlyShard, replaceRow, transplantRow } from './fixtures/damaged-cache.js';
import { fakeModelInfo, writeFakeVit } from './fixtures/fake-vit.js';
import { FINGERPRINT, makeRow, shardMeta } from './fixtures/feature-rows.js';
import { writeStructured } from './fixtures/images.js';
import { makeTinyModel, type TinyModel } from './fixtures/tiny-model.js';
import { tempDir } from './helpers/temp.js';

const HIDDEN = TINY_TEST_MODEL.hiddenSize;
const BUCKETS = ['--bucket', '64x64', '--bucket', '96x64', '--bucket', '64x96'];
const IMAGES: Record<string, [number, number]> = {
  'a.png': [200, 120], 'b.jpg': [90, 150], 'c.png': [128, 128], 'sub/d.jpg': [300, 100], 'e.png': [60, 140], 'f.jpg': [150, 100],
};

let images: string;
let model: TinyModel;
let otherModel: TinyModel;
/** cover crops, registers kept, float16 Parquet (model 1). */
let clean: string;
/** stretch, registers dropped, float32 Arrow (model 1). */
let cleanArrow: string;
/** As `clean`, made with model 2 (same shape, other weights). */
let other: string;

before(async () => {
  const dir = tempDir();
  images = path.join(dir, 'images');
  let seed = 1;
  for (const [key, [w, h]] of Object.entries(IMAGES)) await writeStructured(path.join(images, key), w, h, seed++);
  model = await makeTinyModel(dir);
  otherModel = await makeTinyModel(dir, TINY_TEST_MODEL.seed + 1);
  clean = await extractCache(images, model.onnx, [...BUCKETS, '--resize', 'cover', '--registers']);
  cleanArrow = await extractCache(images, model.onnx, [...BUCKETS, '--format', 'arrow', '--dtype', 'float32']);
  other = await extractCache(images, otherModel.onnx, [...BUCKETS, '--resize', 'cover', '--registers']);
});

const check = (r: ValidationReport, name: string): CheckResult => {
  const c = r.checks.find((x) => x.check === name);
  assert.ok(c, `no ${name} check in the report`);
  return c;
};

const kinds = (c: CheckResult) => Object.keys(c.counts).sort();

/** The check failed with a finding of `kind` that mentions `mention`, and the text report says so. */
function assertFinding(r: ValidationReport, name: string, kind: string, mention: string): void {
  assert.equal(r.ok, false, 'validate should fail');
  const c = check(r, name);
  assert.equal(c.status, 'fail');
  const hit = c.findings.find((f) => f.kind === kind && `${f.where} ${f.detail}`.includes(mention));
  assert.ok(hit, `${name} has no ${kind} finding mentioning ${mention}: ${JSON.stringify(c.findings, null, 1)}`);
  const text = formatChecks('validate', r.checks);
  assert.match(text, new RegExp(`FAIL +${name}`));
  assert.ok(text.includes(`${kind}:`) && text.includes(mention), text);
  assert.ok(c.fixes[kind], `no fix given for ${kind}`);
}

/** runValidate's exit code and what it printed. */
async function runCaptured(target: string, o: ValidateCommandOptions): Promise<{ code: number; out: string }> {
  let out = '';
  const code = await runValidate(target, o, { write: (chunk: string) => ((out += chunk), true) });
  return { code, out };
}

test('a clean cache passes every check: cache, model, images, recompute of every row, alignment', async () => {
  const o: ValidateOptions = { model: model.onnx, images: [images], recompute: 6, seed: 3, latentStride: 8, ditPatch: 2 };
  const r = await validate(clean, o);
  assert.deepEqual(r.checks.map((c) => [c.check, c.status]), [
    ['cache', 'pass'], ['model', 'pass'], ['images', 'pass'], ['recompute', 'pass'], ['alignment', 'pass'],
  ], JSON.stringify(r.checks, null, 1));
  assert.ok(r.ok);
  assert.match(check(r, 'cache').summary[0]!, /1 shard, 6 rows, 3 buckets/);
  assert.match(check(r, 'images').summary[0]!, /6 images in .*: 6 stored, 0 in the errors log, 0 missing, 0 stale/);
  assert.match(check(r, 'recompute').summary.join('\n'), /6 of 6 sampled rows[^]*registers: lowest token cosine/);

  const text = await runCaptured(clean, o);
  assert.equal(text.code, 0);
  assert.match(text.out, /OK: every check passed/);
  const json = await runCaptured(clean, { ...o, json: true });
  assert.equal(json.code, 0);
  assert.equal((JSON.parse(json.out) as ValidationReport).ok, true);
});

test('a clean Arrow float32 cache without registers passes, also as a single shard', async () => {
  const r = await validate(cleanArrow, { model: model.onnx, images: [images], recompute: 3 });
  assert.ok(r.ok, formatChecks('validate', r.checks));
  const { file } = await onlyShard(cleanArrow);
  assert.ok((await validate(file, {})).ok);
  const loose = path.join(tempDir(), 'loose.arrow');
  fs.copyFileSync(file, loose);
  const alone = await validate(loose, { model: model.onnx, images: [images], recompute: 2 });
  assert.ok(alone.ok, formatChecks('validate', alone.checks));
  assert.match(check(alone, 'cache').summary[0]!, /1 shard, 6 rows/);
});

test('temp files and unjournaled shards are reported as notes, not counted', async () => {
  const dir = copyCache(clean);
  const { file } = await onlyShard(dir);
  fs.copyFileSync(file, path.join(dir, 'shards/part-0-00099.parquet'));
  fs.writeFileSync(path.join(dir, 'shards/part-0-00100.parquet.tmp'), 'half written');
  fs.writeFileSync(path.join(dir, 'shards/readme.txt'), 'not a shard');
  const r = await validate(dir, {});
  assert.ok(r.ok, formatChecks('validate', r.checks));
  const cache = check(r, 'cache');
  assert.match(cache.summary[0]!, /1 shard, 6 rows/);
  const notes = cache.notes.join('\n');
  for (const name of ['part-0-00099.parquet (not journaled', 'part-0-00100.parquet.tmp (temp file', 'readme.txt (not a shard name']) assert.ok(notes.includes(name), notes);
});

test('validate recomputes the fingerprint: a cache.json or shard metadata edited by hand fails', async () => {
  const dir = copyCache(clean);
  const configFile = path.join(dir, 'cache.json');
  const config = JSON.parse(fs.readFileSync(configFile, 'utf8')) as CacheConfig;
  assert.equal(fingerprintOf(config), config.fingerprint, 'extract writes the fingerprint of what cache.json records');
  fs.writeFileSync(configFile, JSON.stringify({ ...config, preprocessing: { ...config.preprocessing, background: '#000000' } }));
  assertFinding(await validate(dir, {}), 'cache', 'config', `is not that of the model and preprocessing it records (${fingerprintOf({ ...config, preprocessing: { ...config.preprocessing, background: '#000000' } })})`);

  // A shard whose metadata claims the cache's fingerprint for another preprocessing record.
  const made = { ...shardMeta('float16', false), preprocessing: { resize: 'cover' } };
  const file = path.join(tempDir(), 'claims.parquet');
  const writer = createShardWriter('parquet');
  await writer.open(file, { ...made, fingerprint: FINGERPRINT });
  await writer.append([makeRow(0, false)]);
  await writer.close();
  assertFinding(await validate(file, {}), 'cache', 'metadata', `fingerprint ${FINGERPRINT} is not that of the model and preprocessing its metadata records`);
});

test('flipped bytes in a shard: its checksum fails', async () => {
  const dir = copyCache(clean);
  const { name, file } = await onlyShard(dir);
  const bytes = fs.readFileSync(file);
  bytes[bytes.length >> 1]! ^= 0x5a;
  fs.writeFileSync(file, bytes);
  const r = await validate(dir, {});
  assertFinding(r, 'cache', 'checksum', name);
  assert.match(check(r, 'cache').findings[0]!.detail, /sha256 .* differs from the journaled/);
});

test('a truncated shard: its size and its rows fail', async () => {
  const dir = copyCache(clean);
  const { name, file } = await onlyShard(dir);
  fs.truncateSync(file, Math.floor(fs.statSync(file).size / 2));
  const r = await validate(dir, {});
  assertFinding(r, 'cache', 'checksum', 'truncated');
  assertFinding(r, 'cache', 'unreadable', name);
});

/** Rewrites one stored row of a copy of the clean cache; only `kind` may then fail. */
async function corruptRow(key: string, mutate: (row: EncodedRow) => EncodedRow, kind: string, mention: string): Promise<ValidationReport> {
  const dir = copyCache(clean);
  await replaceRow(dir, key, mutate);
  const r = await validate(dir, {});
  assertFinding(r, 'cache', kind, mention);
  assert.deepEqual(kinds(check(r, 'cache')), [kind]);
  return r;
}

test('a row whose patch count is not grid_h x grid_w fails, naming the row', async () => {
  await corruptRow('a.png', (row) => ({ ...row, patches: row.patches.slice(0, row.patches.byteLength - HIDDEN * 2) }), 'patch-count', 'a.png');
});

test('NaN in a stored patch fails, naming the row', async () => {
  const r = await corruptRow('c.png', (row) => {
    const patches = row.patches.slice();
    new DataView(patches.buffer).setUint16(2 * 37, 0x7e00, true); // a float16 NaN
    return { ...row, patches };
  }, 'non-finite', 'c.png');
  assert.match(check(r, 'cache').findings[0]!.detail, /NaN\/Inf values: patches 1/);
});

test('every other row check fails on its own corruption', async () => {
  const cases: Array<[string, (row: EncodedRow) => EncodedRow, string, string]> = [
    ['crop box outside the image', (row) => ({ ...row, crop_w: row.width + 1 }), 'crop', 'is not inside'],
    ['crop box not the cover crop', (row) => ({ ...row, crop_x: row.crop_x + 1 }), 'crop', 'differs from the cover crop'],
    ['grid transposed', (row) => ({ ...row, grid_h: row.grid_w, grid_w: row.grid_h }), 'grid', 'is not bucket'],
    ['bucket of the other orientation', (row) => ({ ...row, bucket_width: row.bucket_height, bucket_height: row.bucket_width, grid_h: row.grid_w, grid_w: row.grid_h }), 'bucket', 'goes to bucket 96x64'],
    ['CLS of zeros', (row) => ({ ...row, cls: new Float32Array(row.cls.length) }), 'cls-degenerate', 'all zeros'],
    ['registers cut short', (row) => ({ ...row, registers: row.registers!.slice(2) }), 'vector-length', 'registers hold'],
    ['not a sha256', (row) => ({ ...row, sha256: 'abc' }), 'provenance', 'not 64 hex'],
  ];
  for (const [what, mutate, kind, mention] of cases) {
    await test(what, () => corruptRow('a.png', mutate, kind, mention).then(() => undefined));
  }
});

test('a journal that disagrees with its shard fails: other keys, other row count', async () => {
  const dir = copyCache(clean);
  const { name } = await onlyShard(dir);
  const journal = path.join(dir, 'manifest/part-0.jsonl');
  const [line] = fs.readFileSync(journal, 'utf8').trim().split('\n');
  const record = JSON.parse(line!) as { rows: number; keys: Array<[string, string]> };
  record.keys[2]![1] = '0'.repeat(64);
  record.rows += 1;
  fs.writeFileSync(journal, `${JSON.stringify(record)}\n`);
  await writeManifest(dir);
  const r = await validate(dir, {});
  assertFinding(r, 'cache', 'journal-keys', `${name} row 2`);
  assertFinding(r, 'cache', 'row-count', 'the journal recorded 7');
  assert.deepEqual(kinds(check(r, 'cache')), ['journal-keys', 'row-count']);
});

test('a shard whose columns have other physical types fails the schema check', async () => {
  const made = { ...shardMeta('float16', false), preprocessing: {} };
  const meta = { ...made, fingerprint: fingerprintOf(made) };
  const rows = [0, 1, 2].map((i) => encodeRow(makeRow(i, false), meta));
  const file = path.join(tempDir(), 'foreign.parquet');
  parquetWriteFile({
    filename: file,
    schema: parquetSchema(shardColumns(false)).map((e) => (e.name === 'width' ? { ...e, type: 'DOUBLE' as const } : e)),
    columnData: [
      { name: 'key', data: rows.map((r) => r.key) }, { name: 'sha256', data: rows.map((r) => r.sha256) },
      ...INT_COLUMNS.map((c) => ({ name: c, data: rows.map((r) => r[c]) })),
      { name: 'cls', data: rows.map((r) => Array.from(r.cls)) }, { name: 'patches', data: rows.map((r) => r.patches) },
    ],
    kvMetadata: Object.entries(metaToKeyValue(meta)).map(([key, value]) => ({ key, value })),
    statistics: false,
  });
  const r = await validate(file, {});
  assertFinding(r, 'cache', 'schema', 'column width has another physical type');
  assert.deepEqual(kinds(check(r, 'cache')), ['schema']);
});

test('a cache made by a model that ignores its input: CLS identical in every row, and the model check says why', async () => {
  const dir = tempDir();
  const info = fakeModelInfo({ patchSize: 16, hidden: 16, registers: 2 });
  const blind = writeFakeVit(path.join(dir, 'blind.onnx'), { patchSize: 16, hidden: 16, registers: 2, metadata: infoToMetadata(info), poolerToken: 0, ignoreInput: true });
  const cache = await extractCache(images, blind, BUCKETS);
  const r = await validate(cache, { model: blind });
  assertFinding(r, 'cache', 'cls-degenerate', 'every one of the 6 rows has the same CLS vector');
  assertFinding(r, 'model', 'degenerate', 'ignores its input');
});

test('a key stored in two shards fails, naming both', async () => {
  const dir = copyCache(clean);
  const { name } = await onlyShard(dir);
  const second = await duplicateRow(dir, 'b.jpg');
  const r = await validate(dir, { images: [images] });
  assertFinding(r, 'cache', 'duplicate-key', `also stored in ${name}`);
  assert.ok(check(r, 'cache').findings.some((f) => f.where.startsWith(second) && f.where.includes('b.jpg')));
  assert.deepEqual(kinds(check(r, 'cache')), ['duplicate-key']);
  assertFinding(r, 'images', 'duplicate-key', 'b.jpg');
});

test('a journaled shard that is gone fails; one whose images are all stored elsewhere is a note', async () => {
  const dir = copyCache(clean);
  const { name, file } = await onlyShard(dir);
  const second = await duplicateRow(dir, 'b.jpg');
  fs.rmSync(path.join(dir, second));
  await writeManifest(dir);
  const r = await validate(dir, {});
  assert.ok(r.ok, formatChecks('validate', r.checks));
  assert.ok(check(r, 'cache').notes.some((n) => n.includes(`${second} is journaled but gone`)));
  fs.rmSync(file);
  assertFinding(await validate(dir, {}), 'cache', 'missing-shard', name);
});

test('manifest.json that disagrees with the journals fails, with dinofeat merge as the fix', async () => {
  const dir = copyCache(clean);
  const file = path.join(dir, MANIFEST_FILE);
  fs.writeFileSync(file, JSON.stringify({ ...JSON.parse(fs.readFileSync(file, 'utf8')), shards: [] }));
  const r = await validate(dir, {});
  assertFinding(r, 'cache', 'manifest-json', 'not listed');
  assert.match(check(r, 'cache').fixes['manifest-json']!, /dinofeat merge/);
});

test('a row made with another model: its shard fails the fingerprint check, its image is stale', async () => {
  const dir = copyCache(clean);
  const shard = await transplantRow(dir, other, 'c.png');
  const r = await validate(dir, { images: [images] });
  assertFinding(r, 'cache', 'fingerprint', shard);
  assert.deepEqual(kinds(check(r, 'cache')), ['fingerprint']);
  assert.match(check(r, 'cache').findings[0]!.detail, /other model/);
  assertFinding(r, 'images', 'stale-model', 'c.png');
});

test('--images: a changed image is stale, a new one missing, a failed one accepted from the errors log', async () => {
  const dir = copyCache(clean);
  const changed = path.join(tempDir(), 'images');
  fs.cpSync(images, changed, { recursive: true });
  await writeStructured(path.join(changed, 'a.png'), 200, 120, 99);
  await writeStructured(path.join(changed, 'new.png'), 64, 64, 7);
  fs.writeFileSync(path.join(changed, 'broken.jpg'), 'not a jpeg');
  const log = await ErrorsLog.open(dir, '0');
  await log.record({ key: 'broken.jpg', path: path.join(changed, 'broken.jpg'), stage: 'decode', reason: 'not a readable image' });
  const r = await validate(dir, { images: [changed], model: model.onnx, recompute: 6 });
  assertFinding(r, 'images', 'stale-source', 'a.png');
  assertFinding(r, 'images', 'missing-image', 'new.png');
  assert.deepEqual(kinds(check(r, 'images')), ['missing-image', 'stale-source']);
  assert.match(check(r, 'images').summary[0]!, /8 images in .*: 6 stored, 1 in the errors log, 1 missing, 1 stale/);
  // The changed image cannot be compared; the other five are.
  const recompute = check(r, 'recompute');
  assert.equal(recompute.status, 'pass');
  assert.match(recompute.summary[0]!, /^5 of 6 sampled rows/);
  assert.ok(recompute.notes.some((n) => n.includes('a.png') && n.includes('changed since it was extracted')));
});

test('--recompute fails on a cache written with another model (and the model check says so)', async () => {
  const r = await validate(other, { model: model.onnx, images: [images], recompute: 3 });
  assertFinding(r, 'model', 'cache-model', 'weightsSha256');
  assertFinding(r, 'recompute', 'mismatch', 'lowest token cosine');
  const own = await validate(other, { model: otherModel.onnx, images: [images], recompute: 3 });
  assert.ok(own.ok, formatChecks('validate', own.checks));
});

test('model check: each broken contract fails with its reason', async () => {
  const dir = tempDir();
  const shape = { patchSize: 8, hidden: 16, registers: 2 };
  const info = fakeModelInfo(shape);
  const fake = (name: string, o: Partial<Parameters<typeof writeFakeVit>[1]>) =>
    writeFakeVit(path.join(dir, `${name}.onnx`), { ...shape, metadata: infoToMetadata(info), poolerToken: 0, ...o });

  const good = await checkModel(fake('good', {}), { device: 'cpu' });
  assert.equal(good.result.status, 'pass', JSON.stringify(good.result));
  assert.equal(good.model?.info.hiddenSize, 16);
  await good.model!.session.close();
  const noPooler = await checkModel(fake('no-pooler', { poolerToken: undefined }), { device: 'cpu' });
  assert.equal(noPooler.result.status, 'pass');
  assert.match(noPooler.result.notes.join(), /no pooler_output/);
  await noPooler.model!.session.close();

  const cases: Array<[string, string, string]> = [
    [fake('no-metadata', { metadata: undefined }), 'metadata', 'no dinofeat metadata'],
    [fake('no-hidden', { metadata: Object.fromEntries(Object.entries(infoToMetadata(info)).filter(([k]) => k !== 'dinofeat.resample')) }), 'metadata', 'lacks dinofeat.resample'],
    [fake('wrong-registers', { metadata: infoToMetadata({ ...info, numRegisters: 4, tokenLayout: ['cls', 'registers', 'patches'] }) }), 'token-count', 'expected [2, 11, hidden]'],
    [fake('bad-layout', { metadata: infoToMetadata({ ...info, tokenLayout: ['cls', 'patches'] }) }), 'layout', 'lacks registers'],
    [fake('wrong-pooler', { poolerToken: 1 }), 'pooler', 'differs from token 0'],
    [fake('blind', { ignoreInput: true }), 'degenerate', 'ignores its input'],
    [fake('wrong-hidden', { metadata: infoToMetadata({ ...info, hiddenSize: 32 }) }), 'hidden-size', 'hidden size 32'],
    [fake('missing-layer', { metadata: infoToMetadata({ ...info, layers: [1] }) }), 'contract', 'lack layer1_hidden_state, which its metadata (layers 1) promises'],
  ];
  const notOnnx = path.join(dir, 'not.onnx');
  fs.writeFileSync(notOnnx, 'definitely not protobuf \u0000\u00ff');
  cases.push([notOnnx, 'load', '']);
  for (const [file, kind, mention] of cases) {
    const { result, model: loaded } = await checkModel(file, { device: 'cpu' });
    assert.equal(loaded, undefined, `${path.basename(file)}: a failing model is not handed on`);
    assert.equal(result.status, 'fail', `${path.basename(file)} should fail`);
    assert.ok(result.findings.some((f) => f.kind === kind && f.detail.includes(mention)), `${path.basename(file)}: ${JSON.stringify(result.findings)}`);
  }
});

test('alignment agrees with comparing every DINO patch and latent token region in trainer pixels', () => {
  const trainers = [[1024, 1024], [832, 1216], [1216, 832], [1000, 1000], [768, 1344], [512, 512]] as const;
  const settings = [
    { p: 16, scale: 1, s: 8, dit: 2 }, { p: 16, scale: 0.5, s: 8, dit: 2 }, { p: 14, scale: 1, s: 8, dit: 2 },
    { p: 14, scale: 0.875, s: 8, dit: 2 }, { p: 16, scale: 1, s: 8, dit: 1 }, { p: 16, scale: 2, s: 8, dit: 1 }, { p: 16, scale: 1, s: 16, dit: 1 },
  ];
  let aligned = 0;
  for (const [tw, th] of trainers) {
    for (const { p, scale, s, dit } of settings) {
      const bucket = dinoBucket({ width: tw, height: th }, scale, p);
      // Reference: the trainer-pixel edges of every DINO patch and of every latent token, per axis.
      const token = s * dit;
      const axis = (trainer: number, dino: number) => {
        if (trainer % token !== 0) return false;
        const dinoEdges = Array.from({ length: dino / p + 1 }, (_, k) => (k * p * trainer) / dino);
        const latentEdges = Array.from({ length: trainer / token + 1 }, (_, k) => k * token);
        return dinoEdges.length === latentEdges.length && dinoEdges.every((e, k) => Math.abs(e - latentEdges[k]!) < 1e-9);
      };
      const expected = axis(tw, bucket.width) && axis(th, bucket.height);
      const got = alignBucket(bucket, { patchSize: p, latentStride: s, ditPatch: dit });
      assert.equal(got.aligned, expected, `${tw}x${th} p${p} scale ${scale} S${s} P${dit}: ${got.reasons.join('; ')}`);
      assert.equal(got.reasons.length > 0, !expected);
      if (expected) aligned++;
      const suggested = /--dino-scale ([\d.]+)/.exec(got.reasons.join(' '))?.[1];
      if (suggested) {
        const fixed = alignBucket(dinoBucket({ width: tw, height: th }, Number(suggested), p), { patchSize: p, latentStride: s, ditPatch: dit });
        assert.ok(fixed.aligned, `suggested --dino-scale ${suggested} does not align ${tw}x${th}`);
      }
    }
  }
  assert.ok(aligned > 5 && aligned < trainers.length * settings.length, `both outcomes are exercised (${aligned} aligned)`);
});

test('alignment of a real cache fails for buckets with rows that do not line up, and says why', async () => {
  const r = await validate(clean, { latentStride: 8, ditPatch: 1 });
  assertFinding(r, 'alignment', 'misaligned', '96x64→96x64');
  assert.match(check(r, 'alignment').findings[0]!.detail, /DINO grid \d+x\d+ vs latent grid \d+x\d+: .*--dino-scale 2/);
});

test('recompute helpers: token cosines and differences, tolerances, seeded sampling', () => {
  const stored = Float32Array.from([1, 0, 0, 1, 3, 4]);
  const c = compareGroup(stored, Float32Array.from([1, 0, 0, -1, 3, 4]), 2);
  assert.equal(c.minCosine, -1);
  assert.equal(c.maxAbsDiff, 2);
  assert.equal(c.maxAbs, 4);
  assert.equal(compareGroup(stored, stored, 2).minCosine, 1);

  const fp32 = recomputeTolerance('float32', 'fp32');
  const f16 = recomputeTolerance('float16', 'fp32');
  const int8 = recomputeTolerance('float16', 'fp32', 'int8');
  assert.ok(f16.maxRelDiff > fp32.maxRelDiff && int8.minCosine < f16.minCosine);

  const rows = Array.from({ length: 50 }, (_, k) => ({ key: `k${k}`, shard: `s${k % 3}`, index: k }));
  const a = sampleRows(rows, 5, 7);
  assert.equal(a.length, 5);
  assert.deepEqual(sampleRows([...rows].reverse(), 5, 7), a, 'the sample does not depend on the order');
  assert.notDeepEqual(sampleRows(rows, 5, 8), a, 'another seed, another sample');
  assert.equal(new Set(a.map((r) => r.key)).size, 5);
});

test('NaN / Inf are counted in stored bytes of both dtypes, at any alignment', () => {
  const halves = new Uint8Array(11);
  const view = new DataView(halves.buffer);
  view.setUint16(1, 0x7c00, true); // +Inf
  view.setUint16(5, 0xfe01, true); // NaN
  view.setUint16(7, 0x7bff, true); // 65504, finite
  assert.equal(countNonFinite(halves.subarray(1), 'float16'), 2);
  const floats = new Uint8Array(17);
  const fv = new DataView(floats.buffer);
  fv.setFloat32(1, NaN, true);
  fv.setFloat32(5, 3.4e38, true);
  fv.setFloat32(9, -Infinity, true);
  assert.equal(countNonFinite(floats.subarray(1), 'float32'), 2);
});

test('usage errors are one line naming the flag', async () => {
  await assert.rejects(validate(clean, { latentStride: 8 }), (e: unknown) => e instanceof UserError && /--latent-stride and --dit-patch/.test(e.message));
  // A single shard has no run record to take the model or the images from.
  const { file: shard } = await onlyShard(clean);
  await assert.rejects(validate(shard, { recompute: 2, images: [images] }), (e: unknown) => e instanceof UserError && /--recompute needs --model/.test(e.message));
  await assert.rejects(validate(shard, { recompute: 2, model: model.onnx }), (e: unknown) => e instanceof UserError && /--recompute needs the images: pass --images DIR or --list FILE/.test(e.message));
  await assert.rejects(validate(clean, { images: [path.join(images, 'a.png')] }), (e: unknown) => e instanceof UserError && /--images .*a\.png is not a directory/.test(e.message));
  await assert.rejects(validate(images, {}), (e: unknown) => e instanceof UserError && /not a dinofeat cache/.test(e.message));
});
