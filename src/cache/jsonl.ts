/**
 * JSON Lines files that are appended to and must survive a crash mid-append: each record is one
 * write of one line. A crash can only damage the last line, which reading ignores; damage before
 * it means the file was edited, and that is reported rather than guessed around.
 */
import { writeSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../core/errors.js';
import { readTextIfExists, rethrowIoError } from '../core/durable-fs.js';
import { faultPoint, type FaultPointName } from '../core/fault-point.js';

export interface ParsedLines<T> {
  records: T[];
  /** Byte length of the complete lines; less than the file size when the last line is torn. */
  validBytes: number;
  torn: boolean;
}

export function parseJsonLines<T>(text: string, file: string): ParsedLines<T> {
  const records: T[] = [];
  let pos = 0;
  let torn = false;
  while (pos < text.length) {
    const nl = text.indexOf('\n', pos);
    const line = text.slice(pos, nl < 0 ? text.length : nl);
    let record: T | undefined;
    try {
      record = JSON.parse(line) as T;
    } catch {
      record = undefined;
    }
    if (record === undefined || record === null || nl < 0) {
      const last = nl < 0 || text.slice(nl + 1).trim() === '';
      if (!last) throw new UserError(`${file} is corrupt at byte ${Buffer.byteLength(text.slice(0, pos))}; restore it or rerun with --overwrite`);
      torn = true;
      break;
    }
    records.push(record);
    pos = nl + 1;
  }
  return { records, validBytes: Buffer.byteLength(text.slice(0, pos)), torn };
}

/** Reads a JSON Lines file; a missing file reads as empty. */
export async function readJsonLines<T>(file: string): Promise<ParsedLines<T>> {
  const text = await readTextIfExists(file);
  return text === undefined ? { records: [], validBytes: 0, torn: false } : parseJsonLines<T>(text, file);
}

/**
 * Appends one record as one line; `durable` waits for it to reach the disk. `tornAt` names the
 * test-only crash point (core/fault-point.ts) that dies with half of the line written.
 */
export async function appendJsonLine(file: string, record: unknown, durable: boolean, tornAt?: FaultPointName): Promise<void> {
  try {
    await fs.mkdir(path.dirname(file), { recursive: true });
    const handle = await fs.open(file, 'a');
    try {
      // A write can be cut short (disk full, file size limit): write the rest, so that the failure
      // surfaces here instead of leaving a torn line that the next append would run into.
      const line = Buffer.from(`${JSON.stringify(record)}\n`);
      if (tornAt) faultPoint(tornAt, () => writeSync(handle.fd, line, 0, line.length >> 1));
      for (let done = 0; done < line.length; ) done += (await handle.write(line, done, line.length - done)).bytesWritten;
      if (durable) await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (e) {
    rethrowIoError(e, file);
  }
}

/** Cuts a torn last line off, so the next append starts on a fresh line. */
export async function truncateTornLine(file: string, validBytes: number): Promise<void> {
  try {
    await fs.truncate(file, validBytes);
  } catch (e) {
    rethrowIoError(e, file);
  }
}
