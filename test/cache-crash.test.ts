/**
 * SIGKILL while shards are being written, committed and rewritten: after each kill, reopening
 * counts only complete, journaled shards, deletes the rest, and a plain read of shards/*.parquet
 * agrees with the manifest; resuming until done stores every key exactly once.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { DuckDBInstance } from '@duckdb/node-api';
import { acquireLock } from '../src/cache/lock.js';
import { CacheState } from '../src/cache/manifest.js';
import { tsxEval } from './helpers/process.js';
import { tempDir } from './helpers/temp.js';

const KEYS = 60;

/** A worker that resumes: removes the rows of "changed" keys, then writes every key not yet stored. */
const WORKER = `
  const dir = process.argv[1];
  const m = (f) => import(${JSON.stringify(pathToFileURL(path.resolve('src/cache')).href)} + '/' + f);
  const { acquireLock } = await m('lock.ts');
  const { CacheState } = await m('manifest.ts');
  const { ShardSink } = await m('shard-sink.ts');
  const { removeKeys } = await m('remove-keys.ts');
  const { makeRow, shardMeta } = await import(${JSON.stringify(pathToFileURL(path.resolve('test/fixtures/feature-rows.ts')).href)});
  await acquireLock(dir, '0');
  const state = await CacheState.open(dir, '0');
  console.log('ready');
  // Keys 0-9 count as edited images on every run: their rows are rewritten out, then re-extracted.
  await removeKeys(state, '0', Array.from({ length: 10 }, (_, i) => 'k' + i));
  const sink = new ShardSink({ state, partId: '0', format: 'parquet', meta: shardMeta('float16', false), maxShardBytes: 1200 });
  for (let i = 0; i < ${KEYS}; i++) {
    if (state.keyToEntry.has('k' + i)) continue;
    await sink.write([makeRow(i, false, 'k' + i)]);
    console.log('row');
  }
  await sink.close();
  console.log('done');
`;

/** A point to kill at: after the worker printed `after` (`ready`, or `row` for the n-th row written) plus `ms`. */
interface KillPoint {
  rows: number;
  ms: number;
}

function runWorker(dir: string, kill?: KillPoint): Promise<'done' | 'killed'> {
  const child = spawn(process.execPath, tsxEval(WORKER, dir), { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  let armed = kill !== undefined;
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    const rows = out.split('row').length - 1;
    if (armed && out.includes('ready') && rows >= kill!.rows) {
      armed = false;
      setTimeout(() => child.kill('SIGKILL'), kill!.ms);
    }
  });
  return new Promise((resolve, reject) => {
    child.on('exit', (code, signal) => {
      if (signal === 'SIGKILL') resolve('killed');
      else if (code === 0 && out.includes('done')) resolve('done');
      else reject(new Error(`worker exited with ${code}`));
    });
  });
}

async function checkConsistent(dir: string): Promise<string[]> {
  const lock = await acquireLock(dir, '0');
  const state = await CacheState.open(dir, '0');
  await lock.release();
  const files = (fs.existsSync(path.join(dir, 'shards')) ? fs.readdirSync(path.join(dir, 'shards')) : []).map((n) => `shards/${n}`).sort();
  assert.deepEqual(files, [...state.shards.keys()].sort(), 'only journaled shards remain on disk');
  for (const [file, entry] of state.shards) {
    const sha = crypto.createHash('sha256').update(fs.readFileSync(path.join(dir, file))).digest('hex');
    assert.equal(sha, entry.sha256, `${file} is complete`);
  }
  const stored = [...state.keyToEntry.keys()].sort();
  if (files.length) {
    const db = await (await DuckDBInstance.create(':memory:')).connect();
    const rows = (await db.runAndReadAll(`SELECT key FROM read_parquet('${dir}/shards/*.parquet') ORDER BY key`)).getRowObjects();
    assert.deepEqual(rows.map((r) => String(r.key)), stored, 'a plain read sees each stored key once');
  }
  return stored;
}

it('survives SIGKILL at any point: nothing partial is counted, and resuming completes exactly once', async () => {
  const dir = tempDir();
  const outcomes: string[] = [];
  // Every run rewrites shards (removeKeys) and then writes at least 10 rows in small shards, so
  // these points fall in the rewrite, mid-shard, at shard commits and at journal appends.
  const points: KillPoint[] = [
    { rows: 0, ms: 0 }, { rows: 0, ms: 3 }, { rows: 1, ms: 0 }, { rows: 3, ms: 1 },
    { rows: 4, ms: 0 }, { rows: 6, ms: 2 }, { rows: 8, ms: 0 }, { rows: 9, ms: 1 },
    { rows: 10, ms: 0 }, { rows: 2, ms: 5 },
  ];
  for (const point of points) {
    outcomes.push(await runWorker(dir, point));
    await checkConsistent(dir);
  }
  assert.ok(outcomes.filter((o) => o === 'killed').length >= points.length / 2, `most runs were killed mid-way: ${outcomes}`);
  assert.equal(await runWorker(dir), 'done');
  const stored = await checkConsistent(dir);
  assert.deepEqual(stored, Array.from({ length: KEYS }, (_, i) => `k${i}`).sort());
  fs.rmSync(dir, { recursive: true, force: true });
});
