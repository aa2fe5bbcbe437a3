/**
 * The per-part lock refuses while its holder lives and is taken over once the holder is gone,
 * with real processes: a child takes the lock and is SIGKILLed, as a crash would leave it.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { acquireLock } from '../src/cache/lock.js';
import { isUserError } from '../src/core/errors.js';
import { tsxEval } from './helpers/process.js';
import { tempDir } from './helpers/temp.js';

const dir = tempDir();
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Starts a process that takes part `partId`'s lock and then waits to be killed. */
async function childHoldingLock(partId: string): Promise<ChildProcess> {
  const lockModule = pathToFileURL(path.resolve('src/cache/lock.ts')).href;
  const script = `
    const { acquireLock } = await import(${JSON.stringify(lockModule)});
    await acquireLock(${JSON.stringify(dir)}, ${JSON.stringify(partId)});
    console.log('locked');
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, tsxEval(script), { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => d.toString().includes('locked') && resolve());
    child.on('exit', (code) => reject(new Error(`lock holder exited early (${code})`)));
  });
  return child;
}

describe('cache lock', () => {
  it('refuses while a live process holds the part, then takes over once it is killed', async () => {
    const child = await childHoldingLock('0');
    try {
      const refused = await acquireLock(dir, '0').then(
        () => assert.fail('second holder got the lock'),
        (e: unknown) => e,
      );
      assert.ok(isUserError(refused));
      assert.match((refused as Error).message, new RegExp(`in use by pid ${child.pid} .*remove .*part-0\\.lock`));

      // Another part of the same directory is free: workers share a cache dir.
      const other = await acquireLock(dir, '1');
      await other.release();
    } finally {
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
    }
    const lock = await acquireLock(dir, '0');
    assert.match(lock.note ?? '', new RegExp(`took over the lock of pid ${child.pid} .*no longer running`));
    const holder = JSON.parse(fs.readFileSync(lock.path, 'utf8'));
    assert.equal(holder.pid, process.pid);
    await lock.release();
    assert.equal(fs.existsSync(lock.path), false);
  });

  it('takes over a lock left by a process that exited without releasing it', async () => {
    const exited = spawn(process.execPath, ['-e', '']);
    await new Promise((r) => exited.once('exit', r));
    const file = path.join(dir, 'locks', 'part-2.lock');
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, JSON.stringify({ pid: exited.pid, hostname: (await import('node:os')).hostname(), startedAt: '2020-01-01T00:00:00.000Z' }));
    const lock = await acquireLock(dir, '2');
    assert.match(lock.note ?? '', new RegExp(`pid ${exited.pid} \\(started 2020-01-01T00:00:00.000Z\\): pid ${exited.pid} is no longer running`));
    await lock.release();
  });

  it('a writer whose launcher is gone is waited for, and its lock taken over once it ends; a zombie counts as gone', async () => {
    const hostname = (await import('node:os')).hostname();
    const launcher = spawn(process.execPath, ['-e', '']);
    await new Promise((r) => launcher.once('exit', r));
    // The writer: alive for another 600 ms, as one whose launcher was just killed is for a moment.
    const writer = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 600)']);
    const file = path.join(dir, 'locks', 'part-4.lock');
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, JSON.stringify({ pid: launcher.pid, writer: { pid: writer.pid }, hostname, startedAt: '2020-01-01T00:00:00.000Z' }));
    let writerEnded = false;
    writer.once('exit', () => (writerEnded = true));
    const lock = await acquireLock(dir, '4');
    assert.ok(writerEnded, 'not taken while the writer still ran');
    assert.match(lock.note ?? '', new RegExp(`took over the lock of pid ${launcher.pid} .*: pid ${launcher.pid} is no longer running`));
    await lock.release();

    // Ended but never reaped: its parent became a `sleep`, which never waits for children (a zombie).
    const parent = spawn('sh', ['-c', 'sleep 0.01 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
    const zombie = Number(await new Promise<string>((r) => parent.stdout!.once('data', (d: Buffer) => r(d.toString()))));
    const state = () => fs.readFileSync(`/proc/${zombie}/stat`, 'utf8').split(') ')[1]![0];
    for (let t = 0; t < 400 && state() !== 'Z'; t++) await new Promise((r) => setTimeout(r, 5));
    assert.equal(state(), 'Z');
    fs.writeFileSync(file, JSON.stringify({ pid: zombie, hostname, startedAt: '2020-01-01T00:00:00.000Z' }));
    try {
      const again = await acquireLock(dir, '4');
      assert.match(again.note ?? '', new RegExp(`pid ${zombie} is no longer running`));
      await again.release();
    } finally {
      parent.kill('SIGKILL');
    }
  });

  it('does not release a lock that someone else took over', async () => {
    const lock = await acquireLock(dir, '3');
    fs.writeFileSync(lock.path, JSON.stringify({ pid: 1, hostname: 'elsewhere', startedAt: 'x' }));
    await lock.release();
    assert.equal(fs.existsSync(lock.path), true);
    await assert.rejects(acquireLock(dir, '3'), /in use by pid 1 on elsewhere/);
  });
});
