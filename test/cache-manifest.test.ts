/**
 * The cache directory under crashes and reruns: shard rotation and journaling, orphan / temp
 * files and torn journal lines never counted, stale rows removed so a plain read of the shards
 * sees each key once, the errors log, the identity check, and merge's gaps and duplicates.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { DuckDBInstance } from '@duckdb/node-api';
import { clearCache, identityMismatch, readCacheConfig, writeCacheConfig } from '../src/cache/identity.js';
import { ErrorsLog, readErrors } from '../src/cache/errors-log.js';
import { readJournal } from '../src/cache/journal.js';
import { acquireLock } from '../src/cache/lock.js';
import { CacheState, findDuplicates, readAllJournals } from '../src/cache/manifest.js';
import { mergeCache, writeManifest } from '../src/cache/manifest-summary.js';
import { removeKeys } from '../src/cache/remove-keys.js';
import { readFeatureRows } from '../src/shard/shard-reader.js';
import { ShardSink } from '../src/cache/shard-sink.js';
import type { ShardFormat } from '../src/shard/schema.js';
import { FINGERPRINT, MODEL, assertClose, fingerprintFor, identity, makeRow, shardMeta } from './fixtures/feature-rows.js';
import { pythonJson } from './helpers/python.js';
import { tempDir } from './helpers/temp.js';

/** A cache with `count` rows of part `partId` in shards of at most ~2 rows. */
async function fillCache(dir: string, partId: string, keys: readonly string[], format: ShardFormat = 'parquet') {
  if (!(await readCacheConfig(dir))) await writeCacheConfig(dir, identity(format));
  const lock = await acquireLock(dir, partId);
  const state = await CacheState.open(dir, partId);
  // One row of the fixtures weighs ~250 bytes in float16; 600 bytes fits two.
  const sink = new ShardSink({ state, partId, format, meta: shardMeta('float16', false), maxShardBytes: 600 });
  await sink.write(keys.map((key, i) => makeRow(i, false, key)));
  const records = await sink.close();
  return { lock, state, records };
}

const keysOf = (n: number, prefix = 'img') => Array.from({ length: n }, (_, i) => `${prefix}/${i}.jpg`);

/** Keys as a plain reader of shards/*.parquet sees them, with no manifest: DuckDB and pyarrow. */
async function plainReadKeys(dir: string): Promise<{ duckdb: string[]; pyarrow: string[] }> {
  const db = await (await DuckDBInstance.create(':memory:')).connect();
  const rows = (await db.runAndReadAll(`SELECT key FROM read_parquet('${dir}/shards/*.parquet') ORDER BY key`)).getRowObjects();
  const pyarrow = await pythonJson<string[]>([
    '-c',
    'import sys, json, glob, pyarrow.parquet as pq\n' +
      'keys = [k for f in sorted(glob.glob(sys.argv[1] + "/shards/*.parquet")) for k in pq.read_table(f, columns=["key"]).column("key").to_pylist()]\n' +
      'print(json.dumps(sorted(keys)))',
    dir,
  ]);
  return { duckdb: rows.map((r) => String(r.key)), pyarrow };
}

describe('shard sink', () => {
  it('rotates shards by size, renames them into place and journals each one', async () => {
    const dir = tempDir();
    const { lock, state, records } = await fillCache(dir, '0', keysOf(7));
    assert.deepEqual(records.map((r) => r.file), ['00001', '00002', '00003', '00004'].map((s) => `shards/part-0-${s}.parquet`));
    assert.deepEqual(records.map((r) => r.rows), [2, 2, 2, 1]);
    assert.deepEqual(fs.readdirSync(path.join(dir, 'shards')).sort(), records.map((r) => path.basename(r.file)));
    const journal = await readJournal(path.join(dir, 'manifest/part-0.jsonl'));
    assert.deepEqual(journal.records, records);
    assert.equal(state.keyToEntry.size, 7);
    assert.deepEqual(state.keyToEntry.get('img/2.jpg'), { sha256: makeRow(2, false).sha256, shard: 'shards/part-0-00002.parquet' });
    const rows = await readFeatureRows(path.join(dir, records[1]!.file));
    assertClose(rows[0]!.patches, makeRow(2, false).patches, 'float16', 'patches');
    await lock.release();
  });

  it('refuses to write a key that is already stored', async () => {
    const dir = tempDir();
    const { lock, state } = await fillCache(dir, '0', keysOf(2));
    const sink = new ShardSink({ state, partId: '0', format: 'parquet', meta: shardMeta('float16', false) });
    await assert.rejects(sink.write([makeRow(0, false, 'img/1.jpg')]), /already in the cache/);
    await sink.abort();
    await lock.release();
  });

  it('writes Arrow shards too', async () => {
    const dir = tempDir();
    const { lock, records } = await fillCache(dir, '0', keysOf(3), 'arrow');
    assert.ok(records.length > 1);
    assert.ok(records.every((r, i) => r.file === `shards/part-0-0000${i + 1}.arrow`));
    const keys = [];
    for (const r of records) keys.push(...(await readFeatureRows(path.join(dir, r.file))).map((row) => row.key));
    assert.deepEqual(keys, keysOf(3));
    await lock.release();
  });
});

describe('crash safety', () => {
  it('never counts orphan shards, temp files or a torn journal line, and cleans them up', async () => {
    const dir = tempDir();
    const { lock, records } = await fillCache(dir, '0', keysOf(4));
    // What a kill can leave: a shard renamed but never journaled, a shard still being written,
    // half a journal line; plus another part's in-flight files, which part 0 must not touch.
    const orphan = 'shards/part-0-00009.parquet';
    fs.copyFileSync(path.join(dir, records[0]!.file), path.join(dir, orphan));
    fs.writeFileSync(path.join(dir, 'shards/part-0-00010.parquet.tmp'), 'PAR1 half written');
    fs.copyFileSync(path.join(dir, records[0]!.file), path.join(dir, 'shards/part-1-00001.parquet'));
    fs.writeFileSync(path.join(dir, 'shards/part-1-00002.parquet.tmp'), 'x');
    const journalFile = path.join(dir, 'manifest/part-0.jsonl');
    const intact = fs.readFileSync(journalFile, 'utf8');
    fs.appendFileSync(journalFile, '{"file":"shards/part-0-00009.parquet","format":"parq');

    const read = await CacheState.read(dir);
    assert.equal(read.keyToEntry.size, 4, 'a read-only view counts only journaled shards');
    assert.equal(read.shards.size, records.length);

    const state = await CacheState.open(dir, '0');
    assert.equal(state.keyToEntry.size, 4);
    assert.deepEqual(state.removed.sort(), [orphan, 'shards/part-0-00010.parquet.tmp']);
    assert.equal(fs.readFileSync(journalFile, 'utf8'), intact, 'torn line cut off');
    assert.ok(fs.existsSync(path.join(dir, 'shards/part-1-00001.parquet')), "another part's files are left to that part");
    assert.ok(fs.existsSync(path.join(dir, 'shards/part-1-00002.parquet.tmp')));

    // The next shard gets a fresh name, and appending after the repair keeps the journal valid.
    const sink = new ShardSink({ state, partId: '0', format: 'parquet', meta: shardMeta('float16', false) });
    await sink.write([makeRow(9, false, 'img/new.jpg')]);
    const [added] = await sink.close();
    assert.equal(added!.file, 'shards/part-0-00003.parquet');
    assert.equal((await readJournal(journalFile)).records.length, records.length + 1);
    await lock.release();
  });

  it('ignores a journaled shard whose file was deleted, so its images are extracted again', async () => {
    const dir = tempDir();
    const { lock, records } = await fillCache(dir, '0', keysOf(4));
    fs.rmSync(path.join(dir, records[1]!.file));
    const state = await CacheState.open(dir, '0');
    assert.deepEqual(state.missing, [records[1]!.file]);
    assert.deepEqual([...state.keyToEntry.keys()].sort(), ['img/0.jpg', 'img/1.jpg']);
    await lock.release();
  });

  it('reports a journal damaged before its last line instead of guessing', async () => {
    const dir = tempDir();
    const { lock } = await fillCache(dir, '0', keysOf(4));
    const journalFile = path.join(dir, 'manifest/part-0.jsonl');
    fs.writeFileSync(journalFile, `garbage\n${fs.readFileSync(journalFile, 'utf8')}`);
    await assert.rejects(CacheState.open(dir, '0'), /part-0\.jsonl is corrupt at byte 0/);
    await lock.release();
  });
});

describe('removeKeys', () => {
  it('rewrites affected shards so a plain read sees each remaining key once and removed keys never', async () => {
    const dir = tempDir();
    const { lock, state, records } = await fillCache(dir, '0', keysOf(7));
    const before = await readFeatureRows(path.join(dir, records[0]!.file));
    // img/1 and img/3 share no shard; img/4 and img/5 empty the third shard entirely.
    const result = await removeKeys(state, '0', ['img/1.jpg', 'img/3.jpg', 'img/4.jpg', 'img/5.jpg', 'not/stored.jpg']);
    assert.equal(result.rows, 4);
    assert.deepEqual(result.rewritten, records.slice(0, 3).map((r) => r.file));
    const remaining = ['img/0.jpg', 'img/2.jpg', 'img/6.jpg'];
    assert.deepEqual(await plainReadKeys(dir), { duckdb: remaining, pyarrow: remaining });
    assert.deepEqual([...state.keyToEntry.keys()].sort(), remaining);

    // Kept rows are copied byte for byte, and the journal replays to the same state.
    const kept = await readFeatureRows(path.join(dir, state.keyToEntry.get('img/0.jpg')!.shard));
    assert.deepEqual(kept[0]!.patches, before[0]!.patches);
    const reopened = await CacheState.open(dir, '0');
    assert.deepEqual([...reopened.keyToEntry].sort(), [...state.keyToEntry].sort());
    assert.deepEqual(reopened.removed, []);

    // A changed image is written again after its old row left: still exactly once.
    const sink = new ShardSink({ state: reopened, partId: '0', format: 'parquet', meta: shardMeta('float16', false) });
    await sink.write([makeRow(30, false, 'img/3.jpg')]);
    await sink.close();
    const again = [...remaining, 'img/3.jpg'].sort();
    assert.deepEqual(await plainReadKeys(dir), { duckdb: again, pyarrow: again });
    await lock.release();
  });

  it('takes the lock of another part to rewrite its shards, and refuses while that part is busy', async () => {
    const dir = tempDir();
    const part1 = await fillCache(dir, '1', keysOf(2, 'one'));
    const part0 = await fillCache(dir, '0', keysOf(2, 'zero'));
    const state = await CacheState.open(dir, '0');
    await assert.rejects(removeKeys(state, '0', ['one/0.jpg']), /in use by pid/);
    await part1.lock.release();
    const result = await removeKeys(state, '0', ['one/0.jpg']);
    assert.equal(result.rows, 1);
    assert.match(fs.readFileSync(path.join(dir, 'manifest/part-1.jsonl'), 'utf8'), /"replace":"shards\/part-1-00001.parquet"/);
    assert.deepEqual((await plainReadKeys(dir)).duckdb, ['one/1.jpg', 'zero/0.jpg', 'zero/1.jpg']);
    await part0.lock.release();
  });
});

describe('errors log', () => {
  it('keeps failures across runs until the image succeeds, and never lists cached images', async () => {
    const dir = tempDir();
    const log = await ErrorsLog.open(dir, '0');
    await log.record({ key: 'a.jpg', path: '/in/a.jpg', stage: 'decode', reason: 'truncated JPEG' });
    await log.record({ key: 'b.jpg', path: '/in/b.jpg', stage: 'read', reason: 'EACCES' });
    await log.record({ key: 'c.jpg', path: '/in/c.jpg', stage: 'infer', reason: 'x' });
    // A crash after these appends and a torn line must not lose them.
    fs.appendFileSync(path.join(dir, 'manifest/errors-0.jsonl'), '{"key":"d.j');
    const rerun = await ErrorsLog.open(dir, '0');
    assert.deepEqual([...rerun.entries.keys()], ['a.jpg', 'b.jpg', 'c.jpg']);
    rerun.resolve('a.jpg');
    await rerun.record({ key: 'b.jpg', path: '/in/b.jpg', stage: 'decode', reason: 'still broken' });
    await rerun.save();
    const third = await ErrorsLog.open(dir, '0');
    assert.deepEqual([...third.entries.values()].map((e) => [e.key, e.stage, e.reason]), [['c.jpg', 'infer', 'x'], ['b.jpg', 'decode', 'still broken']]);
    assert.deepEqual((await readErrors(dir, new Set(['c.jpg']))).map((e) => e.key), ['b.jpg']);
  });
});

describe('cache identity', () => {
  it('names what differs, and --overwrite clears only what dinofeat wrote', async () => {
    const dir = tempDir();
    await fillCache(dir, '0', keysOf(2)).then((c) => c.lock.release());
    const config = (await readCacheConfig(dir))!;
    assert.equal(identityMismatch(config, identity()), undefined);
    const other = { ...identity('parquet', 'fp-other'), model: { ...MODEL, hiddenSize: 16 } };
    assert.ok(identityMismatch(config, other)!.startsWith(`fingerprint ${FINGERPRINT} vs fp-other (model differ`), identityMismatch(config, other));
    // The stored dtype is fingerprinted: the line still says which dtypes.
    const float32 = { ...identity('parquet', fingerprintFor('float32')), dtype: 'float32' as const };
    assert.equal(identityMismatch(config, float32), `fingerprint ${FINGERPRINT} vs ${fingerprintFor('float32')} (dtype float16 vs float32 differ)`);
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'mine');
    await clearCache(dir);
    assert.deepEqual(fs.readdirSync(dir).sort(), ['locks', 'notes.txt']);
  });
});

describe('manifest summary and merge', () => {
  it('summarises shards, counts and buckets, and reports gaps and duplicates across workers', async () => {
    const dir = tempDir();
    const expected = [...keysOf(3, 'w0'), ...keysOf(3, 'w1'), ...keysOf(2, 'w2')];
    // Worker 3 opened the cache before worker 0 stored anything, as concurrent workers do.
    const lock3 = await acquireLock(dir, '3');
    const state3 = await CacheState.open(dir, '3');
    for (const [part, prefix] of [['0', 'w0'], ['1', 'w1']] as const) {
      const { lock } = await fillCache(dir, part, keysOf(3, prefix));
      await lock.release();
    }
    // Worker 2 never ran; worker 3 also stored one of worker 0's images (an overlapping partition).
    const sink3 = new ShardSink({ state: state3, partId: '3', format: 'parquet', meta: shardMeta('float16', false) });
    await sink3.write([makeRow(0, false, 'w0/1.jpg')]);
    await sink3.close();
    await lock3.release();
    const failedLog = await ErrorsLog.open(dir, '1');
    await failedLog.record({ key: 'w2/1.jpg', path: '/in/w2/1.jpg', stage: 'decode', reason: 'bad' });

    assert.deepEqual(findDuplicates(await readAllJournals(dir)), [
      { key: 'w0/1.jpg', shards: ['shards/part-0-00001.parquet', 'shards/part-3-00001.parquet'] },
    ]);
    const report = await mergeCache(dir, expected);
    assert.deepEqual(report.gaps, ['w2/0.jpg']);
    assert.deepEqual(report.duplicates.map((d) => d.key), ['w0/1.jpg']);
    assert.deepEqual(report.busyParts, []);
    const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
    assert.deepEqual(manifest, report.summary);
    assert.equal(manifest.fingerprint, FINGERPRINT);
    assert.deepEqual(manifest.counts, { shards: 5, rows: 7, bytes: manifest.shards.reduce((n: number, s: { bytes: number }) => n + s.bytes, 0), failed: 1, duplicates: 1 });
    const buckets = Object.entries(manifest.buckets as Record<string, number>);
    assert.equal(buckets.reduce((n, [, v]) => n + v, 0), 7);
    assert.deepEqual(
      fs.readFileSync(path.join(dir, 'errors.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).key),
      ['w2/1.jpg'],
    );
    const again = await writeManifest(dir);
    assert.deepEqual(again.shards, manifest.shards);
  });
});
