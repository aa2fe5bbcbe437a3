/**
 * --overwrite on a cache shared by workers (src/cache/open.ts): the clear is cache-wide and happens
 * once per new identity. Three workers started together after a model change (held at the cache-wide
 * lock, then let go at once) end with every image exactly once, all from the new model, and no part of the earlier 4-worker run left; a worker
 * that comes later joins the new generation instead of clearing it; a run of the old settings
 * that is still writing is never cleared under, the clear is refused naming it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { TINY_TEST_MODEL } from '../src/convert/test-model.js';
import { readShardRows, snapshot, summaryCounts } from './fixtures/cache-reads.js';
import { makeTinyModel } from './fixtures/tiny-model.js';
import { workspaceBefore } from './fixtures/workspace.js';
import { runCli, startCli } from './helpers/cli.js';
import { signalRun } from './helpers/run-processes.js';

const IMAGES = 120;
/** Model A (the tiny model) and IMAGES images, made before the tests run. */
const ws = workspaceBefore(IMAGES);

const args = (model: string, out: string) => ['extract', ws.images, '--model', model, '--out', out, '--bucket', '256x256', '--dtype', 'float32', '--shard-size', '1'];
const workers = (n: number, k: number) => ['--num-workers', String(n), '--worker-index', String(k)];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const CLEARED = /^dinofeat: cleared .*: generation ([0-9a-f]+) begins$/m;

function cacheJson(out: string): { fingerprint: string; generation: string } {
  return JSON.parse(fs.readFileSync(path.join(out, 'cache.json'), 'utf8')) as { fingerprint: string; generation: string };
}

/** key → stored CLS bytes and, per shard file, the fingerprint its metadata records: a plain DuckDB read. */
async function readCls(out: string): Promise<{ cls: Map<string, string>; fingerprints: Map<string, string> }> {
  const db = await (await DuckDBInstance.create(':memory:')).connect();
  const glob = `${out}/shards/*.parquet`;
  const rows = (await db.runAndReadAll(`SELECT key, CAST(cls AS VARCHAR) AS cls FROM read_parquet('${glob}')`)).getRowObjects();
  const meta = (
    await db.runAndReadAll(`SELECT file_name, CAST(value AS VARCHAR) AS v FROM parquet_kv_metadata('${glob}') WHERE CAST(key AS VARCHAR) = 'dinofeat.fingerprint'`)
  ).getRowObjects();
  return {
    cls: new Map(rows.map((r) => [String(r.key), String(r.cls)])),
    fingerprints: new Map(meta.map((r) => [path.basename(String(r.file_name)), String(r.v)])),
  };
}

test('three workers started together with --overwrite after a model change: one clear, every image once, all from the new model', async () => {
  const modelB = (await makeTinyModel(ws.dir, TINY_TEST_MODEL.seed + 1)).onnx;
  const reference = path.join(ws.dir, 'reference-b');
  const referenceStart = Date.now();
  assert.equal((await runCli([...args(modelB, reference), '--quiet'])).code, 0);
  // A whole run, extraction included: longer than a worker takes to reach the cache's open.
  const runMs = Date.now() - referenceStart;
  const fromB = (await readCls(reference)).cls;

  // The cache as an earlier run left it: model A, four workers.
  const out = path.join(ws.dir, 'shared');
  const earlier = await Promise.all([0, 1, 2, 3].map((k) => runCli([...args(ws.model, out), ...workers(4, k), '--quiet'])));
  for (const r of earlier) assert.equal(r.code, 0, r.stderr);
  const fromA = (await readCls(out)).cls;
  const generationA = cacheJson(out).generation;
  assert.ok(fs.readdirSync(path.join(out, 'shards')).some((f) => f.startsWith('part-3_of_4-')));

  // Spawned in one tick while a live process (this one, as if clearing a large cache) holds the
  // cache-wide lock: every worker reaches the open and waits, untouched cache; on release all of
  // them race for the lock at once.
  const cacheLock = path.join(out, 'locks', 'cache.lock');
  fs.writeFileSync(cacheLock, JSON.stringify({ pid: process.pid, hostname: os.hostname(), startedAt: new Date().toISOString() }));
  const before = snapshot(out);
  const runs = [0, 1, 2].map((k) => startCli([...args(modelB, out), ...workers(3, k), '--overwrite']));
  let exited = 0;
  for (const r of runs) void r.done.then(() => exited++);
  await sleep(Math.max(2000, 2 * runMs));
  assert.equal(exited, 0, 'the workers wait for the cache-wide lock');
  assert.deepEqual(snapshot(out), before, 'nobody touched the cache while another process held its lock');
  fs.rmSync(cacheLock);
  const results = await Promise.all(runs.map((r) => r.done));
  for (const r of results) assert.equal(r.code, 0, r.stderr);
  const config = cacheJson(out);
  const { cls, fingerprints } = await readCls(out);
  assert.deepEqual((await readShardRows(out)).map((r) => r.key), ws.keys, 'every image exactly once');
  for (const [key, value] of cls) {
    assert.equal(value, fromB.get(key), `${key} holds model B's features`);
    assert.notEqual(value, fromA.get(key), `${key} no longer holds model A's`);
  }
  assert.deepEqual(new Set(fingerprints.values()), new Set([config.fingerprint]), 'every shard written with the new identity');
  const shardParts = new Set(fs.readdirSync(path.join(out, 'shards')).map((f) => f.split('-')[1]));
  assert.deepEqual([...shardParts].sort(), ['0_of_3', '1_of_3', '2_of_3'], 'no shard of the 4-worker run is left');
  assert.deepEqual(
    fs.readdirSync(path.join(out, 'manifest')).sort(),
    ['0_of_3', '1_of_3', '2_of_3'].flatMap((p) => [`inputs-${p}.json`, `part-${p}.jsonl`]).sort(),
    'only the new parts journal, and every worker\'s run record survived the others\' opens',
  );
  const merged = await runCli(['merge', out, '--images', ws.images]);
  assert.equal(merged.code, 0, merged.stdout + merged.stderr);
  assert.match(merged.stdout, /gaps: 0 images/);
  assert.doesNotMatch(merged.stdout, /overlaps|still running|removed leftovers/);
  assert.equal(results.reduce((n, r) => n + summaryCounts(r.stdout).extracted, 0), IMAGES, 'each image extracted once, by one worker');
  const clears = results.map((r) => CLEARED.exec(r.stderr)?.[1]).filter((g) => g !== undefined);
  assert.equal(clears.length, 1, `exactly one worker clears:\n${results.map((r) => r.stderr).join('\n')}`);
  assert.equal(config.generation, clears[0], 'nobody rewrote cache.json after the clear');
  assert.notEqual(config.generation, generationA);

  // A worker that comes later with the same settings joins this generation: nothing cleared, nothing redone.
  const later = await runCli([...args(modelB, out), ...workers(3, 1), '--overwrite']);
  assert.equal(later.code, 0, later.stderr);
  assert.doesNotMatch(later.stderr, CLEARED);
  assert.equal(summaryCounts(later.stdout).extracted, 0);
  assert.equal(cacheJson(out).generation, config.generation);
});

test('--overwrite never clears under a run of the old settings that is still writing: it refuses naming it', async (t) => {
  const modelB = (await makeTinyModel(ws.dir, TINY_TEST_MODEL.seed + 1)).onnx;
  const out = path.join(ws.dir, 'live-old');
  const old = startCli([...args(ws.model, out), ...workers(2, 1), '--quiet']);
  const oldLock = path.join(out, 'locks', 'part-1_of_2.lock');
  // A stopped run left behind would keep the test process waiting.
  t.after(() => {
    if (old.child.exitCode !== null || old.child.signalCode !== null) return;
    try {
      signalRun(oldLock, old, 'SIGKILL');
    } catch {
      old.child.kill('SIGKILL'); // it had no lock yet
    }
  });
  let ended = false;
  void old.done.then(() => (ended = true));
  // Stopped once it has committed a shard: a run mid-way that stays mid-way however fast this machine is.
  while (!ended && !fs.existsSync(path.join(out, 'manifest', 'part-1_of_2.jsonl'))) await sleep(2);
  assert.ok(!ended, 'the old run is still going');
  signalRun(oldLock, old, 'SIGSTOP');
  const before = snapshot(out);

  const refused = await runCli([...args(modelB, out), '--overwrite']);
  assert.equal(refused.code, 2);
  const lines = refused.stderr.split('\n').filter(Boolean);
  assert.equal(lines.length, 1, refused.stderr);
  assert.match(lines[0]!, new RegExp(`^dinofeat: cannot clear ${out} for --overwrite while runs with the old settings write to it: part 1_of_2 \\(pid ${old.child.pid} on [^,]+, started [^)]+\\); wait for them to end, or remove ${path.join(out, 'locks', 'part-1_of_2.lock')} if they are gone$`));
  const after = snapshot(out);
  assert.deepEqual(after, before, 'nothing of the live run was touched');

  // Once it is gone (killed), its lock is stale and the clear goes ahead.
  signalRun(oldLock, old, 'SIGKILL');
  assert.equal((await old.done).signal, 'SIGKILL');
  const cleared = await runCli([...args(modelB, out), '--overwrite']);
  assert.equal(cleared.code, 0, cleared.stderr);
  assert.match(cleared.stderr, CLEARED);
  assert.deepEqual((await readShardRows(out)).map((r) => r.key), ws.keys, 'every image exactly once');
  assert.deepEqual([...new Set(fs.readdirSync(path.join(out, 'shards')).map((f) => f.split('-')[1]))], ['0']);
});
