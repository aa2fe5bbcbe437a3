/**
 * extract in a child process with glibc's allocator settings (src/cli/allocator-launch.ts): when it
 * happens, what the child gets, and that the launcher stays the process users see: the lock names
 * it, a Ctrl-C that reaches both processes is one request, a killed launcher leaves no writer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { allocatorRelaunch, heapFlags, MAIN_HEAP_FLAG, thisHost, type Host } from '../src/cli/allocator-launch.js';
import { LAUNCHER_PID_ENV } from '../src/core/launcher.js';
import { pidAlive } from '../src/cache/lock.js';
import { workspaceBefore } from './fixtures/workspace.js';
import { CLI, startCli } from './helpers/cli.js';

const ws = workspaceBefore(300);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const linux: Host = { platform: 'linux', glibc: '2.36', cores: 16 };
const glibc = () => linux;
const argv = (...args: string[]) => ['node', 'bin/dinofeat.js', ...args];
const onGlibc = thisHost().platform === 'linux' && thisHost().glibc !== undefined;
const skip = onGlibc ? false : 'extract runs in its own process only on Linux with glibc';

test('relaunched: only extract, only on Linux with glibc, never when the user set the allocator or it already was', () => {
  const settings = allocatorRelaunch(argv('extract', 'imgs', '--bucket', '256x256'), {}, glibc);
  assert.deepEqual(settings, {
    MALLOC_ARENA_MAX: '16',
    MALLOC_MMAP_THRESHOLD_: String(32 * 2 ** 20),
    MALLOC_TRIM_THRESHOLD_: String(64 * 2 ** 20),
    GLIBC_TUNABLES: 'glibc.malloc.hugetlb=1',
  });
  assert.equal(allocatorRelaunch(argv('extract', 'x'), {}, () => ({ ...linux, cores: 1 }))?.MALLOC_ARENA_MAX, '2', 'never fewer than two arenas');
  for (const other of [argv('validate', 'cache'), argv('inspect', 'extract'), argv('--help'), argv()]) {
    assert.equal(allocatorRelaunch(other, {}, glibc), undefined, other.join(' '));
  }
  assert.equal(allocatorRelaunch(argv('extract', 'x'), {}, () => ({ ...linux, glibc: undefined })), undefined, 'musl');
  assert.equal(allocatorRelaunch(argv('extract', 'x'), {}, () => ({ ...linux, platform: 'darwin' })), undefined);
  for (const name of ['MALLOC_ARENA_MAX', 'MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_', 'GLIBC_TUNABLES', LAUNCHER_PID_ENV]) {
    assert.equal(allocatorRelaunch(argv('extract', 'x'), { [name]: '1' }, glibc), undefined, name);
  }
});

test('the child gets the heap flags unless the user gave Node their own', () => {
  assert.deepEqual(heapFlags([]), ['--initial-old-space-size=96']);
  assert.deepEqual(heapFlags(['--enable-source-maps', '--max-old-space-size=4096']), [MAIN_HEAP_FLAG], 'another flag');
  for (const own of ['--initial-old-space-size=200', '--initial_old_space_size=200']) assert.deepEqual(heapFlags([own]), [], own);
});

const extractArgs = (out: string) => ['extract', ws.images, '--model', ws.model, '--out', out, '--bucket', '256x256', '--shard-size', '1', '--batch-size', '4'];

interface Holder { pid: number; writer?: { pid: number } }
const lockOf = (out: string): Holder | undefined => {
  try {
    return JSON.parse(fs.readFileSync(path.join(out, 'locks', 'part-0.lock'), 'utf8')) as Holder;
  } catch {
    return undefined;
  }
};
async function until<T>(what: string, probe: () => T | undefined): Promise<T> {
  for (let t = 0; t < 3000; t++) {
    const v = probe();
    if (v !== undefined) return v;
    await sleep(5);
  }
  throw new Error(`timed out waiting for ${what}`);
}

test('the child writes with the settings; the lock names the launcher, and the writer beside it', { skip }, async () => {
  const out = path.join(ws.dir, 'plain');
  const run = startCli(extractArgs(out));
  const holder = await until('the lock', () => lockOf(out));
  assert.equal(holder.pid, run.child.pid, 'the pid users see');
  assert.ok(holder.writer && holder.writer.pid !== run.child.pid);
  const env = fs.readFileSync(`/proc/${holder.writer.pid}/environ`, 'utf8').split('\0');
  const cmdline = fs.readFileSync(`/proc/${holder.writer.pid}/cmdline`, 'utf8').split('\0');
  assert.ok(cmdline.includes('--initial-old-space-size=96'), cmdline.join(' '));
  assert.ok(env.includes('MALLOC_TRIM_THRESHOLD_=67108864') && env.includes('GLIBC_TUNABLES=glibc.malloc.hugetlb=1') && env.includes(`${LAUNCHER_PID_ENV}=${run.child.pid}`), env.filter((e) => /MALLOC|GLIBC|DINOFEAT/.test(e)).join(' '));
  const r = await run.done;
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /300 extracted/);

  const own = path.join(ws.dir, 'own-settings');
  const mine = startCli(extractArgs(own), { MALLOC_ARENA_MAX: '4' });
  const alone = await until('the lock', () => lockOf(own));
  assert.deepEqual([alone.pid, alone.writer], [mine.child.pid, undefined], 'the user\'s own setting: no child');
  assert.equal((await mine.done).code, 0);
});

test('a Ctrl-C that reaches launcher and child alike is one request: a clean stop, exit 130', { skip }, async () => {
  const out = path.join(ws.dir, 'group');
  // Its own process group, as a terminal's foreground job is: the group signal reaches both processes.
  const child = spawn(process.execPath, [CLI, ...extractArgs(out)], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  const journal = path.join(out, 'manifest', 'part-0.jsonl');
  await until('a committed shard', () => (fs.existsSync(journal) && fs.statSync(journal).size > 0 ? true : undefined));
  process.kill(-child.pid!, 'SIGINT');
  const r = await ended;
  assert.deepEqual(r, { code: 130, signal: null }, stderr);
  assert.equal(stderr.match(/SIGINT: finishing the images in flight/g)?.length, 1, stderr);
});

test('a launcher killed with SIGKILL takes its writer with it', { skip }, async () => {
  const out = path.join(ws.dir, 'killed');
  const run = startCli(extractArgs(out));
  const holder = await until('the lock', () => lockOf(out));
  run.child.kill('SIGKILL');
  assert.equal((await run.done).signal, 'SIGKILL');
  await until('the writer to be gone', () => (pidAlive(holder.writer!.pid) ? undefined : true));
  const rerun = await startCli(extractArgs(out)).done;
  assert.equal(rerun.code, 0, rerun.stderr);
  assert.match(rerun.stderr, new RegExp(`took over the lock of pid ${run.child.pid} `));
});
