/**
 * Recursive directory walk in a deterministic order (names sorted bytewise), following symlinks
 * safely: a link back into its own ancestry is a loop and is reported, a dangling link is
 * reported, neither stops the walk.
 */
import type { Dirent } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../core/errors.js';
import { fileImage } from './file-image.js';
import { decodeName } from './names.js';
import { hasImageExtension, type SourceItem } from './types.js';

const SEP = Buffer.from('/');

function errnoReason(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  return err.code ? `${err.code}: ${err.message}` : String(e);
}

/** Every image under `root`; keys are paths relative to it, after `keyPrefix`. */
export async function* walkDirectory(root: string, keyPrefix = ''): AsyncGenerator<SourceItem> {
  const absRoot = path.resolve(root);
  let rootReal: string;
  try {
    rootReal = await fs.realpath(absRoot);
    if (!(await fs.stat(rootReal)).isDirectory()) throw new UserError(`${root} is not a directory: pass a directory of images or use --list`);
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`cannot read input ${root} (${errnoReason(e)}): check the path`);
  }
  yield* walk(Buffer.from(absRoot), [], [rootReal], keyPrefix);
}

async function* walk(dir: Buffer, keyParts: string[], ancestry: string[], keyPrefix: string): AsyncGenerator<SourceItem> {
  const here = keyParts.join('/') || '.';
  let entries: Dirent<Buffer>[];
  try {
    entries = await fs.readdir(dir, { encoding: 'buffer', withFileTypes: true });
  } catch (e) {
    yield { problem: { key: `${keyPrefix}${here}`, display: dir.toString(), reason: `cannot list directory (${errnoReason(e)})` } };
    return;
  }
  entries.sort((a, b) => Buffer.compare(a.name, b.name));
  for (const entry of entries) {
    const { name } = entry;
    const full = Buffer.concat([dir, SEP, name]);
    const { text } = decodeName(name);
    const parts = [...keyParts, text];
    const key = parts.join('/');
    const display = full.toString();
    // A plain file is known from its directory entry, without a stat (a thread-pool round trip,
    // 40-150 µs of CPU an image on a VM); symlinks, and entries the file system gives no type for,
    // are stat'ed to follow them.
    let st: Pick<Dirent, 'isFile' | 'isDirectory'> = entry;
    try {
      if (!entry.isFile()) st = await fs.stat(full); // follows symlinks
    } catch (e) {
      const isLink = await fs.lstat(full).then((l) => l.isSymbolicLink(), () => false);
      if (isLink || hasImageExtension(text)) {
        yield { problem: { key: `${keyPrefix}${key}`, display, reason: isLink ? 'dangling symlink: its target does not exist' : `cannot stat (${errnoReason(e)})` } };
      }
      continue;
    }
    if (st.isDirectory()) {
      const real = await fs.realpath(full).catch(() => display);
      if (ancestry.includes(real)) {
        yield { problem: { key: `${keyPrefix}${key}`, display, reason: `symlink loop: points back to ${real}; not followed` } };
        continue;
      }
      yield* walk(full, parts, [...ancestry, real], keyPrefix);
    } else if (st.isFile() && hasImageExtension(text)) {
      yield { image: fileImage(`${keyPrefix}${key}`, decodeName(full).valid ? display : full, display) };
    }
  }
}
