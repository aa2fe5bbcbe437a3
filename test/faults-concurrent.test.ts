/**
 * Two `dinofeat extract` runs on one --out: the second refuses with one line naming the running
 * one's pid (the lock in src/cache/lock.ts) and changes nothing; two started at the same instant
 * end with one run and one refusal; a lock left by a SIGKILLed run, or naming a pid that now
 * belongs to another process, is taken over with a note.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readShardRows } from './fixtures/cache-reads.js';
import { workspaceBefore } from './fixtures/workspace.js';
import { runCli, startCli } from './helpers/cli.js';
import { signalRun } from './helpers/run-processes.js';
import type { Started } from './helpers/process.js';

const IMAGES = 300;
/** The tiny model and IMAGES images, made before the tests run. */
const ws = workspaceBefore(IMAGES);

const args = (out: string) => ['extract', ws.images, '--model', ws.model, '--out', out, '--bucket', '256x256', '--dtype', 'float32', '--shard-size', '1'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const lockFile = (out: string) => path.join(out, 'locks', 'part-0.lock');

function lockHolder(out: string): { pid: number } | undefined {
  try {
    return JSON.parse(fs.readFileSync(lockFile(out), 'utf8')) as { pid: number };
  } catch {
    return undefined;
  }
}

/**
 * Waits until `run` holds the lock and has committed a shard, then stops it (SIGSTOP): a run
 * mid-way that stays mid-way however fast this machine is.
 */
async function pauseMidWay(out: string, run: Started): Promise<void> {
  let ended = false;
  void run.done.then(() => (ended = true));
  const journal = path.join(out, 'manifest', 'part-0.jsonl');
  while (!ended && !(lockHolder(out)?.pid === run.child.pid && fs.existsSync(journal))) await sleep(2);
  assert.ok(!ended, 'the first run is still going');
  signalRun(lockFile(out), run, 'SIGSTOP');
}

test('a second run on a busy --out refuses with the pid; a SIGKILLed holder\'s lock is taken over', async () => {
  const out = path.join(ws.dir, 'busy');
  const first = startCli(args(out));
  await pauseMidWay(out, first);

  const second = await runCli(args(out));
  assert.equal(second.code, 2);
  const lines = second.stderr.split('\n').filter(Boolean);
  assert.equal(lines.length, 1, second.stderr);
  assert.match(lines[0]!, new RegExp(`^dinofeat: cache ${out} is in use by pid ${first.child.pid} on ${os.hostname()} \\(started [^)]+\\); wait, or remove ${lockFile(out)} if that process is gone$`));
  assert.equal(second.stdout, '');
  assert.equal(lockHolder(out)?.pid, first.child.pid, 'the refusal left the lock alone');

  signalRun(lockFile(out), first, 'SIGKILL');
  assert.equal((await first.done).signal, 'SIGKILL');
  assert.equal(lockHolder(out)?.pid, first.child.pid, 'a killed run leaves its lock behind');

  const third = await runCli(args(out));
  assert.equal(third.code, 0, third.stderr);
  assert.match(third.stderr, new RegExp(`^dinofeat: took over the lock of pid ${first.child.pid} \\(started [^)]+\\): pid ${first.child.pid} is no longer running\\n$`));
  assert.deepEqual((await readShardRows(out)).map((r) => r.key), ws.keys, 'every image once');
  assert.equal(fs.existsSync(lockFile(out)), false, 'released at the end');

  // A lock naming a live pid that started after the lock was taken: the pid was reused, the holder is gone.
  const reused = { pid: process.pid, hostname: os.hostname(), startedAt: '2026-01-01T00:00:00.000Z', procStart: '1' };
  fs.writeFileSync(lockFile(out), JSON.stringify(reused));
  const fourth = await runCli(args(out));
  assert.equal(fourth.code, 0, fourth.stderr);
  if (fs.existsSync(`/proc/${process.pid}/stat`)) {
    assert.match(fourth.stderr, new RegExp(`took over the lock of pid ${process.pid} \\(started 2026-01-01T00:00:00\\.000Z\\): pid ${process.pid} now belongs to another process`));
  }
});

test('two runs started at the same instant: one extracts, the other refuses naming it (or, come later, finds all cached)', async () => {
  const out = path.join(ws.dir, 'race');
  const runs = [startCli(args(out)), startCli(args(out))];
  const results = await Promise.all(runs.map((r) => r.done));
  const winners = results.filter((r) => r.code === 0);
  assert.ok(winners.length >= 1, results.map((r) => r.stderr).join('\n'));
  for (const [k, r] of results.entries()) {
    const other = runs[1 - k]!.child.pid;
    if (r.code === 2) assert.match(r.stderr, new RegExp(`^dinofeat: cache .* is in use by pid ${other} [^\n]*\n$`));
    else assert.equal(r.code, 0, r.stderr);
  }
  // Had the second one come after the first finished, it would have found everything cached.
  if (winners.length === 2) assert.ok(winners.some((r) => / 0 extracted, 300 already cached/.test(r.stdout)));
  assert.deepEqual((await readShardRows(out)).map((r) => r.key), ws.keys, 'every image once');
});
