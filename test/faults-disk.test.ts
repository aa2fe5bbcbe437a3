/**
 * Full disks and unwritable output: a file size limit (ulimit -f, every user has it), a really
 * full file system (a small tmpfs in a private mount namespace, where the machine allows one), an
 * output directory or shards directory that cannot be written (chmod; as root, where chmod does
 * not stop writes, the immutable attribute). Each run stops with one line and exit 2, nothing
 * half-written is counted, and a rerun once the problem is gone completes.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { CacheState } from '../src/cache/manifest.js';
import { readJsonLines } from '../src/cache/jsonl.js';
import { readShardRows, snapshot, summaryCounts } from './fixtures/cache-reads.js';
import { workspaceBefore } from './fixtures/workspace.js';
import { CLI, runCli } from './helpers/cli.js';
import { start } from './helpers/process.js';

const IMAGES = 100;
/** The tiny model and IMAGES images, made before the tests run. */
const ws = workspaceBefore(IMAGES);

/** 256x256 float32 rows are 64 KiB: 15 rows make a ~1 MiB shard, so 100 images are 7 shards. */
const commonArgs = () => ['extract', ws.images, '--model', ws.model, '--bucket', '256x256', '--dtype', 'float32', '--shard-size', '1'];
const extractArgs = (out: string) => [...commonArgs(), '--out', out];

/** Everything that must hold after a run stopped by a write failure: no temp file, only journaled shards, each complete key once. */
async function checkNothingHalfWritten(out: string): Promise<number> {
  const files = (fs.readdirSync(out, { recursive: true }) as string[]).filter((f) => fs.statSync(path.join(out, f)).isFile());
  assert.deepEqual(files.filter((f) => f.endsWith('.tmp')), [], 'no temp file left');
  const state = await CacheState.read(out);
  assert.deepEqual(files.filter((f) => f.startsWith('shards/')).sort(), [...state.shards.keys()].sort(), 'only journaled shards on disk');
  const rows = await readShardRows(out);
  assert.deepEqual(rows.map((r) => r.key), [...state.keyToEntry.keys()].sort(), 'a plain read sees exactly the journaled rows');
  return rows.length;
}

function oneLine(stderr: string, pattern: RegExp): void {
  const lines = stderr.split('\n').filter(Boolean);
  assert.equal(lines.length, 1, `one line on stderr:\n${stderr}`);
  assert.match(lines[0]!, pattern);
}

/** Runs the CLI under `ulimit -f <KiB>` (bash counts in 1024-byte blocks). */
async function underFileSizeLimit(kib: number, args: readonly string[]) {
  return start('bash', ['-c', `ulimit -f ${kib}; exec "$0" "$@"`, process.execPath, CLI, ...args]).done;
}

test('a file size limit (EFBIG) while writing a shard: one line, exit 2, nothing half-written; a rerun without it completes', async () => {
  const out = path.join(ws.dir, 'efbig');
  const r = await underFileSizeLimit(300, extractArgs(out));
  assert.equal(r.signal, null, 'not killed by SIGXFSZ: Node ignores it, so the write fails with EFBIG');
  assert.equal(r.code, 2, r.stderr);
  oneLine(r.stderr, /^dinofeat: cannot write .*\/shards\/part-0-00001\.parquet\.tmp: the file size limit is exceeded \(EFBIG\); fix that and rerun, finished shards are kept$/);
  assert.equal(await checkNothingHalfWritten(out), 0);

  const rerun = await runCli(extractArgs(out));
  assert.equal(rerun.code, 0, rerun.stderr);
  assert.deepEqual((await readShardRows(out)).map((row) => row.key), ws.keys);
});

test('a cut-short journal append fails at once instead of leaving a torn line behind', async () => {
  // 300-byte records under a 1 KiB limit: the fourth write is cut short at the limit.
  const file = path.join(ws.dir, 'limited.jsonl');
  const script = `
    const { appendJsonLine } = await import(${JSON.stringify(pathToFileURL(path.resolve('src/cache/jsonl.ts')).href)});
    for (let i = 0; i < 5; i++) {
      try { await appendJsonLine(process.argv[1], { i, pad: 'x'.repeat(280) }, true); console.log('ok', i); }
      catch (e) { console.log('failed', i, e.name, e.message); break; }
    }`;
  const r = spawnSync('bash', ['-c', `ulimit -f 1; exec "$0" "$@"`, process.execPath, '--import', 'tsx', '--input-type=module', '-e', script, file], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^ok 0\nok 1\nok 2\nfailed 3 UserError cannot write .*limited\.jsonl: the file size limit is exceeded \(EFBIG\)/);
  const parsed = await readJsonLines(file);
  assert.equal(parsed.records.length, 3);
  assert.equal(parsed.torn, true, 'the cut line is the last one, which reading ignores and the next open cuts off');
});

test('a full disk (ENOSPC, small tmpfs): finished shards are kept, the one being written is dropped; after freeing space a rerun completes', async (t: TestContext) => {
  const mnt = path.join(ws.dir, 'mnt');
  const saved = path.join(ws.dir, 'saved');
  fs.mkdirSync(mnt);
  fs.mkdirSync(saved);
  // The tmpfs lives in the child's mount namespace only: the script saves what the test checks.
  const script = `
    set -u
    mount -t tmpfs -o size=10m tmpfs "$MNT" 2>/dev/null || exit 77
    head -c 6815744 /dev/zero > "$MNT/filler"
    run() { "$NODE" "$CLI" "\${ARGS[@]}" --out "$MNT/cache" > "$SAVED/$1.out" 2> "$SAVED/$1.err"; echo $? > "$SAVED/$1.rc"; }
    ARGS=("$@")
    run full
    cp -a "$MNT/cache" "$SAVED/after-full"
    rm "$MNT/filler"
    run freed
    cp -a "$MNT/cache" "$SAVED/final"`;
  const env = { ...process.env, MNT: mnt, SAVED: saved, NODE: process.execPath, CLI };
  const r = spawnSync('unshare', ['--map-root-user', '--mount', 'bash', '-c', script, 'bash', ...commonArgs()], { encoding: 'utf8', env });
  if (r.error || r.status === 77 || (r.status !== 0 && /unshare/.test(r.stderr))) {
    t.skip(`no private tmpfs here (${r.error?.message ?? r.stderr.trim()}); the file size limit test covers write failures`);
    return;
  }
  assert.equal(r.status, 0, r.stderr);
  const read = (name: string) => fs.readFileSync(path.join(saved, name), 'utf8');

  assert.equal(read('full.rc').trim(), '2', read('full.err'));
  oneLine(read('full.err'), /^dinofeat: cannot write .*: the disk is full \(ENOSPC\); fix that and rerun, finished shards are kept$/);
  const kept = await checkNothingHalfWritten(path.join(saved, 'after-full'));
  assert.ok(kept > 0 && kept < IMAGES, `some shards were finished before the disk filled (${kept} rows)`);

  assert.equal(read('freed.rc').trim(), '0', read('freed.err'));
  assert.deepEqual(summaryCounts(read('freed.out')), { extracted: IMAGES - kept, skipped: kept, failed: 0, found: IMAGES });
  assert.deepEqual((await readShardRows(path.join(saved, 'final'))).map((row) => row.key), ws.keys);
});

/**
 * Makes `target` unwritable for this process and returns how to undo it, or undefined when this
 * machine offers no way: chmod stops ordinary users; root ignores modes, but not the immutable
 * attribute (chattr +i, on file systems that have it).
 */
function makeUnwritable(target: string): (() => void) | undefined {
  const blocked = () => {
    try {
      fs.writeFileSync(path.join(target, '.probe'), '');
      fs.rmSync(path.join(target, '.probe'));
      return false;
    } catch {
      return true;
    }
  };
  fs.chmodSync(target, 0o555);
  if (blocked()) return () => fs.chmodSync(target, 0o755);
  fs.chmodSync(target, 0o755);
  if (spawnSync('chattr', ['+i', target]).status === 0) {
    const undo = () => void spawnSync('chattr', ['-i', target]);
    if (blocked()) return undo;
    undo();
  }
  return undefined;
}

test('a read-only --out: one line, exit 2, nothing written; a read-only shards directory stops the run the same way', async (t: TestContext) => {
  const out = path.join(ws.dir, 'readonly');
  fs.mkdirSync(out);
  const undo = makeUnwritable(out);
  if (!undo) {
    t.skip('neither chmod nor chattr +i can make a directory unwritable here');
    return;
  }
  try {
    const r = await runCli(extractArgs(out));
    assert.equal(r.code, 2, r.stderr);
    oneLine(r.stderr, new RegExp(`^dinofeat: cannot write to --out ${out}: choose a writable directory$`));
    // Nor can a cache be created inside it.
    const inside = await runCli(extractArgs(path.join(out, 'cache')));
    assert.equal(inside.code, 2);
    oneLine(inside.stderr, /^dinofeat: cannot write to .*readonly \(to create --out .*readonly\/cache in it\): choose a writable directory$/);
  } finally {
    undo();
  }
  assert.deepEqual(fs.readdirSync(out), [], 'nothing written');

  // The cache directory is writable but its shards directory is not: the first shard cannot be created.
  const shards = path.join(out, 'shards');
  fs.mkdirSync(shards);
  const undoShards = makeUnwritable(shards)!;
  let before: Record<string, string>;
  try {
    const r = await runCli(extractArgs(out));
    assert.equal(r.code, 2, r.stderr);
    oneLine(r.stderr, /^dinofeat: cannot write .*\/shards\/part-0-00001\.parquet\.tmp: (permission denied \(EACCES\)|operation not permitted \(EPERM\)); fix that and rerun, finished shards are kept$/);
    before = snapshot(out);
  } finally {
    undoShards();
  }
  assert.equal(await checkNothingHalfWritten(out), 0);
  assert.deepEqual(Object.keys(before).sort(), ['cache.json', 'manifest/inputs-0.json'], 'only the cache identity and the run record were written');
  const rerun = await runCli(extractArgs(out));
  assert.equal(rerun.code, 0, rerun.stderr);
  assert.deepEqual((await readShardRows(out)).map((row) => row.key), ws.keys);
});
