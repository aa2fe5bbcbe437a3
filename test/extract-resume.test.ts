/**
 * What a rerun decides for each image, and how a run ends when it cannot go on, through the CLI:
 * the file's sha256 (never its mtime or size) says whether a stored row still holds; an image
 * that became undecodable loses its row; the summary's counts add up; a model that breaks its
 * token count on one bucket mid-run ends the run with one line and keeps what was committed; a
 * bug exits 70 and leaves a cache the next run resumes.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { infoToMetadata } from '../src/model/info.js';
import { readErrorsFile, snapshot, summaryCounts } from './fixtures/cache-reads.js';
import { fakeModelInfo, writeFakeVit } from './fixtures/fake-vit.js';
import { structuredImage, writeManyImages } from './fixtures/images.js';
import { maxAbsDiff, readShardTable, shardRowsByKey } from './fixtures/shard-table.js';
import { makeTinyModel } from './fixtures/tiny-model.js';
import { runCli } from './helpers/cli.js';
import type { Completed } from './helpers/process.js';
import { tempDir } from './helpers/temp.js';

let dir: string;
let model: string;

before(async () => {
  dir = tempDir();
  model = (await makeTinyModel(dir)).onnx;
});

const extract = (inputs: string[], out: string, flags: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<Completed> =>
  runCli(['extract', ...inputs, '--out', out, '--model', model, '--bucket', '64x64', '--quiet', ...flags], env);

const sha256 = (file: string) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

/** An uncompressed PNG (deflate level 0): its size depends on its dimensions only, not its pixels. */
const writeStoredPng = (file: string, seed: number) => structuredImage(64, 64, seed).png({ compressionLevel: 0 }).toFile(file);

/** Each key stored exactly once (a plain read of every shard), as a sorted list. */
async function keysOnce(out: string): Promise<string[]> {
  const keys = (await readShardTable(out)).map((r) => r.key);
  assert.equal(new Set(keys).size, keys.length, `a key stored twice: ${keys.join(', ')}`);
  return keys;
}

test('rerun: a touched but identical file is skipped; a same-size edit with its mtime put back is replaced (sha256 decides)', async () => {
  const images = path.join(dir, 'same-size');
  fs.mkdirSync(images);
  for (const [k, name] of ['a.png', 'b.png', 'c.png'].entries()) await writeStoredPng(path.join(images, name), k + 1);
  const out = path.join(dir, 'cache-same-size');
  assert.equal((await extract([images], out)).code, 0);
  const before = await shardRowsByKey(out);
  const shards = snapshot(path.join(out, 'shards'));

  // Touched: new mtime, same bytes. Nothing is read into the cache again.
  const later = new Date(Date.now() + 3_600_000);
  fs.utimesSync(path.join(images, 'c.png'), later, later);
  const touched = await extract([images], out);
  assert.equal(touched.code, 0, touched.stderr);
  assert.deepEqual(summaryCounts(touched.stdout), { extracted: 0, skipped: 3, failed: 0, found: 3 });
  assert.deepEqual(snapshot(path.join(out, 'shards')), shards, 'no shard written or rewritten');

  // Edited: other pixels, the same byte count, the old mtime restored.
  const b = path.join(images, 'b.png');
  const { size, atime, mtime } = fs.statSync(b);
  await writeStoredPng(b, 99);
  fs.utimesSync(b, atime, mtime);
  assert.deepEqual([fs.statSync(b).size, fs.statSync(b).mtime.getTime()], [size, mtime.getTime()], 'size and mtime (to the ms) as before the edit');
  assert.notEqual(sha256(b), before.get('b.png')!.sha256);
  const edited = await extract([images], out);
  assert.equal(edited.code, 0, edited.stderr);
  assert.match(edited.stdout, /1 extracted, 2 already cached, 0 failed, 1 replaced \(source changed\) of 3 images/);
  assert.deepEqual(await keysOnce(out), ['a.png', 'b.png', 'c.png']);
  const after = await shardRowsByKey(out);
  assert.equal(after.get('b.png')!.sha256, sha256(b), 'the new bytes\' row');
  // Another seed's pixels: CLS max |Δ| 0.37 measured (bound 0.1).
  assert.ok(maxAbsDiff(after.get('b.png')!.cls, before.get('b.png')!.cls) > 0.1, 'the new pixels\' features');
  for (const key of ['a.png', 'c.png']) assert.deepEqual(after.get(key), before.get(key), `${key} as it was`);
});

test('rerun: a cached image that became undecodable loses its row and gets an error row; exit 1', async () => {
  const images = path.join(dir, 'broken-later');
  const keys = await writeManyImages(images, 3);
  const out = path.join(dir, 'cache-broken-later');
  assert.equal((await extract([images], out)).code, 0);
  const victim = path.join(images, keys[1]!);
  fs.writeFileSync(victim, fs.readFileSync(victim).subarray(0, 200)); // a JPEG cut short

  const r = await extract([images], out);
  assert.equal(r.code, 1, r.stderr);
  assert.deepEqual(summaryCounts(r.stdout), { extracted: 0, skipped: 2, failed: 1, found: 3 });
  assert.deepEqual(await keysOnce(out), [keys[0], keys[2]], 'the old row left');
  assert.deepEqual(readErrorsFile(out).map((e) => [e.key, e.stage]), [[keys[1], 'decode']]);

  // And stays that way: the next run fails it again and lists it once.
  const again = await extract([images], out);
  assert.equal(again.code, 1);
  assert.deepEqual(summaryCounts(again.stdout), { extracted: 0, skipped: 2, failed: 1, found: 3 });
  assert.deepEqual(readErrorsFile(out).map((e) => e.key), [keys[1]]);
});

test('summary counts add up: found = extracted + already cached + failed, with a key met twice, a broken file and cached images', async () => {
  const first = path.join(dir, 'counts-a');
  const second = path.join(dir, 'counts-b');
  await writeManyImages(first, 2); // img-000.jpg, img-001.jpg
  fs.writeFileSync(path.join(first, 'broken.jpg'), 'not an image');
  await writeManyImages(second, 1, 1); // img-001.jpg again: the same key from another root
  await writeManyImages(second, 1, 2); // img-002.jpg
  const out = path.join(dir, 'cache-counts');
  const once = await extract([first], out);
  assert.equal(once.code, 1);
  assert.deepEqual(summaryCounts(once.stdout), { extracted: 2, skipped: 0, failed: 1, found: 3 });
  // The process's CPU over the run, and per extracted image (what sizes a host's cores to its accelerator).
  const cpu = /; CPU (\d+\.\d) s, ([\d.]+) ms an image\n/.exec(once.stdout);
  assert.ok(cpu && Number(cpu[1]) > 0, once.stdout);
  assert.ok(Math.abs(Number(cpu[2]) - (Number(cpu[1]) * 1000) / 2) <= 0.051 * 1000 / 2 + 1, `${cpu[2]} ms an image of ${cpu[1]} s for 2 images`);

  const r = await extract([first, second], out);
  assert.equal(r.code, 1);
  const counts = summaryCounts(r.stdout);
  // 5 inputs: 2 cached, broken.jpg fails, the second img-001.jpg is a duplicate, img-002.jpg is new.
  assert.deepEqual(counts, { extracted: 1, skipped: 2, failed: 2, found: 5 });
  assert.equal(counts.extracted + counts.skipped + counts.failed, counts.found);
  assert.match(r.stdout, /1 × source: duplicate key\n/);
  assert.deepEqual(await keysOnce(out), ['img-000.jpg', 'img-001.jpg', 'img-002.jpg']);
});

test('a model whose token count is wrong for one bucket only: the run ends with one line at that bucket, committed shards stay, the rerun without it completes', async () => {
  // 64-wide inputs are right, 96-wide ones carry one token too many; the probe tries 48 and 16.
  const info = fakeModelInfo({ patchSize: 16, hidden: 8, registers: 0 });
  const broken = writeFakeVit(path.join(dir, 'wrong-at-96.onnx'), { patchSize: 16, hidden: 8, registers: 0, metadata: infoToMetadata(info), extraTokenAtWidth: 96 });
  const square = path.join(dir, 'tokens-square');
  const wide = path.join(dir, 'tokens-wide');
  await writeManyImages(square, 4, 0, 64);
  await writeManyImages(wide, 3, 10, 64);
  await structuredImage(150, 100, 7).jpeg().toFile(path.join(wide, 'wide.jpg')); // 1.5: the 96x64 bucket
  const out = path.join(dir, 'cache-tokens');
  const run = (inputs: string[]) => runCli(['extract', ...inputs, '--out', out, '--model', broken, '--bucket', '64x64', '--bucket', '96x64', '--quiet']);

  const first = await run([square]);
  assert.equal(first.code, 0, first.stderr);
  const committed = snapshot(path.join(out, 'shards'));

  const failed = await run([square, wide]);
  assert.equal(failed.code, 2, failed.stdout + failed.stderr);
  assert.equal(failed.stderr.trim().split('\n').length, 1, `one line, got:\n${failed.stderr}`);
  // 4x6 patches: the 96x64 bucket.
  assert.match(failed.stderr, /^dinofeat: model output is \[1, 26, 8\], expected \[1, 25, 8\] \(cls \+ patches = 1 \+ 0 \+ 4x6 tokens of 8\): the model does not fit its metadata; check --patch-size\/--num-registers or reconvert it\n$/);
  assert.doesNotMatch(failed.stdout, /extracted/, 'no summary: the run did not finish');
  const shardsNow = snapshot(path.join(out, 'shards'));
  for (const [file, stamp] of Object.entries(committed)) assert.equal(shardsNow[file], stamp, `${file}: committed before, kept as it was`);
  assert.ok(Object.keys(shardsNow).every((f) => f.endsWith('.parquet')), `no temp file left: ${Object.keys(shardsNow).join(', ')}`);
  const kept = await keysOnce(out);
  assert.ok(!kept.includes('wide.jpg'));

  fs.rmSync(path.join(wide, 'wide.jpg'));
  const rerun = await run([square, wide]);
  assert.equal(rerun.code, 0, rerun.stderr);
  const counts = summaryCounts(rerun.stdout);
  assert.deepEqual([counts.skipped, counts.extracted + counts.skipped, counts.failed], [kept.length, 7, 0]);
  assert.equal((await keysOnce(out)).length, 7);
});

test('a bug (an internal error, not a user\'s) exits 70 with its stack; committed shards stay and the next run resumes', async () => {
  const images = path.join(dir, 'bug');
  const keys = await writeManyImages(images, 3);
  fs.copyFileSync(path.join(images, keys[0]!), path.join(images, 'trigger.jpg'));
  const out = path.join(dir, 'cache-bug');
  assert.equal((await extract([images], out)).code, 0);
  const committed = snapshot(path.join(out, 'shards'));

  // No backdoor in dinofeat: Node's own --import preloads a module that makes hashing throw a
  // TypeError for one file's bytes, standing in for any bug inside the run. The file is a cached
  // key whose bytes changed: the run hashes those itself, before deciding to decode them.
  const hook = path.join(dir, 'hash-bug.mjs');
  fs.writeFileSync(hook, [
    "import crypto from 'node:crypto';",
    'const update = crypto.Hash.prototype.update;',
    'crypto.Hash.prototype.update = function (data, ...rest) {',
    "  if (Buffer.isBuffer(data) && data.includes('HASH-BUG-HERE')) throw new TypeError('hash-bug: injected by the test');",
    '  return update.call(this, data, ...rest);',
    '};',
  ].join('\n'));
  await writeManyImages(images, 2, 3);
  fs.writeFileSync(path.join(images, 'trigger.jpg'), 'HASH-BUG-HERE');
  const env = { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${pathToFileURL(hook).href}`.trim() };
  const r = await extract([images], out, [], env);
  assert.equal(r.code, 70, r.stdout + r.stderr);
  assert.match(r.stderr, /TypeError: hash-bug: injected by the test\n\s+at /, 'the stack, for a bug report');
  assert.doesNotMatch(r.stdout, /extracted/, 'no summary');
  const shardsNow = snapshot(path.join(out, 'shards'));
  for (const [file, stamp] of Object.entries(committed)) assert.equal(shardsNow[file], stamp, `${file}: kept as it was`);

  // Without the hook trigger.jpg is just not an image (its old row goes); the lock was released, the rest resumes.
  const rerun = await extract([images], out);
  assert.equal(rerun.code, 1, rerun.stderr);
  assert.doesNotMatch(rerun.stderr, /lock/);
  assert.deepEqual(summaryCounts(rerun.stdout).failed, 1);
  assert.deepEqual(await keysOnce(out), [...keys, 'img-003.jpg', 'img-004.jpg']);
  assert.deepEqual(readErrorsFile(out).map((e) => [e.key, e.stage]), [['trigger.jpg', 'decode']]);
});
