/**
 * Kill safety of `dinofeat extract`, as a user meets it: the CLI is SIGKILLed at many moments
 * (seeded random delays, and moments picked by watching the cache directory: a shard being
 * written, a shard just renamed into place, the journal just appended to, manifest.json being
 * rebuilt), rerun, and in the end every image is in the shards exactly once by a plain DuckDB read,
 * with no temp or partial file left or counted. The states a kill can leave are also built by
 * hand, so the repair of each is proven whatever the timing did. SIGINT / SIGTERM stop cleanly
 * with exit 130 and say how to resume.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HOST_TAG } from '../src/core/durable-fs.js';
import { CacheState } from '../src/cache/manifest.js';
import { seededRandom } from '../src/convert/test-model.js';
import { readShardRows, summaryCounts } from './fixtures/cache-reads.js';
import { writeManyImages, writeStructured } from './fixtures/images.js';
import { workspaceBefore } from './fixtures/workspace.js';
import { startCli } from './helpers/cli.js';
import type { Started } from './helpers/process.js';

const IMAGES = 500;
/** The tiny model and IMAGES images, made before the tests run. */
const ws = workspaceBefore(IMAGES);

/** 256x256 float32 rows are 64 KiB, so a 1 MiB shard holds 16 images: many shard commits per run. */
const startExtract = (out: string, from = ws.images) =>
  startCli(['extract', from, '--model', ws.model, '--out', out, '--bucket', '256x256', '--dtype', 'float32', '--shard-size', '1', '--batch-size', '4']);

const sha = (file: string) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function filesUnder(root: string): string[] {
  if (!fs.existsSync(root)) return [];
  return (fs.readdirSync(root, { recursive: true }) as string[]).filter((f) => fs.statSync(path.join(root, f)).isFile()).sort();
}

/** What a kill left behind, in words (for the test log), before anything repairs it. */
function leftovers(out: string, state: CacheState): string[] {
  const found: string[] = [];
  const files = filesUnder(out);
  if (files.some((f) => /^shards\/.*\.tmp$/.test(f))) found.push('a shard being written (.tmp)');
  if (files.some((f) => /^shards\/[^/]*\.parquet$/.test(f) && !state.shards.has(f))) found.push('a shard the journal does not count (renamed, not yet journaled; or replaced, not yet deleted)');
  const journal = path.join(out, 'manifest', 'part-0.jsonl');
  if (fs.existsSync(journal) && !fs.readFileSync(journal, 'utf8').endsWith('\n') && fs.statSync(journal).size > 0) found.push('a torn journal line');
  if (files.some((f) => /^(manifest\.json|errors\.jsonl|manifest\/errors-0\.jsonl)\.\d+-\d+\.tmp$/.test(f))) found.push('a summary file being rewritten');
  if (files.includes('locks/part-0.lock')) found.push('the dead run\'s lock');
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

/** After a run that completed: everything once, only journaled shards on disk, no temp file anywhere. */
async function checkComplete(out: string, expected: readonly string[]): Promise<void> {
  const files = filesUnder(out);
  assert.deepEqual(files.filter((f) => f.endsWith('.tmp')), [], 'no temp file left');
  const state = await CacheState.read(out);
  assert.deepEqual(files.filter((f) => f.startsWith('shards/')), [...state.shards.keys()].sort(), 'only journaled shards on disk');
  const rows = await readShardRows(out);
  assert.deepEqual(rows.map((r) => r.key), [...expected].sort(), 'a plain read of shards/*.parquet has every image exactly once');
  const manifest = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8')) as { counts: { rows: number }; shards: Array<{ file: string; sha256: string }> };
  assert.equal(manifest.counts.rows, expected.length);
  assert.deepEqual(manifest.shards.map((s) => s.file).sort(), files.filter((f) => f.startsWith('shards/')));
  for (const s of manifest.shards) assert.equal(sha(path.join(out, s.file)), s.sha256, s.file);
}

function lockHolder(out: string): number | undefined {
  try {
    return (JSON.parse(fs.readFileSync(path.join(out, 'locks', 'part-0.lock'), 'utf8')) as { pid: number }).pid;
  } catch {
    return undefined; // none, or being written
  }
}

type Trigger = { afterMs: number } | { when: 'lock' | 'shard-tmp' | 'shard-renamed' | 'journal-appended' | 'summary-tmp'; thenMs?: number };

/**
 * Starts a run and SIGKILLs it at the trigger: a delay after the start, or the moment the cache
 * directory shows the named state (polled every millisecond). Resolves how it ended.
 */
async function runAndKill(out: string, from: string, trigger: Trigger): Promise<'killed' | 'finished'> {
  const startedAt = Date.now();
  const run: Started = startExtract(out, from);
  let ended = false;
  void run.done.then(() => (ended = true));
  if ('afterMs' in trigger) {
    await sleep(trigger.afterMs);
  } else {
    const journal = path.join(out, 'manifest', 'part-0.jsonl');
    const journalSize = () => (fs.existsSync(journal) ? fs.statSync(journal).size : 0);
    const startSize = journalSize();
    // Files this run wrote: leftovers of the killed runs before it (same names, even) are older.
    const newFiles = (sub: string, suffix: string) => {
      const at = path.join(out, sub);
      const names = fs.existsSync(at) ? fs.readdirSync(at) : [];
      return names.some((n) => n.endsWith(suffix) && (fs.statSync(path.join(at, n), { throwIfNoEntry: false })?.mtimeMs ?? 0) >= startedAt);
    };
    const seen = (): boolean => {
      switch (trigger.when) {
        case 'lock': return lockHolder(out) === run.child.pid && journalSize() === startSize;
        case 'shard-tmp': return newFiles('shards', '.tmp');
        case 'shard-renamed': return newFiles('shards', '.parquet');
        case 'journal-appended': return journalSize() > startSize;
        case 'summary-tmp': return newFiles('.', '.tmp');
      }
    };
    while (!ended && !seen()) await sleep(1);
    if (trigger.thenMs) await sleep(trigger.thenMs);
  }
  if (ended) return 'finished';
  run.child.kill('SIGKILL');
  const result = await run.done;
  return result.signal === 'SIGKILL' ? 'killed' : 'finished';
}

test('SIGKILL at 14 moments, then a rerun: every image exactly once, no temp or partial file counted', async (t: TestContext) => {
  const out = path.join(ws.dir, 'killed');
  // Its own copy of the images: it adds more whenever the killed runs have nearly caught up, so
  // that every kill lands in real work however fast this machine is.
  const from = path.join(ws.dir, 'kill-images');
  fs.cpSync(ws.images, from, { recursive: true });
  const all = [...ws.keys];
  const random = seededRandom(20_260_101);
  const triggers: Trigger[] = [
    // Seeded random moments from start-up (model loading, walking) to well into the writing.
    ...Array.from({ length: 6 }, () => ({ afterMs: Math.round(150 + random() * 600) })),
    { when: 'lock' }, // lock taken, cache not yet opened
    { when: 'shard-tmp' }, // a shard just opened
    { when: 'shard-tmp', thenMs: Math.round(random() * 30) }, // a shard part-written
    { when: 'shard-renamed' }, // renamed into place: the journal line is being appended
    { when: 'journal-appended' }, // just committed
    { when: 'shard-renamed' },
    { when: 'journal-appended', thenMs: Math.round(random() * 20) },
    { when: 'summary-tmp' }, // manifest.json / errors.jsonl being rebuilt at the end of the run
  ];
  const outcomes: string[] = [];
  const seenStates = new Set<string>();
  let storedBefore = new Set<string>();
  let edited: string[] = [];
  for (const [k, trigger] of triggers.entries()) {
    if (k === 8) {
      // Some images change under the cache: later runs must rewrite their shards (and may be killed doing so).
      edited = all.filter((key, i) => i % 97 === 0 && storedBefore.has(key));
      for (const key of edited) await writeStructured(path.join(from, key), 50, 48, 1000 + all.indexOf(key));
    }
    if (all.length - storedBefore.size < 100) all.push(...(await writeManyImages(from, 150, all.length)));
    const outcome = await runAndKill(out, from, trigger);
    outcomes.push(outcome);
    if (!fs.existsSync(out)) {
      t.diagnostic(`kill ${k + 1} (${JSON.stringify(trigger)}): ${outcome} before the cache directory was created`);
      continue;
    }
    const { stored, left } = await checkAfterKill(out);
    for (const key of storedBefore) {
      if (!edited.includes(key)) assert.ok(stored.has(key), `${key}: a committed row is never lost by a later kill`);
    }
    storedBefore = stored;
    left.forEach((s) => seenStates.add(s));
    t.diagnostic(`kill ${k + 1} (${JSON.stringify(trigger)}): ${outcome}, ${stored.size}/${all.length} stored, left: ${left.join(', ') || 'nothing'}`);
  }
  const killed = outcomes.filter((o) => o === 'killed').length;
  assert.ok(killed >= 10, `at least 10 runs were killed mid-way (${outcomes})`);
  assert.ok(seenStates.has('a shard being written (.tmp)'), `some kill hit a shard being written (saw: ${[...seenStates]})`);

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
