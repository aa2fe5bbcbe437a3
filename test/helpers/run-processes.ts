/**
 * The processes of one run: the one a test started and, where extract runs in a child process with
 * allocator settings (src/cli/allocator-launch.ts), that writer, as the run's lock names them.
 * Stopping a run (SIGSTOP) means stopping its writer: a stopped launcher alone would not pause it.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import type { LockHolder } from '../../src/cache/lock.js';
import type { Started } from './process.js';

/** Sends `signal` to the run `started` whose lock is `lockFile`: its writer first, then itself. */
export function signalRun(lockFile: string, started: Started, signal: NodeJS.Signals): void {
  const holder = JSON.parse(fs.readFileSync(lockFile, 'utf8')) as LockHolder;
  assert.equal(holder.pid, started.child.pid, 'the lock names the process the test started');
  if (holder.writer) process.kill(holder.writer.pid, signal);
  started.child.kill(signal);
}
