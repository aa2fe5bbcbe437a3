/**
 * `--retry-failed` re-attempts exactly the images in the errors log: not new images, not changed
 * ones that are cached; an image that now works is stored and leaves the log, one that still
 * fails stays in it once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { readErrorsFile, summaryCounts } from './fixtures/cache-reads.js';
import { writeStructured } from './fixtures/images.js';
import { makeTinyModel } from './fixtures/tiny-model.js';
import { runCli } from './helpers/cli.js';
import { tempDir } from './helpers/temp.js';

async function storedShas(out: string): Promise<Record<string, string>> {
  const db = await (await DuckDBInstance.create(':memory:')).connect();
  const rows = (await db.runAndReadAll(`SELECT key, sha256 FROM read_parquet('${out}/shards/*.parquet') ORDER BY key`)).getRowObjects();
  return Object.fromEntries(rows.map((r) => [String(r.key), String(r.sha256)]));
}

const sha = (file: string) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

test('--retry-failed retries only the logged images; a fixed one is stored and leaves the log', async () => {
  const dir = tempDir();
  const model = (await makeTinyModel(dir)).onnx;
  const images = path.join(dir, 'images');
  const out = path.join(dir, 'cache');
  const extract = (...flags: string[]) => runCli(['extract', images, '--model', model, '--out', out, '--bucket', '64x64', ...flags]);
  const at = (key: string) => path.join(images, key);

  await writeStructured(at('small.jpg'), 40, 30, 1); // 1200 pixels
  await writeStructured(at('large.jpg'), 60, 50, 2); // 3000 pixels: over --max-pixels 2000 below
  await writeStructured(at('sub/ok.png'), 20, 20, 3);
  await writeStructured(at('broken.png'), 30, 30, 4);
  fs.truncateSync(at('broken.png'), Math.floor(fs.statSync(at('broken.png')).size / 2));

  const first = await extract('--max-pixels', '2000');
  assert.equal(first.code, 1);
  assert.deepEqual(summaryCounts(first.stdout), { extracted: 2, skipped: 0, failed: 2, found: 4 });
  assert.deepEqual(readErrorsFile(out).map((e) => [e.key, e.stage]).sort(), [['broken.png', 'decode'], ['large.jpg', 'decode']]);
  const smallSha = sha(at('small.jpg'));

  // Meanwhile a new image appears, a cached one changes and a dangling link appears: a retry touches none of them.
  await writeStructured(at('new.jpg'), 30, 20, 5);
  await writeStructured(at('small.jpg'), 40, 30, 6);
  fs.symlinkSync('gone.jpg', at('dangling.jpg'));

  // The default limit lets large.jpg through; broken.png still fails.
  const retry = await extract('--retry-failed');
  assert.equal(retry.code, 1, retry.stderr);
  assert.deepEqual(summaryCounts(retry.stdout), { extracted: 1, skipped: 0, failed: 1, found: 2 });
  assert.deepEqual(Object.keys(await storedShas(out)), ['large.jpg', 'small.jpg', 'sub/ok.png']);
  assert.equal((await storedShas(out))['small.jpg'], smallSha, 'the changed cached image was not re-extracted');
  const still = readErrorsFile(out);
  assert.deepEqual(still.map((e) => e.key), ['broken.png'], 'large.jpg left the log, broken.png is in it once');
  assert.match(still[0]!.reason, /libpng read error/);

  // The broken file is fixed: the next retry stores it and the log is empty.
  await writeStructured(at('broken.png'), 30, 30, 4);
  const fixed = await extract('--retry-failed');
  assert.equal(fixed.code, 0, fixed.stderr);
  assert.deepEqual(summaryCounts(fixed.stdout), { extracted: 1, skipped: 0, failed: 0, found: 1 });
  assert.deepEqual(readErrorsFile(out), []);
  assert.equal(fs.readFileSync(path.join(out, 'errors.jsonl'), 'utf8'), '');
  assert.equal((await storedShas(out))['broken.png'], sha(at('broken.png')));

  // Nothing left to retry: a retry does nothing and says so.
  const nothing = await extract('--retry-failed');
  assert.equal(nothing.code, 0);
  assert.deepEqual(summaryCounts(nothing.stdout), { extracted: 0, skipped: 0, failed: 0, found: 0 });

  // A plain run then picks up what the retries left alone.
  fs.rmSync(at('dangling.jpg'));
  const full = await extract();
  assert.equal(full.code, 0);
  assert.match(full.stdout, /2 extracted, 3 already cached, 0 failed, 1 replaced \(source changed\) of 5 images/);
  const final = await storedShas(out);
  assert.deepEqual(Object.keys(final), ['broken.png', 'large.jpg', 'new.jpg', 'small.jpg', 'sub/ok.png']);
  for (const [key, value] of Object.entries(final)) assert.equal(value, sha(at(key)), key);
});
