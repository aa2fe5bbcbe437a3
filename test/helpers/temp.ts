/** Temp dirs for tests. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const made: string[] = [];
// Each test file runs in its own process: its temp dirs go when it exits, whether it passed or not.
process.on('exit', () => made.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

/** A fresh temp dir, removed when the test process exits. */
export function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dinofeat-test-'));
  made.push(dir);
  return dir;
}
