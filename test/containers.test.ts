/**
 * Datasets as they are shipped: WebDataset tar shards (img2dataset's layout, written by Python's
 * tarfile) and Parquet image columns (Hugging Face datasets' Image feature, snappy; pyarrow, zstd)
 * as extract inputs. Keys, where each row came from, the features (equal to the same images from a
 * folder), bad containers, duplicate keys across inputs and runs, the read flags, kills and
 * workers.
 */
import { before, test } from 'node:test';
import { createHash } from 'node:crypto';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { CacheState } from '../src/cache/manifest.js';
import { FAULT_ENV } from '../src/core/fault-point.js';
import { countAhead, type AheadCount } from '../src/source/count.js';
import { readParquet } from '../src/source/parquet.js';
import { openFileRanges } from '../src/source/file-ranges.js';
import { pageRuns } from '../src/source/parquet-pages.js';
import { parquetMetadataAsync } from 'hyparquet';
import { withDefaults } from '../src/source/read-options.js';
import { buildBadCorpus } from './fixtures/bad-corpus.js';
import { readErrorsFile, readShardRows, summaryCounts } from './fixtures/cache-reads.js';
import { writeStructured } from './fixtures/images.js';
import { makeTinyModel, type TinyModel } from './fixtures/tiny-model.js';
import { runCli } from './helpers/cli.js';
import { pythonJson, pythonStdout } from './helpers/python.js';
import { tempDir } from './helpers/temp.js';

const BUCKET = ['--bucket', '64x64', '--quiet'];
const NAMES = Array.from({ length: 6 }, (_, k) => String(k).padStart(9, '0'));

let work: string;
let images: string;
let c: string;
let model: TinyModel;

before(async () => {
  work = tempDir();
  images = path.join(work, 'images');
  for (const [k, name] of NAMES.entries()) await writeStructured(path.join(images, `${name}.jpg`), 60 + 12 * k, 90 - 6 * k, k + 1);
  c = path.join(work, 'containers');
  await pythonStdout([path.resolve('test/write-containers.py'), images, c]);
  model = await makeTinyModel(tempDir());
});

const extract = (args: string[], out: string, env: NodeJS.ProcessEnv = {}) =>
  runCli(['extract', ...args, '--out', out, '--model', model.onnx, ...BUCKET], env);

interface PyRow {
  key: string;
  sha256: string;
  cls: number[];
  patches: number[];
}

async function rowsOf(cache: string): Promise<Map<string, PyRow>> {
  const r = await pythonJson<{ rows: PyRow[] }>([path.resolve('test/read-cache.py')], JSON.stringify({ cache, values: true }));
  return new Map(r.rows.map((row) => [row.key, row]));
}

const maxAbsDiff = (a: number[], b: number[]) => {
  assert.equal(a.length, b.length);
  return a.reduce((m, v, k) => Math.max(m, Math.abs(v - b[k]!)), 0);
};

test('tar shards and Parquet files: keys by container, origins journaled, features equal to the same images from a folder', async () => {
  const fromFolder = path.join(work, 'folder-cache');
  const fromContainers = path.join(work, 'container-cache');
  assert.equal((await extract([images], fromFolder)).code, 0);
  const inputs = ['img2dataset/00000.tar', 'img2dataset/00001.tar.gz', 'hf/train-00000-of-00001.parquet', 'pa/hub-snappy.parquet', 'pa/images-zstd.parquet'].map((p) => path.join(c, p));
  const r = await extract(inputs, fromContainers);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.deepEqual(summaryCounts(r.stdout), { extracted: 24, skipped: 0, failed: 0, found: 24 });

  const expected = new Map<string, string>(); // container key → folder key
  NAMES.slice(0, 4).forEach((n) => expected.set(`00000/${n}`, `${n}.jpg`));
  NAMES.slice(4).forEach((n) => expected.set(`00001/${n}`, `${n}.jpg`));
  NAMES.forEach((n, k) => expected.set(`train-00000-of-00001/${k}`, `${n}.jpg`));
  NAMES.forEach((n, k) => expected.set(`hub-snappy/${k}`, `${n}.jpg`));
  NAMES.forEach((n, k) => expected.set(`images-zstd/${k}`, `${n}.jpg`));
  const folder = await rowsOf(fromFolder);
  const containers = await rowsOf(fromContainers);
  assert.deepEqual([...containers.keys()].sort(), [...expected.keys()].sort());
  let worst = 0;
  for (const [key, folderKey] of expected) {
    const a = containers.get(key)!;
    const b = folder.get(folderKey)!;
    assert.equal(a.sha256, b.sha256, `${key}: the bytes of ${folderKey}`);
    worst = Math.max(worst, maxAbsDiff(a.cls, b.cls), maxAbsDiff(a.patches, b.patches));
  }
  // The same bytes through the same image stage and model. Measured: 0 (bit-identical). The limit
  // allows one float16 step near 1 (2^-10), for another CPU whose kernels round per batch shape;
  // reading the wrong member or row moves values by whole units.
  assert.ok(worst <= 2 ** -10, `largest difference ${worst}`);

  const state = await CacheState.read(fromContainers);
  assert.deepEqual(state.keyToEntry.get('00000/000000002')?.origin, { tar: inputs[0], member: '000000002.jpg' });
  assert.deepEqual(state.keyToEntry.get('00001/000000005')?.origin, { tar: inputs[1], member: './000000005.jpg' });
  assert.deepEqual(state.keyToEntry.get('train-00000-of-00001/3')?.origin, { parquet: inputs[2], row: 3 });

  // validate with no flags reads the recorded containers: every image stored, rows recomputed from their members and rows.
  const v = await runCli(['validate', fromContainers, '--recompute', '8']);
  assert.equal(v.code, 0, v.stdout + v.stderr);
  assert.match(v.stdout, /24 images in .*: 24 stored/);
  assert.match(v.stdout, /8 of 8 sampled rows/);
});

test('bad containers: one error row per sample that cannot be read or per container that cannot be opened; the run goes on', async () => {
  const out = path.join(tempDir(), 'cache');
  const badDir = path.join(tempDir(), 'bad'); // a copy: one file is mended below
  fs.cpSync(path.join(c, 'bad'), badDir, { recursive: true });
  const bad = (n: string) => path.join(badDir, n);
  const r = await extract([bad('cut.tar'), bad('corrupt.tar.gz'), bad('bad-crc.tgz'), bad('not-parquet.parquet'), bad('null-image.parquet'), bad('links.tar'), path.join(c, 'pa/images-zstd.parquet')], out);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  const all = (await readShardRows(out)).map((row) => row.key);
  // A wrong checksum shows at the end of the stream, and gzip drops what it still held: the
  // samples before that are stored, in order.
  const crc = all.filter((k) => k.startsWith('bad-crc/'));
  assert.ok(crc.length >= 1 && crc.length < 4, crc.join());
  assert.deepEqual(crc, NAMES.slice(0, crc.length).map((n) => `bad-crc/${n}`));
  const stored = all.filter((k) => !k.startsWith('bad-crc/'));
  // Before the cut: samples 0 and 1 whole; the good file's six rows; the one real image of each
  // other file; nothing from the gzip stream damaged at its start.
  assert.deepEqual(stored, ['cut/000000000', 'cut/000000001', 'images-zstd/0', 'images-zstd/1', 'images-zstd/2', 'images-zstd/3', 'images-zstd/4', 'images-zstd/5', 'links/c', 'null-image/1']);
  const errors = new Map(readErrorsFile(out).map((e) => [e.key, e]));
  assert.deepEqual([...errors.keys()].sort(), ['bad-crc', 'corrupt', 'cut', 'links/a', 'links/b', 'not-parquet', 'null-image/0']);
  assert.match(errors.get('cut')!.reason, /tar shard cut short or corrupt .*its samples from 000000002 on are lost/);
  assert.equal(errors.get('cut')!.path, bad('cut.tar'));
  assert.match(errors.get('corrupt')!.reason, /gzip stream is corrupt \(invalid block type\)\): its samples from its start are lost/);
  assert.match(errors.get('bad-crc')!.reason, /gzip stream is corrupt \(incorrect data check\)/);
  assert.match(errors.get('not-parquet')!.reason, /^not a readable Parquet file/);
  assert.equal(errors.get('null-image/0')!.path, `${bad('null-image.parquet')}:row 0`);
  assert.match(errors.get('null-image/0')!.reason, /image bytes in column image are null/);
  assert.match(errors.get('links/a')!.reason, /a\.jpg is a link/);
  assert.match(errors.get('links/b')!.reason, /sample has no image member \(members: json;/);
  assert.match(r.stdout, new RegExp(`7 failed of ${17 + crc.length} images`));

  // The whole shard downloaded again: --retry-failed reads it, stores what the cut lost, and its error row goes.
  fs.copyFileSync(path.join(c, 'img2dataset/00000.tar'), bad('cut.tar'));
  const retry = await extract([bad('cut.tar'), '--retry-failed'], out);
  assert.equal(retry.code, 0, retry.stdout + retry.stderr);
  assert.deepEqual(summaryCounts(retry.stdout), { extracted: 2, skipped: 2, failed: 0, found: 4 });
  assert.equal(readErrorsFile(out).find((e) => e.key === 'cut'), undefined);
  assert.deepEqual((await readShardRows(out)).map((row) => row.key).filter((k) => k.startsWith('cut/')), NAMES.slice(0, 4).map((n) => `cut/${n}`));
});

test('--max-pixels refuses a decompression bomb inside a tar shard from its header, naming the shard and the member', async () => {
  const root = tempDir();
  await buildBadCorpus(path.join(root, 'corpus'));
  const shard = path.join(root, 'bombs.tar');
  await pythonStdout(['-c', 'import sys, tarfile\nwith tarfile.open(sys.argv[2], "w") as t: t.add(sys.argv[1], arcname="bomb.png")', path.join(root, 'corpus', 'bomb.png'), shard]);
  const out = path.join(root, 'cache');
  const r = await extract([shard], out);
  assert.equal(r.code, 1);
  const [e] = readErrorsFile(out);
  assert.equal(e?.key, 'bombs/bomb');
  assert.equal(e?.path, `${shard}:bomb.png`);
  assert.match(e?.reason ?? '', /100000x100000 = 10000000000 pixels is over the limit of 100000000 \(--max-pixels\); not decoded/);
});

test('an image column of the wrong type, or none to pick: one line naming the file, the column and the candidates', async () => {
  const out = path.join(tempDir(), 'cache');
  const r = await extract([path.join(c, 'hf/train-00000-of-00001.parquet'), '--image-column', 'caption'], out);
  assert.equal(r.code, 1);
  const [e] = readErrorsFile(out);
  assert.equal(e?.key, 'train-00000-of-00001');
  assert.equal(e?.reason, 'column caption is string, not image bytes (a binary column or a struct with a binary bytes field); image columns: image');
});

test('--key-column, --key-prefix and --image-ext; validate and merge read the inputs the same way', async () => {
  const out = path.join(tempDir(), 'cache');
  const zstd = path.join(c, 'pa/images-zstd.parquet');
  assert.equal((await extract([zstd, '--key-column', 'id', '--key-prefix', 'laion/'], out)).code, 0);
  const exts = path.join(c, 'exts/00000.tar');
  assert.equal((await extract([exts, '--image-ext', 'png,jpg'], out)).code, 1, 'sample 001 has only a .seg.png');
  const state = await CacheState.read(out);
  assert.deepEqual([...state.keyToEntry.keys()].sort(), [...NAMES.map((n) => `laion/img-${n}`), '00000/000'].sort());
  assert.deepEqual(state.keyToEntry.get('00000/000')?.origin, { tar: exts, member: '000.png' });
  assert.equal(readErrorsFile(out).find((e) => e.key === '00000/001')?.reason, 'sample has no image member (members: seg.png; --image-ext is png,jpg)');

  // The record keeps how each input was read, so validate with no flags finds the same keys.
  const v = await runCli(['validate', out, '--recompute', '0']);
  assert.equal(v.code, 0, v.stdout + v.stderr);
  assert.match(v.stdout, /8 images in .*: 7 stored, 1 in the errors log/);
  const m = await runCli(['merge', out, '--images', zstd, '--key-column', 'id', '--key-prefix', 'laion/']);
  assert.equal(m.code, 0, m.stdout + m.stderr);
  assert.match(m.stdout, /gaps: 0 images/);
});

test('a list may name containers beside image files; validate reads the list the same way', async () => {
  const list = path.join(work, 'mixed.txt');
  fs.writeFileSync(list, `containers/img2dataset/00001.tar.gz\nimages/${NAMES[0]}.jpg\ncontainers/pa/images-zstd.parquet\n`);
  const out = path.join(tempDir(), 'cache');
  const r = await runCli(['extract', '--list', list, '--out', out, '--model', model.onnx, ...BUCKET]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const keys = (await readShardRows(out)).map((row) => row.key);
  assert.deepEqual(keys, [...NAMES.slice(4).map((n) => `00001/${n}`), ...NAMES.map((_, k) => `images-zstd/${k}`), `images/${NAMES[0]}.jpg`].sort());
  const v = await runCli(['validate', out]);
  assert.equal(v.code, 0, v.stdout + v.stderr);
  assert.match(v.stdout, /9 images in --list .*: 9 stored/);
});

test('duplicate keys across inputs, in one run and across runs: error rows in errors.jsonl and the summary, never a silent replacement', async () => {
  const root = tempDir();
  const one = path.join(root, 'one');
  const two = path.join(root, 'two');
  await writeStructured(path.join(one, 'a.jpg'), 64, 64, 1);
  await writeStructured(path.join(one, 'b.jpg'), 64, 64, 2);
  await writeStructured(path.join(two, 'a.jpg'), 64, 64, 3);
  fs.mkdirSync(path.join(one, 'shards'));
  fs.mkdirSync(path.join(two, 'shards'));
  fs.copyFileSync(path.join(c, 'img2dataset/00000.tar'), path.join(one, 'shards/00000.tar'));
  fs.copyFileSync(path.join(c, 'exts/00000.tar'), path.join(two, 'shards/00000.tar'));

  const inOneRun = path.join(root, 'cache-1');
  const r = await extract([one, two, path.join(one, 'shards/00000.tar'), path.join(two, 'shards/00000.tar')], inOneRun);
  assert.equal(r.code, 1);
  assert.match(r.stdout, /2 × source: duplicate key/);
  const dups = readErrorsFile(inOneRun).filter((e) => e.reason.startsWith('duplicate key'));
  assert.deepEqual(dups.map((e) => [e.key, e.path]), [['a.jpg', path.join(two, 'a.jpg')], ['00000', path.join(two, 'shards/00000.tar')]]);
  const rows = await readShardRows(inOneRun);
  assert.equal(rows.find((row) => row.key === 'a.jpg')?.sha256, await sha(path.join(one, 'a.jpg')), "the first input's a.jpg holds the key");

  // Across runs: another root's a.jpg does not replace the stored one; the same root's changed a.jpg does.
  const acrossRuns = path.join(root, 'cache-2');
  assert.equal((await extract([one], acrossRuns)).code, 0);
  const again = await extract([two], acrossRuns);
  assert.equal(again.code, 1);
  assert.match(again.stdout, /1 × source: duplicate key/);
  assert.deepEqual(readErrorsFile(acrossRuns).map((e) => [e.key, e.path, e.duplicateOf]), [['a.jpg', path.join(two, 'a.jpg'), path.join(one, 'a.jpg')]]);
  assert.equal((await readShardRows(acrossRuns)).find((row) => row.key === 'a.jpg')?.sha256, await sha(path.join(one, 'a.jpg')));
  await writeStructured(path.join(one, 'a.jpg'), 64, 64, 9);
  const changed = await extract([one], acrossRuns);
  assert.match(changed.stdout, /1 replaced/);
  assert.equal((await readShardRows(acrossRuns)).find((row) => row.key === 'a.jpg')?.sha256, await sha(path.join(one, 'a.jpg')));
  assert.equal(readErrorsFile(acrossRuns).length, 1, 'the duplicate stays listed: that image is still not stored');
});

test('kill -9 in the middle of a tar shard, then rerun: every sample exactly once', async () => {
  const root = tempDir();
  const shard = path.join(root, 'big.tar');
  // 40 samples: the same six images under new names, so many shards are committed.
  await pythonStdout(['-c', `
import io, tarfile, sys
src = tarfile.open(sys.argv[1])
members = [m for m in src.getmembers() if m.name.endswith('.jpg')]
with tarfile.open(sys.argv[2], 'w') as out:
    for k in range(40):
        m = members[k % len(members)]
        data = src.extractfile(m).read()
        for ext, payload in (('jpg', data), ('txt', b'caption')):
            info = tarfile.TarInfo(f'{k:05d}.{ext}')
            info.size = len(payload)
            out.addfile(info, io.BytesIO(payload))
`, path.join(c, 'img2dataset/00000.tar'), shard]);
  const out = path.join(root, 'cache');
  const args = [shard, '--out', out, '--model', model.onnx, '--bucket', '256x256', '--dtype', 'float32', '--shard-size', '1', '--quiet'];
  for (const point of ['shard-renamed:2', 'journal-line-torn:1']) {
    const killed = await runCli(['extract', ...args], { [FAULT_ENV]: point });
    assert.equal(killed.signal, 'SIGKILL', `${point}: ${killed.stderr}`);
  }
  const last = await runCli(['extract', ...args]);
  assert.equal(last.code, 0, last.stderr);
  const keys = (await readShardRows(out)).map((row) => row.key);
  assert.deepEqual(keys, Array.from({ length: 40 }, (_, k) => `big/${String(k).padStart(5, '0')}`));
});

test('workers: with as many containers as workers each opens only its own files; merge finds no gap', async () => {
  const shards = ['img2dataset/00000.tar', 'img2dataset/00001.tar.gz', 'hf/train-00000-of-00001.parquet'].map((p) => path.join(c, p));
  const out = path.join(tempDir(), 'cache');
  const found: number[] = [];
  for (const index of ['0', '1']) {
    const r = await extract([...shards, '--num-workers', '2', '--worker-index', index], out);
    assert.equal(r.code, 0, r.stderr);
    found.push(summaryCounts(r.stdout).found);
  }
  // Sorted files dealt round-robin: worker 0 has the Parquet file (6) and 00001.tar.gz (2), worker 1 00000.tar (4).
  assert.deepEqual(found, [8, 4]);
  const state = await CacheState.read(out);
  const byPart = new Map<string, Set<string>>();
  for (const shard of state.shards.values()) for (const [key] of shard.keys) byPart.set(shard.part, (byPart.get(shard.part) ?? new Set()).add(key.split('/')[0]!));
  assert.deepEqual([...byPart.get('1_of_2')!], ['00000']);
  assert.deepEqual([...byPart.get('0_of_2')!].sort(), ['00001', 'train-00000-of-00001']);
  const m = await runCli(['merge', out, ...shards.flatMap((s) => ['--images', s])]);
  assert.equal(m.code, 0, m.stdout + m.stderr);
  assert.match(m.stdout, /12 rows .* gaps: 0 images/s);
});

test('progress counts ahead: folders walked, Parquet rows from footers, tar shards by their bytes; workers count their own share', async () => {
  const inputs = { paths: [images, path.join(c, 'hf/train-00000-of-00001.parquet'), path.join(c, 'img2dataset/00000.tar')], lists: [] };
  const count = async (index: number, n: number) => {
    let last: AheadCount | undefined;
    await countAhead(inputs, { index, count: n }, (x) => void (last = x), () => false);
    return last!;
  };
  assert.deepEqual(await count(0, 1), { images: 12, final: false, tarBytes: fs.statSync(inputs.paths[2]!).size });
  const parquetOnly = { paths: [images, path.join(c, 'pa/images-zstd.parquet')], lists: [] };
  let whole: AheadCount | undefined;
  await countAhead(parquetOnly, { index: 0, count: 1 }, (x) => void (whole = x), () => false);
  assert.deepEqual(whole, { images: 12, final: true, tarBytes: 0 });
  // Fewer containers than workers: the key hash splits rows and files, and the shares add up.
  const shares = await Promise.all([0, 1, 2].map((k) => count(k, 3)));
  assert.equal(shares.reduce((n, s) => n + s.images, 0), 12);
});

test('a large row group is read in slices of rows (through its page index), giving the same rows', async () => {
  const file = path.join(c, 'hf/train-00000-of-00001.parquet'); // one row group, page index written by datasets
  const read = async (sliceBytes?: number) => {
    const out: Array<[string, string]> = [];
    for await (const item of readParquet(file, withDefaults({}), undefined, sliceBytes)) {
      assert.ok('image' in item);
      out.push([item.image.key, createHash('sha256').update(await item.image.read()).digest('hex')]);
    }
    return out;
  };
  const whole = await read();
  assert.equal(whole.length, 6);
  assert.deepEqual(await read(1), whole, 'one row a slice');
  assert.deepEqual(await read(5000), whole, 'a few rows a slice');
});

test('a big row group without a page index (as pyarrow writes by default) is walked page by page: the same rows, each byte read once, reads bounded by the slice', async () => {
  const files = { plain: 'one-group-plain', dict: 'one-group-dict', fallback: 'one-group-fallback' };
  const rowsOf = async (file: string, keyColumn: string | undefined, sliceBytes?: number, only?: Set<number>) => {
    const out: string[] = [];
    for await (const item of readParquet(file, withDefaults({ keyColumn }), only, sliceBytes)) {
      assert.ok('image' in item, JSON.stringify(item));
      out.push(`${item.image.key} ${createHash('sha256').update(await item.image.read()).digest('hex')} ${JSON.stringify(item.image.origin)}`);
    }
    return out;
  };
  for (const [kind, name] of Object.entries(files)) {
    const file = path.join(c, 'pa', `${name}.parquet`);
    const keyColumn = kind === 'dict' ? undefined : 'id';
    const whole = await rowsOf(file, keyColumn); // small enough to be read whole, as before
    assert.equal(whole.length, 6);
    for (const [k, n] of NAMES.entries()) assert.ok(whole[k]!.includes(await sha(path.join(images, `${n}.jpg`))), `${name} row ${k}`);
    assert.deepEqual(await rowsOf(file, keyColumn, 1), whole, `${name}: walked a page at a time`);
    assert.deepEqual(await rowsOf(file, keyColumn, 3_000_000), whole, `${name}: walked two pages at a time`);
    assert.deepEqual(await rowsOf(file, keyColumn, 1, new Set([1, 4])), [whole[1], whole[4]], `${name}: only some rows`);

    // The walk itself: runs cover the rows in order, each byte of the chunk in one run, and every
    // read bigger than a header read (4 KiB, 16 KiB for a header with statistics) is a run's; at a
    // 1-byte slice a plain run is one page.
    const ranges = await openFileRanges(file);
    try {
      const metadata = await parquetMetadataAsync(ranges.asyncBuffer);
      const meta = metadata.row_groups[0]!.columns.find((col) => ['jpg', 'image'].includes(col.meta_data!.path_in_schema[0]!))!.meta_data!;
      const reads: number[] = [];
      const readAt = async (at: number, length: number) => {
        reads.push(length);
        return ranges.readAt(at, length);
      };
      const runs: Array<{ firstRow: number; rows: number; bytes: number; dictionary: number }> = [];
      for await (const run of pageRuns(readAt, meta, 1)) runs.push({ firstRow: run.firstRow, rows: run.rows, bytes: run.bytes.length, dictionary: run.dictionaryBytes });
      assert.deepEqual(runs.map((r) => r.firstRow), runs.map((_, k) => runs.slice(0, k).reduce((n, r) => n + r.rows, 0)));
      assert.equal(runs.reduce((n, r) => n + r.rows, 0), 6);
      assert.equal(runs.reduce((n, r) => n + r.bytes, 0), Number(meta.total_compressed_size), `${name}: each byte in one run`);
      assert.ok(reads.every((n) => n <= 16384 || runs.some((r) => r.bytes === n)), `${name}: reads ${reads}`);
      const expected = { plain: [[0, 1], [0, 1], [0, 1], [0, 1], [0, 1], [0, 1]], dict: [[1, 6]], fallback: [[1, 2], [0, 2], [0, 2]] }[kind]!;
      assert.deepEqual(runs.map((r) => [r.dictionary > 0 ? 1 : 0, r.rows]), expected, `${name}: ${JSON.stringify(runs)}`);
    } finally {
      await ranges.close();
    }
  }
});

test('a walked chunk whose pages cannot be read: the rows from there on are error rows, the rows before are kept', async () => {
  const file = path.join(c, 'pa', 'one-group-plain.parquet');
  const bytes = fs.readFileSync(file);
  const metadata = await parquetMetadataAsync(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
  const meta = metadata.row_groups[0]!.columns.find((col) => col.meta_data!.path_in_schema[0] === 'jpg')!.meta_data!;
  // Overwrite the third page's header (pages are one image each) with a header of an unknown Thrift type.
  let at = Number(meta.data_page_offset);
  for (let page = 0; page < 2; page++) {
    let rows = 0;
    for await (const run of pageRuns(async (p, n) => bytes.subarray(p, p + n), { ...meta, data_page_offset: BigInt(at), total_compressed_size: BigInt(Number(meta.data_page_offset) + Number(meta.total_compressed_size) - at) }, 1)) {
      at += run.bytes.length;
      rows = run.rows;
      break;
    }
    assert.equal(rows, 1);
  }
  const damaged = Buffer.from(bytes);
  damaged[at] = 0x1d; // field 1, type 13: no such Thrift type
  const broken = path.join(tempDir(), 'broken.parquet');
  fs.writeFileSync(broken, damaged);
  const items = [];
  for await (const item of readParquet(broken, withDefaults({ keyColumn: 'id' }), undefined, 1)) items.push(item);
  assert.deepEqual(items.map((i) => ('image' in i ? i.image.key : i.problem.key)), ['img-000000000', 'img-000000001', 'broken/2', 'broken/3', 'broken/4', 'broken/5']);
  for (const i of items.slice(2)) assert.match('problem' in i ? i.problem.reason : '', /cannot decode the row \(unknown Thrift type 13 in a page header\)/);
});

async function sha(file: string): Promise<string> {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}
