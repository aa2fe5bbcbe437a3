/**
 * Image lists: one path per line (`--list paths.txt`, `-` for stdin). Relative paths are
 * resolved against the list file's directory (stdin: the current directory) and keep the path
 * as written as their key, so a list and a walk of the same tree give the same keys. A line may
 * also name a tar shard or a Parquet file (source/inputs.ts reads those).
 */
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { UserError } from '../core/errors.js';
import { fileImage } from './file-image.js';
import type { SourceItem } from './types.js';

export function keyFromListEntry(entry: string): string {
  const normalised = path.posix.normalize(entry.replaceAll('\\', '/'));
  return normalised.replace(/^(\.\/)+/, '').replace(/^\/+/, '');
}

/** Each entry of a list: its key (the path as written) and the absolute path it names. */
export async function* readListEntries(listFile: string, stdin: NodeJS.ReadableStream = process.stdin): AsyncGenerator<{ key: string; abs: string }> {
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
    yield { key: keyFromListEntry(entry), abs: path.resolve(base, entry) };
  }
}

/** The list's entries as image files. */
export async function* readList(listFile: string, stdin: NodeJS.ReadableStream = process.stdin, keyPrefix = ''): AsyncGenerator<SourceItem> {
  for await (const { key, abs } of readListEntries(listFile, stdin)) yield { image: fileImage(`${keyPrefix}${key}`, abs, abs) };
}
