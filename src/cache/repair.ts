/** Merge's repair: every part whose worker is gone is repaired under its lock. */
import fs from 'node:fs/promises';
import path from 'node:path';
import { isUserError } from '../core/errors.js';
import { readJournal } from './journal.js';
import { SHARDS_DIR, TMP_SUFFIX, journalPath, parseShardName } from './layout.js';
import { acquireLock, type HeldLock } from './lock.js';
import { readAllJournals, repairPart } from './manifest.js';

/**
 * Repairs every part whose worker is gone, each under its lock (merge, after a multi-worker run):
 * crashed workers' unjournaled shards and temp files go. A part still locked by a running worker
 * is left alone and reported as busy.
 */
export async function repairAllParts(dir: string): Promise<{ removed: string[]; busyParts: string[] }> {
  const parts = new Set((await readAllJournals(dir)).keys());
  for (const name of await fs.readdir(path.join(dir, SHARDS_DIR)).catch(() => [] as string[])) {
    const part = parseShardName(name.endsWith(TMP_SUFFIX) ? name.slice(0, -TMP_SUFFIX.length) : name)?.partId;
    if (part) parts.add(part);
  }
  const removed: string[] = [];
  const busyParts: string[] = [];
  for (const part of [...parts].sort()) {
    let lock: HeldLock;
    try {
      lock = await acquireLock(dir, part);
    } catch (e) {
      if (!isUserError(e)) throw e;
      busyParts.push(part);
      continue;
    }
    try {
      // Read again under the lock: its worker may have committed shards since the first read.
      removed.push(...(await repairPart(dir, part, await readJournal(journalPath(dir, part)))));
    } finally {
      await lock.release();
    }
  }
  return { removed, busyParts };
}
