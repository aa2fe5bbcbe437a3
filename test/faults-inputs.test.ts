/**
 * Bad input never stops a run and is never lost: every kind of broken, odd or hostile file in one
 * directory (test/fixtures/bad-corpus.ts builds it), run through `dinofeat extract` as a user runs it.
 * Valid images are stored exactly once with their upright size (a plain DuckDB read of the
 * shards), invalid ones are in errors.jsonl with the file, the stage and a reason, the summary
 * counts both, and the exit code says whether any failed.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { decodeRgb, ImageError, readHeader, DEFAULT_MAX_PIXELS } from '../src/image/decode.js';
import { resolveBuckets } from '../src/image/buckets.js';
import { loadModelInfo } from '../src/model/load-info.js';
import { createImagePreparer, ImageFailure } from '../src/pipeline/prepare.js';
import { buildBadCorpus, type CorpusCase } from './fixtures/bad-corpus.js';
import { readErrorsFile, readShardRows, summaryCounts } from './fixtures/cache-reads.js';
import { makeTinyModel } from './fixtures/tiny-model.js';
import { runCli } from './helpers/cli.js';
import { tempDir } from './helpers/temp.js';

let dir: string;
let model: string;
let corpus: string;
let cases: CorpusCase[];

before(async () => {
  dir = tempDir();
  model = (await makeTinyModel(dir)).onnx;
  corpus = path.join(dir, 'corpus');
  cases = await buildBadCorpus(corpus);
});

const extract = (images: string, out: string, ...flags: string[]) =>
  runCli(['extract', images, '--model', model, '--out', out, '--bucket', '64x64', ...flags]);

const isFailure = (c: CorpusCase): c is CorpusCase & { expect: { failed: string; reason: RegExp } } => 'failed' in c.expect;
const isImage = (c: CorpusCase): c is CorpusCase & { expect: { extracted: [number, number] } } => 'extracted' in c.expect;

test('a corpus of broken and odd files: the run goes on, valid images once with their upright size, the rest in errors.jsonl, exit 1', async () => {
  const out = path.join(dir, 'cache');
  const r = await extract(corpus, out);
  assert.equal(r.code, 1, `some images failed, so exit 1:\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');

  const valid = cases.filter(isImage);
  const invalid = cases.filter(isFailure);
  const found = valid.length + invalid.length; // the FIFO is not a file, so not an image found
  assert.ok(valid.length >= 20 && invalid.length >= 8, 'the corpus covers both kinds');

  // Stored: exactly the valid images, once each, with the size a viewer shows (EXIF applied, one animation frame).
  const rows = await readShardRows(out);
  assert.deepEqual(rows.map((row) => row.key), valid.map((c) => c.key).sort(), 'each valid image once, nothing else');
  const byKey = new Map(rows.map((row) => [row.key, row]));
  for (const c of valid) {
    const row = byKey.get(c.key)!;
    assert.deepEqual([row.width, row.height], c.expect.extracted, `${c.why} (${JSON.stringify(c.key)})`);
  }

  // Failed: each once in errors.jsonl, with its path, the stage that saw it and a one-line reason.
  const errors = readErrorsFile(out);
  assert.deepEqual(errors.map((e) => e.key).sort(), invalid.map((c) => c.key).sort(), 'each invalid file once in errors.jsonl');
  for (const c of invalid) {
    const e = errors.find((x) => x.key === c.key)!;
    assert.equal(e.stage, c.expect.failed, `${c.why}: stage`);
    assert.match(e.reason, c.expect.reason, `${c.why}: reason`);
    assert.ok(!e.reason.includes('\n'), `${c.why}: one line`);
    assert.equal(e.path, path.join(corpus, c.key), `${c.why}: path`);
    assert.ok(!Number.isNaN(Date.parse(e.time)), `${c.why}: time`);
  }

  // The summary counts both and names the kinds of failure.
  assert.deepEqual(summaryCounts(r.stdout), { extracted: valid.length, skipped: 0, failed: invalid.length, found });
  assert.match(r.stdout, /failures \(see .*errors\.jsonl\):/);
  for (const kind of ['read: empty file', 'decode: NxN = N pixels is over the limit of N', 'source: symlink loop', 'source: dangling symlink', 'decode: not a readable image', 'decode: premature end of JPEG image']) {
    assert.match(r.stdout, new RegExp(`\\d+ × ${kind.replace(/[()]/g, '\\$&')}\\n`), kind);
  }

  // A rerun reads nothing new: the valid images are cached, the invalid ones fail again (and stay listed once).
  const again = await extract(corpus, out);
  assert.equal(again.code, 1);
  assert.deepEqual(summaryCounts(again.stdout), { extracted: 0, skipped: valid.length, failed: invalid.length, found });
  assert.equal((await readShardRows(out)).length, valid.length);
  assert.equal(readErrorsFile(out).length, invalid.length);
});

test('only odd-but-valid files: exit 0 and an empty errors.jsonl', async () => {
  // A copy of the corpus (cp keeps the non-UTF-8 name and the links) without the invalid files.
  const images = path.join(dir, 'valid-only');
  execFileSync('cp', ['-a', corpus, images]);
  for (const c of cases.filter(isFailure)) fs.rmSync(path.join(images, c.key), { force: true });
  fs.rmSync(path.join(images, 'huge.jpg')); // already proven above; keeps this run short
  const out = path.join(dir, 'cache-valid');
  const r = await extract(images, out);
  assert.equal(r.code, 0, r.stderr);
  const expected = cases.filter((c) => isImage(c) && c.key !== 'huge.jpg').map((c) => c.key).sort();
  assert.deepEqual((await readShardRows(out)).map((row) => row.key), expected);
  assert.deepEqual(summaryCounts(r.stdout), { extracted: expected.length, skipped: 0, failed: 0, found: expected.length });
  assert.equal(fs.readFileSync(path.join(out, 'errors.jsonl'), 'utf8'), '');
});

test('--max-pixels moves the limit: an image over it fails before decoding, one at it is extracted', async () => {
  const images = path.join(dir, 'limit');
  fs.mkdirSync(images);
  for (const name of ['plain.jpg', 'one-pixel.png', 'sixteen-bit.png']) fs.copyFileSync(path.join(corpus, name), path.join(images, name));
  const out = path.join(dir, 'cache-limit');
  // plain.jpg is 40x30 = 1200 pixels, sixteen-bit.png 30x20 = 600.
  const r = await extract(images, out, '--max-pixels', '600');
  assert.equal(r.code, 1);
  assert.deepEqual((await readShardRows(out)).map((row) => row.key), ['one-pixel.png', 'sixteen-bit.png']);
  const [e] = readErrorsFile(out);
  assert.deepEqual([e?.key, e?.stage, e?.reason], ['plain.jpg', 'decode', '40x30 = 1200 pixels is over the limit of 600 (--max-pixels); not decoded']);
});

test('a broken image\'s reason is its own, also when several fail at the same time', async () => {
  // libvips has one error buffer per process: without care, concurrent failures swap or lose their messages.
  const opts = { maxPixels: DEFAULT_MAX_PIXELS, background: '#ffffff', icc: 'ignore' as const };
  const broken = cases.filter((c) => isFailure(c) && c.expect.failed === 'decode' && /\.(png|jpg)$/.test(c.key) && c.key !== 'bomb.png' && c.key !== 'text.jpg');
  assert.deepEqual(broken.map((c) => c.key).sort(), ['bad-crc.png', 'truncated.jpg', 'truncated.png']);
  const files = [...broken.map((c) => ({ c, bytes: fs.readFileSync(path.join(corpus, c.key)) })), { c: undefined, bytes: fs.readFileSync(path.join(corpus, 'plain.jpg')) }];
  for (let round = 0; round < 25; round++) {
    await Promise.all(files.map(async ({ c, bytes }) => {
      const header = await readHeader(bytes, opts);
      const decoding = decodeRgb(bytes, { x: 0, y: 0, w: header.width, h: header.height }, header, opts);
      if (!c) return void (await decoding);
      await assert.rejects(decoding, (e: unknown) => e instanceof ImageError && isFailure(c) && c.expect.reason.test(e.message), `${c.key}, round ${round}`);
    }));
  }
});

test("a broken image's reason is its own through the image stage too, whose workers decode several at a time", async () => {
  // The workers' decodes share libvips with each other and with the main thread's header reads;
  // prepare() guards each job as a whole (vips-alone.ts), so a failure is run again alone.
  const decode = { maxPixels: DEFAULT_MAX_PIXELS, background: '#ffffff', icc: 'ignore' as const };
  const info = loadModelInfo(model);
  const preparer = await createImagePreparer(info, { buckets: resolveBuckets({ bucket: ['64x64'], dinoScale: 1 }, info.patchSize), resize: 'stretch', dinoScale: 1, decode }, { workers: 2 });
  const broken = cases.filter((c) => isFailure(c) && c.expect.failed === 'decode' && /\.(png|jpg)$/.test(c.key) && c.key !== 'bomb.png' && c.key !== 'text.jpg');
  const files = [...broken.map((c) => ({ c, bytes: fs.readFileSync(path.join(corpus, c.key)) })), { c: undefined, bytes: fs.readFileSync(path.join(corpus, 'plain.jpg')) }];
  try {
    for (let round = 0; round < 25; round++) {
      await Promise.all(files.map(async ({ c, bytes }) => {
        const preparing = preparer.prepare(bytes);
        if (!c) return void (await preparing);
        await assert.rejects(preparing, (e: unknown) => e instanceof ImageFailure && e.stage === 'decode' && isFailure(c) && c.expect.reason.test(e.message), `${c.key}, round ${round}`);
      }));
    }
  } finally {
    await preparer.close();
  }
});
