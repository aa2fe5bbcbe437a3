/**
 * What keeps a cache usable across dinofeat releases and what refuses it, through the CLI: a newer
 * release over an existing cache extracts nothing; a preprocessing change into a cache is refused
 * with one line naming preprocessing; a cache of an older feature format (or from before formats
 * were versioned) gets its own line saying what to do; a resume on another device is noted.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { cacheIdentity, readCacheConfig, shardMetaOf, type CacheConfig } from '../src/cache/identity.js';
import { openCacheForWrite } from '../src/cache/open.js';
import { ShardSink } from '../src/cache/shard-sink.js';
import { FEATURE_FORMAT_VERSION } from '../src/cache/feature-format.js';
import { DINOFEAT_VERSION } from '../src/core/version.js';
import { TINY_TEST_MODEL } from '../src/convert/test-model.js';
import { writeManyImages } from './fixtures/images.js';
import { makeTinyModel } from './fixtures/tiny-model.js';
import { CLI, runCli } from './helpers/cli.js';
import { run, type Completed } from './helpers/process.js';
import { tempDir } from './helpers/temp.js';

const COUNT = 4;
const BUCKET = ['--bucket', '64x64'];
let dir: string;
let images: string;
let model: string;

before(async () => {
  dir = tempDir();
  images = path.join(dir, 'images');
  model = (await makeTinyModel(dir)).onnx;
  await writeManyImages(images, COUNT);
});

function extract(cache: string, args: readonly string[] = [], cli = CLI): Promise<Completed> {
  return run(process.execPath, [cli, 'extract', images, '--out', cache, '--model', model, ...BUCKET, ...args]);
}

/** A cache made by this dinofeat with the default settings. */
async function freshCache(name: string): Promise<string> {
  const cache = path.join(dir, name);
  const r = await extract(cache, ['--quiet']);
  assert.equal(r.code, 0, r.stderr);
  return cache;
}

/** Every file under `root` with its bytes hashed: what "the cache is left as it was" compares. */
function snapshot(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of fs.readdirSync(root, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || entry.parentPath.includes(`${path.sep}locks`)) continue;
    const file = path.join(entry.parentPath, entry.name);
    out[path.relative(root, file)] = createHash('sha256').update(fs.readFileSync(file)).digest('hex');
  }
  return out;
}

/** dinofeat as installed at another version: this build's files with package.json's version changed. */
function installedAs(version: string): string {
  const root = path.join(dir, `dinofeat-${version}`);
  for (const sub of ['bin', 'dist']) fs.cpSync(path.resolve(sub), path.join(root, sub), { recursive: true });
  const pkg = JSON.parse(fs.readFileSync('package.json', 'utf8')) as { version: string };
  fs.writeFileSync(path.join(root, 'package.json'), JSON.stringify({ ...pkg, version }));
  fs.symlinkSync(path.resolve('node_modules'), path.join(root, 'node_modules'));
  return path.join(root, 'bin', 'dinofeat.js');
}

test('a newer patch release over an existing cache: the rerun extracts nothing, the version is only recorded', async () => {
  const cache = await freshCache('cache-upgrade');
  const before = snapshot(cache);
  const newer = DINOFEAT_VERSION.replace(/(\d+)$/, (n) => String(Number(n) + 1));
  const cli = installedAs(newer);
  assert.equal((await run(process.execPath, [cli, '--version'])).stdout.trim(), newer);
  const r = await extract(cache, [], cli);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`0 extracted, ${COUNT} already cached, 0 failed of ${COUNT} images`));
  const config = (await readCacheConfig(cache))!;
  assert.equal(config.dinofeatVersion, DINOFEAT_VERSION, 'cache.json keeps the release that made it');
  const after = snapshot(cache);
  // Shards, journals, cache.json and the run record as they were; manifest.json is a summary every run rebuilds.
  assert.deepEqual(Object.keys(after).filter((f) => after[f] !== before[f]), ['manifest.json']);
  assert.deepEqual(Object.keys(after).sort(), Object.keys(before).sort());
});

test('a preprocessing change into an existing cache is refused with one line naming preprocessing', async () => {
  const cache = await freshCache('cache-preprocessing');
  const before = snapshot(cache);
  for (const change of [['--resize', 'cover'], ['--dino-scale', '0.5'], ['--background', '#000000'], ['--icc', 'convert'], ['--decode', 'fast']]) {
    const r = await extract(cache, change);
    assert.equal(r.code, 2, `${change.join(' ')}: exit ${r.code}\n${r.stderr}`);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `${change.join(' ')}: one line, got:\n${r.stderr}`);
    assert.match(lines[0]!, /other settings \(fingerprint \w+ vs \w+ \(preprocessing differ\)\); use another --out, or --overwrite/, change.join(' '));
    assert.deepEqual(snapshot(cache), before, `${change.join(' ')}: the cache is left as it was`);
  }
});

/** The fingerprint recipe of dinofeat before feature formats: package version, whole model record, preprocessing. */
function unversionedFingerprint(c: CacheConfig): string {
  const hashed = { dinofeat: c.dinofeatVersion, model: { ...c.model, weights: c.model.weightsSha256 }, preprocessing: c.preprocessing };
  return createHash('sha256').update(JSON.stringify(hashed)).digest('hex').slice(0, 16);
}

test('a cache of an older feature format, or from before formats were versioned, gets one line saying what to do', async () => {
  const cache = await freshCache('cache-old-format');
  const file = path.join(cache, 'cache.json');
  const config = JSON.parse(fs.readFileSync(file, 'utf8')) as CacheConfig;
  const { featureFormat: _format, device: _device, ...rest } = config;
  const unversioned = { ...rest, dinofeatVersion: '0.1.0', fingerprint: unversionedFingerprint({ ...rest, dinofeatVersion: '0.1.0' }) };
  const older = { ...config, featureFormat: FEATURE_FORMAT_VERSION - 1 };
  const newer = { ...config, featureFormat: FEATURE_FORMAT_VERSION + 1 };
  const expected: Array<[object, RegExp]> = [
    [unversioned, /made by dinofeat 0\.1\.0, before feature formats were versioned .*extracted again once: rerun with --overwrite to extract it again, or use another --out$/],
    [older, new RegExp(`holds features of format ${FEATURE_FORMAT_VERSION - 1} .*this dinofeat computes format ${FEATURE_FORMAT_VERSION}, whose features differ: rerun with --overwrite`)],
    [newer, new RegExp(`holds features of format ${FEATURE_FORMAT_VERSION + 1} .*newer than this dinofeat's ${FEATURE_FORMAT_VERSION} \\(or upgrade dinofeat\\): rerun with --overwrite`)],
  ];
  for (const [made, line] of expected) {
    fs.writeFileSync(file, JSON.stringify(made));
    const r = await extract(cache);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr.trim().split('\n').length, 1, `one line, got:\n${r.stderr}`);
    assert.match(r.stderr.trim(), line);
    assert.doesNotMatch(r.stderr, /other settings/, 'not the generic mismatch');
  }
  // validate's cache.json finding says the same.
  fs.writeFileSync(file, JSON.stringify(unversioned));
  const report = await runCli(['validate', cache]);
  assert.equal(report.code, 1, report.stdout + report.stderr);
  assert.match(report.stdout, /cache\.json: the cache was made by dinofeat 0\.1\.0, before feature formats were versioned/);
  const rebuilt = await extract(cache, ['--overwrite', '--quiet']);
  assert.equal(rebuilt.code, 0, rebuilt.stderr);
  assert.match(rebuilt.stdout, new RegExp(`${COUNT} extracted`));
  assert.equal((await readCacheConfig(cache))!.featureFormat, FEATURE_FORMAT_VERSION);
});

test('a resume on another device is noted once, and inspect lists the devices', async () => {
  const cache = await freshCache('cache-device');
  // An earlier part made on another provider: this build has only the CPU one, so that run's shard
  // is written through the cache's own write path with the same identity but another device.
  const config = (await readCacheConfig(cache))!;
  const identity = cacheIdentity({
    model: { ...config.model, weightsSha256: config.model.weightsSha256! }, preprocessing: config.preprocessing,
    stored: config, device: 'cuda',
  });
  assert.equal(identity.fingerprint, config.fingerprint, 'the device is not fingerprinted');
  const other = await openCacheForWrite(cache, { partId: '1_of_2', identity });
  const sink = new ShardSink({ state: other.state, partId: '1_of_2', format: 'parquet', maxShardBytes: 1 << 20, meta: shardMetaOf(identity) });
  const hidden = TINY_TEST_MODEL.hiddenSize;
  await sink.write([{
    key: 'elsewhere.jpg', sha256: 'e'.repeat(64), width: 64, height: 64, bucketWidth: 64, bucketHeight: 64, gridH: 4, gridW: 4,
    cropX: 0, cropY: 0, cropW: 64, cropH: 64, cls: new Float32Array(hidden).fill(1), patches: new Float32Array(16 * hidden).fill(1),
  }]);
  await sink.close();
  await other.close();

  const r = await extract(cache);
  assert.equal(r.code, 0, r.stderr);
  const notes = r.stderr.split('\n').filter((l) => /another|--device/.test(l));
  assert.deepEqual(notes, ['dinofeat: note: earlier shards of this cache were made on --device cuda, this run uses cpu: features agree to rounding, not bit for bit (dinofeat inspect lists the devices)']);
  const again = await extract(cache, ['--device', 'cpu']);
  assert.equal(again.stderr.split('\n').filter((l) => l.includes('note: earlier shards')).length, 1, 'still one note, not one per shard');

  const inspect = await runCli(['inspect', cache]);
  assert.equal(inspect.code, 0, inspect.stderr);
  assert.match(inspect.stdout, /device\s+cpu, cuda {2}\(mixed: features agree to rounding, not bit for bit\)/);
  assert.match(inspect.stdout, new RegExp(`feature format ${FEATURE_FORMAT_VERSION}, written by dinofeat ${DINOFEAT_VERSION.replace(/\./g, '\\.')}`));
});
