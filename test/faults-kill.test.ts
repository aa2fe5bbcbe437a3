/**
 * Kill safety of `dinofeat extract`, as a user meets it: the CLI is SIGKILLed again and again on
 * one cache, at seeded random moments (some during start-up, most once the run holds the cache)
 * and at named crash points of the commit protocol (DINOFEAT_FAULT, src/core/fault-point.ts: lock
 * taken, a shard half-written, a shard renamed but not journaled, a journal line torn, a stale
 * row's old shard not yet deleted, manifest.json being rewritten), each asserted to have left its
 * state; images are edited between runs. After every kill nothing committed is lost, and a final
 * rerun has every image in the shards exactly once by a plain DuckDB read, with no temp or partial
 * file left or counted. The states a kill can leave are also built by hand, so the repair of each
 * is proven whatever the timing did. SIGINT / SIGTERM stop cleanly with exit 130 and say how to
 * resume.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HOST_TAG, parseAtomicTemp } from '../src/core/durable-fs.js';
import { FAULT_ENV } from '../src/core/fault-point.js';
import { CacheState } from '../src/cache/manifest.js';
import { seededRandom } from '../src/convert/test-model.js';
import { checkComplete, fileSha256 as sha, filesUnder } from './fixtures/cache-complete.js';
import { readShardRows, summaryCounts } from './fixtures/cache-reads.js';
import { writeManyImages, writeStructured } from './fixtures/images.js';
import { workspaceBefore } from './fixtures/workspace.js';
import { startCli } from './helpers/cli.js';
import type { Started } from './helpers/process.js';

const IMAGES = 500;
/** The tiny model and IMAGES images, made before the tests run. */
const ws = workspaceBefore(IMAGES);

/** 256x256 float32 rows are 64 KiB, so a 1 MiB shard holds 16 images: many shard commits per run. */
const startExtract = (out: string, from = ws.images, env: NodeJS.ProcessEnv = {}) =>
  startCli(['extract', from, '--model', ws.model, '--out', out, '--bucket', '256x256', '--dtype', 'float32', '--shard-size', '1', '--batch-size', '4'], env);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const LEFT = {
  shardTmp: 'a shard being written (.tmp)',
  unjournaled: 'a shard the journal does not count (renamed, not yet journaled; or replaced, not yet deleted)',
  tornJournal: 'a torn journal line',
  summaryTmp: 'a summary file being rewritten',
  lock: 'the dead run\'s lock',
} as const;

/** The summaries a run rewrites through a temp file (writeFileAtomic), relative to the cache. */
const SUMMARIES = ['manifest.json', 'errors.jsonl', 'manifest/errors-0.jsonl'];

/** What a kill left behind, in words (for the test log), before anything repairs it. */
function leftovers(out: string, state: CacheState): string[] {
  const found: string[] = [];
  const files = filesUnder(out);
  if (files.some((f) => /^shards\/.*\.tmp$/.test(f))) found.push(LEFT.shardTmp);
  if (files.some((f) => /^shards\/[^/]*\.parquet$/.test(f) && !state.shards.has(f))) found.push(LEFT.unjournaled);
  const journal = path.join(out, 'manifest', 'part-0.jsonl');
  if (fs.existsSync(journal) && !fs.readFileSync(journal, 'utf8').endsWith('\n') && fs.statSync(journal).size > 0) found.push(LEFT.tornJournal);
  const summaryTemp = (f: string) => SUMMARIES.some((s) => path.dirname(f) === path.dirname(s) && parseAtomicTemp(path.basename(f), s));
  if (files.some(summaryTemp)) found.push(LEFT.summaryTmp);
  if (files.includes('locks/part-0.lock')) found.push(LEFT.lock);
  return found;
}

/**
 * What must hold after any kill: every journaled shard is on disk, complete (its sha256), and no
 * key is journaled twice. Returns the journaled keys.
 */
async function checkAfterKill(out: string): Promise<{ stored: Set<string>; left: string[] }> {
  const state = await CacheState.read(out);
  assert.deepEqual(state.missing, [], 'every journaled shard exists');
  assert.deepEqual(state.duplicates, [], 'no key journaled twice');
  for (const [file, entry] of state.shards) assert.equal(sha(path.join(out, file)), entry.sha256, `${file} is complete`);
  return { stored: new Set(state.keyToEntry.keys()), left: leftovers(out, state) };
}

function lockHolder(out: string): number | undefined {
  try {
    return (JSON.parse(fs.readFileSync(path.join(out, 'locks', 'part-0.lock'), 'utf8')) as { pid: number }).pid;
  } catch {
    return undefined; // none, or being written
  }
}

/**
 * When to kill: `afterMs` after the start, or after the run took the cache's lock; or at a crash
 * point (`<point>[:<count>]`, the run kills itself), where `leaves` is the state it must leave.
 */
type Trigger = { afterMs: number; from: 'start' | 'lock' } | { fault: string; leaves: string };

interface Kill {
  outcome: 'killed' | 'finished';
  /** Killed while it held the cache (its lock is left naming it): a kill that can damage the cache. */
  inCache: boolean;
  /** What the run said (why it ended, when not killed). */
  stderr: string;
}

/** Starts a run and SIGKILLs it at the trigger (or lets it kill itself there). */
async function runAndKill(out: string, from: string, trigger: Trigger): Promise<Kill> {
  const run: Started = startExtract(out, from, 'fault' in trigger ? { [FAULT_ENV]: trigger.fault } : {});
  if ('afterMs' in trigger) {
    let ended = false;
    void run.done.then(() => (ended = true));
    if (trigger.from === 'lock') while (!ended && lockHolder(out) !== run.child.pid) await sleep(1);
    await sleep(trigger.afterMs);
    if (!ended) run.child.kill('SIGKILL');
  }
  const result = await run.done;
  const killed = result.signal === 'SIGKILL';
  return { outcome: killed ? 'killed' : 'finished', inCache: killed && lockHolder(out) === run.child.pid, stderr: result.stderr };
}

test('SIGKILL at 15 moments, then a rerun: every image exactly once, no temp or partial file counted', async (t: TestContext) => {
  const out = path.join(ws.dir, 'killed');
  // Its own copy of the images: it adds more whenever the killed runs have nearly caught up, so
  // that every kill lands in real work however fast this machine is.
  const from = path.join(ws.dir, 'kill-images');
  fs.cpSync(ws.images, from, { recursive: true });
  const all = [...ws.keys];
  const random = seededRandom(20_260_101);
  const atRandom = (n: number, after: 'start' | 'lock', spanMs: number) => Array.from({ length: n }, () => ({ afterMs: Math.round(random() * spanMs), from: after }));
  const EDIT_AT = 9;
  const triggers: Trigger[] = [
    // Seeded random moments during start-up (model loading, walking): they may land before the cache exists.
    ...atRandom(2, 'start', 600),
    { fault: 'lock-taken', leaves: LEFT.lock }, // cache not yet opened
    { fault: 'shard-group-written:2', leaves: LEFT.shardTmp }, // a shard's rows on disk, no footer
    ...atRandom(3, 'lock', 400), // seeded random moments in the writing
    { fault: 'shard-renamed:3', leaves: LEFT.unjournaled },
    { fault: 'journal-line-torn:2', leaves: LEFT.tornJournal },
    // (EDIT_AT: images edited) the next run removes their stale rows first, shard by shard.
    { fault: 'stale-row-replaced', leaves: LEFT.unjournaled }, // old shard replaced in the journal, not deleted
    { fault: 'journal-line-torn', leaves: LEFT.tornJournal }, // most likely the next replace record
    ...atRandom(3, 'lock', 400),
    { fault: 'manifest-temp-written', leaves: LEFT.summaryTmp }, // manifest.json being rebuilt at the end of the run
  ];
  const kills: Kill[] = [];
  let storedBefore = new Set<string>();
  let edited: string[] = [];
  for (const [k, trigger] of triggers.entries()) {
    if (k === EDIT_AT) {
      // Some stored images change under the cache: later runs must rewrite their shards (and are killed doing so).
      // About five of them, evenly spread, however many the killed runs stored by now.
      const step = Math.max(1, Math.floor(storedBefore.size / 5));
      edited = [...storedBefore].sort().filter((_, i) => i % step === 0);
      assert.ok(edited.length >= 3, `stored images to edit: ${edited.length}`);
      for (const key of edited) await writeStructured(path.join(from, key), 50, 48, 1000 + all.indexOf(key));
    }
    if (all.length - storedBefore.size < 100) all.push(...(await writeManyImages(from, 150, all.length)));
    const kill = await runAndKill(out, from, trigger);
    kills.push(kill);
    if (!kill.inCache) {
      t.diagnostic(`kill ${k + 1} (${JSON.stringify(trigger)}): ${kill.outcome} before the run held the cache`);
      assert.ok(!('fault' in trigger), `the run reached ${'fault' in trigger ? trigger.fault : ''} and died there (${kill.outcome}):\n${kill.stderr}`);
      if (!fs.existsSync(out)) continue;
    }
    const { stored, left } = await checkAfterKill(out);
    for (const key of storedBefore) {
      if (!edited.includes(key)) assert.ok(stored.has(key), `${key}: a committed row is never lost by a later kill`);
    }
    storedBefore = stored;
    t.diagnostic(`kill ${k + 1} (${JSON.stringify(trigger)}): ${kill.outcome}, ${stored.size}/${all.length} stored, left: ${left.join(', ') || 'nothing'}`);
    if ('fault' in trigger) assert.ok(left.includes(trigger.leaves), `${trigger.fault} left ${trigger.leaves} (left: ${left.join(', ')})`);
  }
  const inCache = kills.filter((kill) => kill.inCache).length;
  // All but the 2 start-up kills: the 7 crash points, and the 6 random moments after the lock (each run has
  // hundreds of images left, so none ends within 400 ms). Start-up kills count only if they happen to land late.
  assert.ok(inCache >= 13, `13 runs were killed while holding the cache (${inCache}: ${kills.map((kill) => kill.outcome)})`);

  const final = await startExtract(out, from).done;
  assert.equal(final.code, 0, final.stderr);
  const counts = summaryCounts(final.stdout);
  assert.equal(counts.found, all.length);
  assert.equal(counts.extracted + counts.skipped, all.length);
  await checkComplete(out, all);
  const shas = await CacheState.read(out);
  for (const key of all) assert.equal(shas.keyToEntry.get(key)?.sha256, sha(path.join(from, key)), `${key} holds the current file`);
});

test('the states a kill can leave, built by hand: torn journal line, unjournaled shard, temp files, dead lock', async () => {
  const out = path.join(ws.dir, 'crafted');
  const first = await startExtract(out).done;
  assert.equal(first.code, 0, first.stderr);
  const journal = path.join(out, 'manifest', 'part-0.jsonl');
  const lines = fs.readFileSync(journal, 'utf8').split('\n').filter(Boolean);
  assert.ok(lines.length >= 3);
  // Killed while appending the last shard's journal line: half the line is on disk, the shard is renamed into place.
  const last = JSON.parse(lines.at(-1)!) as { file: string; keys: Array<[string, string]> };
  fs.writeFileSync(journal, `${lines.slice(0, -1).join('\n')}\n${lines.at(-1)!.slice(0, 150)}`);
  // Killed mid-way through the next shard and through rebuilding the summaries; the lock of the dead run stays.
  fs.writeFileSync(path.join(out, 'shards', 'part-0-00099.parquet.tmp'), Buffer.alloc(5000, 7));
  const deadPid = 2 ** 22 + 7; // above the default pid_max: never a live process
  fs.writeFileSync(path.join(out, `manifest.json.${HOST_TAG}-${deadPid}-0.tmp`), '{"half":');
  fs.writeFileSync(path.join(out, 'manifest', `errors-0.jsonl.${HOST_TAG}-${deadPid}-1.tmp`), '');
  // A summary being written right now by a live process (this one) must be left alone.
  const live = path.join(out, `errors.jsonl.${HOST_TAG}-${process.pid}-0.tmp`);
  fs.writeFileSync(live, '');
  fs.writeFileSync(path.join(out, 'locks', 'part-0.lock'), JSON.stringify({ pid: deadPid, hostname: os.hostname(), startedAt: '2026-01-01T00:00:00.000Z' }));

  // A plain read now would see the unjournaled shard; the cache does not count it.
  const state = await CacheState.read(out);
  assert.equal(state.shards.has(last.file), false, 'a shard without its complete journal line is not counted');
  assert.equal(state.keyToEntry.size, IMAGES - last.keys.length);

  const rerun = await startExtract(out).done;
  assert.ok(fs.existsSync(live), 'a live writer\'s temp file is kept');
  fs.rmSync(live);
  assert.equal(rerun.code, 0, rerun.stderr);
  assert.match(rerun.stderr, /took over the lock of pid 4194311 \(started 2026-01-01T00:00:00\.000Z\): pid 4194311 is no longer running/);
  assert.deepEqual(summaryCounts(rerun.stdout), { extracted: last.keys.length, skipped: IMAGES - last.keys.length, failed: 0, found: IMAGES });
  await checkComplete(out, ws.keys);
  assert.ok(fs.readFileSync(journal, 'utf8').endsWith('\n'), 'the torn line was cut off');
  assert.deepEqual(filesUnder(out).filter((f) => f.startsWith('locks/')), [], 'the lock was released');
});

/** Waits until the run has committed at least one shard (so its signal handlers are installed and it is mid-work). */
async function untilCommitted(out: string, run: Started): Promise<void> {
  const journal = path.join(out, 'manifest', 'part-0.jsonl');
  const start = fs.existsSync(journal) ? fs.statSync(journal).size : 0;
  let ended = false;
  void run.done.then(() => (ended = true));
  while (!ended && !(fs.existsSync(journal) && fs.statSync(journal).size > start)) await sleep(2);
  assert.ok(!ended, 'the run was still going');
}

test('SIGTERM and SIGINT: the images in flight are finished, the shard closed, exit 130 with how to resume; a rerun completes', async () => {
  const out = path.join(ws.dir, 'signalled');
  let stored = 0;
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    const run = startExtract(out);
    await untilCommitted(out, run);
    run.child.kill(signal);
    const r = await run.done;
    assert.equal(r.code, 130, `${signal}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`${signal}: finishing the images in flight and closing the shard`));
    assert.match(r.stderr, /interrupted; finished shards are kept\. Run the same command again to resume\./);
    const counts = summaryCounts(r.stdout);
    // Closed cleanly: no temp file, nothing on disk that is not journaled, each stored key once.
    const files = filesUnder(out);
    assert.deepEqual(files.filter((f) => f.endsWith('.tmp')), [], `${signal}: no temp file`);
    const state = await CacheState.read(out);
    assert.deepEqual(files.filter((f) => f.startsWith('shards/')), [...state.shards.keys()].sort(), `${signal}: every shard on disk is journaled`);
    const rows = await readShardRows(out);
    assert.equal(new Set(rows.map((row) => row.key)).size, rows.length, 'each key once');
    assert.equal(rows.length, stored + counts.extracted, `${signal}: what the summary says was extracted is stored`);
    assert.ok(rows.length < IMAGES, `${signal}: stopped early`);
    stored = rows.length;
  }

  // A second signal ends the process at once, by that signal (shells show 130); the journal keeps the cache consistent.
  const hurried = startExtract(out);
  await untilCommitted(out, hurried);
  hurried.child.kill('SIGINT');
  await sleep(5);
  hurried.child.kill('SIGINT');
  const h = await hurried.done;
  // (Had the first one already finished its clean stop, the exit code is 130.)
  assert.ok(h.signal === 'SIGINT' || h.code === 130, `ended by SIGINT, not by an abort: signal ${h.signal}, code ${h.code}\n${h.stderr}`);
  assert.doesNotMatch(h.stderr, /terminate called|Napi::Error/);
  await checkAfterKill(out);

  const rerun = await startExtract(out).done;
  assert.equal(rerun.code, 0, rerun.stderr);
  assert.ok(summaryCounts(rerun.stdout).skipped >= stored);
  await checkComplete(out, ws.keys);
});
