import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { fileImage } from '../src/source/file-image.js';
import { walkDirectory } from '../src/source/walk.js';
import { readList, keyFromListEntry } from '../src/source/list.js';
import { resolveWorkerSlot, workerOfKey } from '../src/source/partition.js';
import type { SourceItem } from '../src/source/types.js';
import { tempDir } from './helpers/temp.js';

async function collect(gen: AsyncGenerator<SourceItem>): Promise<SourceItem[]> {
  const out: SourceItem[] = [];
  for await (const x of gen) out.push(x);
  return out;
}

function tree(): string {
  const root = tempDir();
  fs.mkdirSync(path.join(root, 'b/sub'), { recursive: true });
  fs.mkdirSync(path.join(root, 'a.jpg')); // a directory named like an image
  fs.writeFileSync(path.join(root, 'a.jpg/inner.PNG'), 'x');
  fs.writeFileSync(path.join(root, 'b/sub/deep.JPEG'), 'x');
  fs.writeFileSync(path.join(root, 'b/notes.txt'), 'x');
  fs.writeFileSync(path.join(root, 'z.webp'), 'x');
  fs.writeFileSync(path.join(root, 'new\nline.jpg'), 'x');
  fs.writeFileSync(Buffer.concat([Buffer.from(root + '/bad'), Buffer.from([0xff, 0xfe]), Buffer.from('.png')]), 'x');
  fs.symlinkSync(root, path.join(root, 'b/sub/loop'));
  fs.symlinkSync(path.join(root, 'missing.jpg'), path.join(root, 'dangling.jpg'));
  fs.symlinkSync(path.join(root, 'z.webp'), path.join(root, 'link-to-z.webp'));
  return root;
}

test('walk: deterministic order, case-insensitive extensions, loops and dangling links reported', async () => {
  const root = tree();
  const items = await collect(walkDirectory(root));
  const images = items.flatMap((x) => ('image' in x ? [x.image.key] : []));
  const problems = items.flatMap((x) => ('problem' in x ? [`${x.problem.key}: ${x.problem.reason.split(':')[0]}`] : []));
  assert.deepEqual(images, ['a.jpg/inner.PNG', 'b/sub/deep.JPEG', 'bad%FF%FE.png', 'link-to-z.webp', 'new\nline.jpg', 'z.webp']);
  assert.deepEqual(problems, ['b/sub/loop: symlink loop', 'dangling.jpg: dangling symlink']);
  // Same result twice (order does not depend on the file system's listing order).
  const plain = (xs: SourceItem[]) => xs.map((x) => ('image' in x ? { ...x.image, read: undefined } : x));
  assert.deepEqual(plain(await collect(walkDirectory(root))), plain(items));
});

test('walk: a non-UTF-8 name keeps its bytes so the file can be opened', async () => {
  const root = tree();
  const items = await collect(walkDirectory(root));
  const bad = items.find((x) => 'image' in x && x.image.key.startsWith('bad'));
  assert.ok(bad && 'image' in bad);
  assert.equal((await bad.image.read()).toString(), 'x');
});

test('a file image reads its whole file: empty, small, and larger than one 512 KiB chunk', async () => {
  const root = tempDir();
  for (const size of [0, 1, 5000, 3 * 2 ** 20 + 7]) {
    const file = path.join(root, `f${size}.jpg`);
    const bytes = Buffer.alloc(size);
    for (let k = 0; k < size; k++) bytes[k] = (k * 2654435761) >>> 24;
    fs.writeFileSync(file, bytes);
    const read = await fileImage(`f${size}`, file, file).read();
    assert.ok(read.equals(bytes), `${size} bytes`);
  }
  await assert.rejects(fileImage('gone', path.join(root, 'gone.jpg'), 'gone.jpg').read(), /ENOENT: no such file or directory, open/);
  await assert.rejects(fileImage('dir', root, 'dir').read(), /EISDIR/);
});

test('walk: a missing root is a user error naming it', async () => {
  await assert.rejects(collect(walkDirectory('/nonexistent/dir')), /cannot read input \/nonexistent\/dir/);
});

test('list: paths resolve against the list file, keys as written', async () => {
  const root = tree();
  const list = path.join(root, 'list.txt');
  fs.writeFileSync(list, './z.webp\r\n\n# comment\nb/sub/deep.JPEG\n');
  const items = await collect(readList(list));
  assert.deepEqual(items.map((x) => 'image' in x && [x.image.key, x.image.origin]), [
    ['z.webp', { file: path.join(root, 'z.webp') }],
    ['b/sub/deep.JPEG', { file: path.join(root, 'b/sub/deep.JPEG') }],
  ]);
  const fromStdin = await collect(readList('-', Readable.from(['a.png\nb.png\n'])));
  assert.deepEqual(fromStdin.map((x) => 'image' in x && x.image.key), ['a.png', 'b.png']);
  assert.equal(keyFromListEntry('/abs/x/../y.png'), 'abs/y.png');
});

test('partition: deterministic, covers every key once, roughly balanced', () => {
  const keys = Array.from({ length: 3000 }, (_, k) => `dir${k % 7}/img${k}.jpg`);
  const counts = [0, 0, 0];
  for (const k of keys) counts[workerOfKey(k, 3)]!++;
  assert.equal(counts.reduce((a, b) => a + b), keys.length);
  for (const c of counts) assert.ok(c > 900 && c < 1100, `unbalanced: ${counts}`);
  assert.equal(workerOfKey('x.jpg', 3), workerOfKey('x.jpg', 3));
});

test('worker slot from flags and scheduler environments', () => {
  assert.deepEqual(resolveWorkerSlot({}, {}), { index: 0, count: 1, origin: 'single worker' });
  assert.equal(resolveWorkerSlot({}, { SLURM_ARRAY_TASK_ID: '5', SLURM_ARRAY_TASK_MIN: '4', SLURM_ARRAY_TASK_COUNT: '3' }).index, 1);
  assert.deepEqual(resolveWorkerSlot({}, { JOB_COMPLETION_INDEX: '2', DINOFEAT_NUM_WORKERS: '4' }).count, 4);
  assert.equal(resolveWorkerSlot({}, { RANK: '1', WORLD_SIZE: '2' }).index, 1);
  assert.equal(resolveWorkerSlot({ numWorkers: 3, workerIndex: 2 }, { RANK: '0', WORLD_SIZE: '2' }).index, 2);
  assert.throws(() => resolveWorkerSlot({ numWorkers: 2, workerIndex: 2 }, {}), /outside 0..1/);
  assert.throws(() => resolveWorkerSlot({}, { JOB_COMPLETION_INDEX: '0' }), /DINOFEAT_NUM_WORKERS/);
});
