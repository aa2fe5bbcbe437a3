/**
 * Image lists: one path per line (`--list paths.txt`, `-` for stdin). Relative paths are
 * resolved against the list file's directory (stdin: the current directory) and keep the path
 * as written as their key, so a list and a walk of the same tree give the same keys.
 */
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { UserError } from '../core/errors.js';
import type { SourceItem } from './types.js';

export function keyFromListEntry(entry: string): string {
  const normalised = path.posix.normalize(entry.replaceAll('\\', '/'));
  return normalised.replace(/^(\.\/)+/, '').replace(/^\/+/, '');
}

export async function* readList(listFile: string, stdin: NodeJS.ReadableStream = process.stdin): AsyncGenerator<SourceItem> {
  let input: NodeJS.ReadableStream;
  let base: string;
  if (listFile === '-') {
    input = stdin;
    base = process.cwd();
  } else {
    try {
      fs.accessSync(listFile, fs.constants.R_OK);
    } catch {
      throw new UserError(`cannot read list file ${listFile}: check the path (one image path per line, '-' for stdin)`);
    }
    input = fs.createReadStream(listFile);
    base = path.dirname(path.resolve(listFile));
  }
  const lines = readline.createInterface({ input, crlfDelay: Infinity });
  for await (const raw of lines) {
    const entry = raw.trim();
    if (!entry || entry.startsWith('#')) continue;
    const abs = path.resolve(base, entry);
    yield { image: { key: keyFromListEntry(entry), path: abs, display: abs } };
  }
}
