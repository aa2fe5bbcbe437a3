/**
 * Deterministic crashes: `dinofeat extract` is run with DINOFEAT_FAULT naming one crash point of
 * the commit protocol (src/core/fault-point.ts), so it SIGKILLs itself exactly there. Each test
 * proves the point was reached (the process died by SIGKILL and left the state that point
 * leaves: a shard without a footer, a shard the journal does not name, a torn line...), then
 * reruns without the hook and checks with a plain DuckDB read that every image is stored exactly
 * once and nothing is left over.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { parseAtomicTemp } from '../src/core/durable-fs.js';
import { FAULT_ENV, type FaultPointName } from '../src/core/fault-point.js';
import type { JournalRecord, ReplaceRecord } from '../src/cache/journal.js';
import { CacheState } from '../src/cache/manifest.js';
import { checkComplete, fileSha256, filesUnder } from './fixtures/cache-complete.js';
import { readErrorsFile, readShardRows, summaryCounts } from './fixtures/cache-reads.js';
import { writeStructured } from './fixtures/images.js';
import { workspaceBefore } from './fixtures/workspace.js';
import { runCli } from './helpers/cli.js';
import type { Completed } from './helpers/process.js';

const IMAGES = 16;
const ws = workspaceBefore(IMAGES);

/** 512x512 float32 rows are 256 KiB, so a 1 MiB shard holds 3 images: 6 shards per run. */
const extract = (out: string, from: string, env: NodeJS.ProcessEnv = {}) =>
  runCli(['extract', from, '--model', ws.model, '--out', out, '--bucket', '512x512', '--dtype', 'float32', '--shard-size', '1'], env);

let outs = 0;
const freshOut = () => path.join(ws.dir, `out-${outs++}`);

/** A run that must die at `point` (its `count`-th reach): it did, by SIGKILL. Returns how it ended. */
async function crashAt(out: string, from: string, point: FaultPointName, count = 1): Promise<Completed> {
  const r = await extract(out, from, { [FAULT_ENV]: `${point}:${count}` });
  assert.equal(r.signal, 'SIGKILL', `the run died at ${point}:${count} (code ${r.code}, signal ${r.signal})\n${r.stderr}`);
  return r;
}

/** The run after the crash, without the hook: completes (exit 1 when an image fails), and every image is stored exactly once. */
async function rerunExactlyOnce(out: string, from: string, keys: readonly string[], code = 0): Promise<Completed> {
  const r = await extract(out, from);
  assert.equal(r.code, code, r.stderr);
  await checkComplete(out, keys);
  return r;
}

const journalFile = (out: string) => path.join(out, 'manifest', 'part-0.jsonl');
const journalRecords = (out: string): JournalRecord[] =>
  fs.readFileSync(journalFile(out), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as JournalRecord);
/** Shard files on disk that the journals do not count. */
const unjournaledShards = async (out: string) => {
  const state = await CacheState.read(out);
  return filesUnder(out).filter((f) => /^shards\/[^/]+\.parquet$/.test(f) && !state.shards.has(f));
};

/**
 * `dinofeat merge` repairs the dead run's part (the next open of a rerun does the same, but a rerun
 * could hide a kept leftover by writing a shard of the same name over it): `leftovers` are named
 * as removed, and then only journaled shards are on disk and a plain read sees exactly their rows.
 */
async function mergeRemoves(out: string, leftovers: readonly string[]): Promise<void> {
  const r = await runCli(['merge', out]);
  assert.equal(r.code, 0, r.stderr);
  for (const file of leftovers) assert.ok(r.stdout.includes(file), `merge names ${file} as removed:\n${r.stdout}`);
  const state = await CacheState.read(out);
  const files = filesUnder(out);
  assert.deepEqual(files.filter((f) => f.startsWith('shards/')), [...state.shards.keys()].sort(), 'only journaled shards on disk after the repair');
  assert.deepEqual((await readShardRows(out)).map((row) => row.key), [...state.keyToEntry.keys()].sort(), 'a plain read sees exactly the journaled rows');
}

test('lock taken: the dead run\'s lock is taken over, the cache is made by the rerun', async () => {
  const out = freshOut();
  await crashAt(out, ws.images, 'lock-taken');
  // cache.json and the part lock, nothing else: the cache-wide lock was let go once cache.json held
  // this run's identity and the part lock was taken; no journal, shard or errors log yet.
  assert.deepEqual(filesUnder(out), ['cache.json', 'locks/part-0.lock']);
  const holder = JSON.parse(fs.readFileSync(path.join(out, 'locks', 'part-0.lock'), 'utf8')) as { pid: number };
  const rerun = await rerunExactlyOnce(out, ws.images, ws.keys);
  assert.match(rerun.stderr, new RegExp(`took over the lock of pid ${holder.pid} .*: pid ${holder.pid} is no longer running`));
});

test('shard half-written: a temp shard without its footer is never counted and is deleted', async () => {
  const out = freshOut();
  await crashAt(out, ws.images, 'shard-group-written', 2);
  const temps = filesUnder(out).filter((f) => f.endsWith('.parquet.tmp'));
  assert.equal(temps.length, 1, `one shard being written: ${filesUnder(out)}`);
  const tmp = fs.readFileSync(path.join(out, temps[0]!));
  assert.ok(tmp.length > 1000, `its rows are on disk (${tmp.length} bytes)`);
  assert.notEqual(tmp.subarray(-4).toString(), 'PAR1', 'its footer is not');
  assert.equal(journalRecords(out).length, 1, 'only the first shard is journaled');
  await mergeRemoves(out, temps);
  await rerunExactlyOnce(out, ws.images, ws.keys);
});

test('shard renamed, not journaled: a complete shard the journal does not name is deleted, its images extracted again', async () => {
  const out = freshOut();
  await crashAt(out, ws.images, 'shard-renamed', 2);
  const orphans = await unjournaledShards(out);
  assert.equal(orphans.length, 1, `one renamed shard without its journal line: ${filesUnder(out)}`);
  const plain = await readShardRows(out);
  assert.equal(plain.length, 6, 'a plain read sees both shards, the unjournaled one included');
  await mergeRemoves(out, orphans);
  const rerun = await rerunExactlyOnce(out, ws.images, ws.keys);
  assert.deepEqual(summaryCounts(rerun.stdout), { extracted: IMAGES - 3, skipped: 3, failed: 0, found: IMAGES }, 'the unjournaled rows count as not stored');
});

test('journal line torn: the half line is cut off, its shard deleted', async () => {
  const out = freshOut();
  await crashAt(out, ws.images, 'journal-line-torn', 2);
  const text = fs.readFileSync(journalFile(out), 'utf8');
  const lines = text.split('\n');
  assert.equal(lines.length, 2, 'one complete line and a torn one');
  assert.ok(lines[1]!.length > 100 && lines[1]!.startsWith('{"file":"shards/'), `the second line is half written: ${lines[1]!.slice(0, 40)}...`);
  assert.throws(() => JSON.parse(lines[1]!));
  const orphans = await unjournaledShards(out);
  assert.equal(orphans.length, 1, 'its shard is renamed into place, not counted');
  await mergeRemoves(out, orphans);
  await rerunExactlyOnce(out, ws.images, ws.keys);
  assert.ok(fs.readFileSync(journalFile(out), 'utf8').startsWith(`${lines[0]}\n{`), 'the rerun appended after the cut, on a fresh line');
});

test('manifest being rewritten: the dead writer\'s temp file is deleted, nothing is extracted again', async () => {
  const out = freshOut();
  const crashed = await crashAt(out, ws.images, 'manifest-temp-written');
  const temps = fs.readdirSync(out).filter((n) => parseAtomicTemp(n, path.join(out, 'manifest.json')));
  assert.equal(temps.length, 1, `manifest.json's temp file is there: ${fs.readdirSync(out)}`);
  assert.ok(fs.statSync(path.join(out, temps[0]!)).size > 0);
  assert.equal(fs.existsSync(path.join(out, 'manifest.json')), false, 'and was never renamed');
  assert.equal(crashed.stdout, '', 'the run died before its summary');
  const rerun = await rerunExactlyOnce(out, ws.images, ws.keys);
  assert.deepEqual(summaryCounts(rerun.stdout), { extracted: 0, skipped: IMAGES, failed: 0, found: IMAGES });
});

test('stale row being removed: replaced in the journal, old file not yet deleted; the rerun stores the edited images once, as they are now', async () => {
  const out = freshOut();
  const from = path.join(ws.dir, 'stale-images');
  fs.cpSync(ws.images, from, { recursive: true });
  assert.equal((await extract(out, from)).code, 0);
  // Edited in place, one per shard of the first run (3 rows each), to a size the stored rows show.
  const edited = [ws.keys[0]!, ws.keys[4]!, ws.keys[8]!];
  for (const key of edited) await writeStructured(path.join(from, key), 61, 40, 500 + ws.keys.indexOf(key));

  await crashAt(out, from, 'stale-row-replaced');
  const last = journalRecords(out).at(-1) as ReplaceRecord;
  assert.ok('replace' in last, 'the last journal line replaces a shard');
  assert.ok(fs.existsSync(path.join(out, last.replace)), `the replaced shard ${last.replace} is still on disk`);
  const plain = await readShardRows(out);
  assert.ok(plain.length > IMAGES, `a plain read sees the replaced shard's rows twice (${plain.length} rows)`);

  await rerunExactlyOnce(out, from, ws.keys);
  for (const row of await readShardRows(out)) {
    assert.equal(row.sha256, fileSha256(path.join(from, row.key)), `${row.key} holds the current file`);
    if (edited.includes(row.key)) assert.deepEqual([row.width, row.height], [61, 40], `${row.key}: the edited image`);
  }
});

test('errors log being appended: the torn line is dropped, the bad image is listed once', async () => {
  const out = freshOut();
  const from = path.join(ws.dir, 'with-bad-image');
  fs.cpSync(ws.images, from, { recursive: true });
  fs.writeFileSync(path.join(from, 'bad.jpg'), 'not an image');
  await crashAt(out, from, 'errors-line-torn');
  const log = fs.readFileSync(path.join(out, 'manifest', 'errors-0.jsonl'), 'utf8');
  assert.ok(log.length > 20 && !log.includes('\n'), `half a line is in the part's errors log: ${log}`);
  assert.ok(log.startsWith('{"key":"bad.jpg"'));

  const rerun = await rerunExactlyOnce(out, from, ws.keys, 1);
  assert.equal(summaryCounts(rerun.stdout).failed, 1);
  assert.deepEqual(readErrorsFile(out).map((e) => e.key), ['bad.jpg']);
  const partLog = fs.readFileSync(path.join(out, 'manifest', 'errors-0.jsonl'), 'utf8');
  assert.deepEqual(partLog.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { key: string }).key), ['bad.jpg'], 'the part\'s log is whole lines');
});

test('DINOFEAT_FAULT naming no crash point is refused', async () => {
  const r = await extract(freshOut(), ws.images, { [FAULT_ENV]: 'shard-renamd' });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /DINOFEAT_FAULT=shard-renamd: expected <point>\[:<count>\]/);
});
