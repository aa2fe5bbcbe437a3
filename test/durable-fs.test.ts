/**
 * core/durable-fs, the one owner of temp-file-then-rename: a streamed write replaces the file whole
 * or not at all, leaves no temp file either way, and a link is swapped, never removed first.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { RERUN_ADVICE, parseAtomicTemp, rethrowIoError, symlinkAtomic, writeAll, writeFileAtomic, writeFileDurable } from '../src/core/durable-fs.js';
import { isUserError } from '../src/core/errors.js';
import { tempDir } from './helpers/temp.js';

test('writeFileDurable streams into a temp file and renames it over the file; returns what the writer returns', async () => {
  const dir = tempDir();
  const file = path.join(dir, 'model.bin');
  fs.writeFileSync(file, 'old');
  const seen: string[] = [];
  const n = await writeFileDurable(file, async (handle) => {
    // Until the rename, readers see the old contents, and the temp file is one writeFileDurable names.
    seen.push(fs.readFileSync(file, 'utf8'), ...fs.readdirSync(dir).filter((f) => parseAtomicTemp(f, file)));
    await writeAll(handle, Buffer.from('new '));
    await writeAll(handle, Buffer.from('contents'));
    return 12;
  });
  assert.equal(n, 12);
  assert.equal(seen[0], 'old');
  assert.equal(seen.length, 2, `one temp file while writing: ${seen}`);
  assert.equal(fs.readFileSync(file, 'utf8'), 'new contents');
  assert.deepEqual(fs.readdirSync(dir), ['model.bin']);
});

test('a writer that fails leaves the old file and no temp file', async () => {
  const dir = tempDir();
  const file = path.join(dir, 'manifest.json');
  await writeFileAtomic(file, 'kept');
  await assert.rejects(
    writeFileDurable(file, async (handle) => {
      await writeAll(handle, Buffer.from('half'));
      throw new Error('writer broke');
    }),
    /writer broke/,
  );
  assert.equal(fs.readFileSync(file, 'utf8'), 'kept');
  assert.deepEqual(fs.readdirSync(dir), ['manifest.json']);
});

test('a fixable I/O failure is one line naming the file, with the advice the caller gives (the cache\'s by default)', async () => {
  const dir = tempDir();
  // ENOENT is not one a user fixes by freeing space or permissions: it stays as it is.
  await assert.rejects(writeFileAtomic(path.join(dir, 'no-such-dir', 'model.onnx'), 'x'), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
  const full = Object.assign(new Error('write failed'), { code: 'ENOSPC' });
  assert.throws(() => rethrowIoError(full, '/m/model.onnx', RERUN_ADVICE), (e: unknown) => isUserError(e) && e.message === 'cannot write /m/model.onnx: the disk is full (ENOSPC); fix that and run the command again');
  assert.throws(() => rethrowIoError(full, '/c/shards/x.tmp'), (e: unknown) => isUserError(e) && e.message.endsWith('(ENOSPC); fix that and rerun, finished shards are kept'));
});

test('symlinkAtomic points a link at a new target, replacing the old link by rename', async () => {
  const dir = tempDir();
  const link = path.join(dir, 'default.onnx');
  await symlinkAtomic(path.join(dir, 'a.onnx'), link);
  await symlinkAtomic(path.join(dir, 'b.onnx'), link);
  assert.equal(fs.readlinkSync(link), path.join(dir, 'b.onnx'));
  assert.deepEqual(fs.readdirSync(dir), ['default.onnx']);
});
