/**
 * Every image of a run's inputs, in order: the paths given (directories walked, tar shards and
 * Parquet files read), then the lists read (whose lines may name containers too). Extract reads
 * them; validate and merge read them again to compare a cache with them.
 */
import fs from 'node:fs';
import path from 'node:path';
import { UserError } from '../core/errors.js';
import { readListEntries } from './list.js';
import { fileImage } from './file-image.js';
import { isParquetFile, readParquet } from './parquet.js';
import { ownedContainers, workerOfKey } from './partition.js';
import { withDefaults, type ReadOptions } from './read-options.js';
import { readTar, tarStem, type TarReading } from './tar.js';
import type { Origin, SourceItem } from './types.js';
import { walkDirectory } from './walk.js';

export interface Inputs {
  /** Directories (walked recursively; keys relative to them), tar shards and Parquet files. */
  paths: readonly string[];
  /** Files with one path per line ('-' for stdin); keys are the paths as written. */
  lists: readonly string[];
  /** How this run reads its inputs (absent: the defaults). */
  read?: Partial<ReadOptions>;
  /** How earlier runs read particular inputs (absolute path → options), from the run record. */
  readAs?: Readonly<Record<string, Partial<ReadOptions>>>;
}

export type InputKind = 'dir' | 'tar' | 'parquet';

export function inputKind(p: string): InputKind {
  return tarStem(p) !== undefined ? 'tar' : isParquetFile(p) ? 'parquet' : 'dir';
}

/** How `input` is read: as recorded for it, else as this run says. */
export function readOptionsOf(inputs: Inputs, input: string): ReadOptions {
  return withDefaults(inputs.readAs?.[path.resolve(input)] ?? inputs.read);
}

/** One line when a path cannot be an input at all (checked before a run starts). */
export function checkInputPaths(inputs: Inputs): void {
  if (inputs.paths.length === 0 && inputs.lists.length === 0) {
    throw new UserError('nothing to extract: pass image directories, tar shards (.tar, .tar.gz, .tgz) or Parquet files, and/or --list FILE');
  }
  for (const p of inputs.paths) {
    const st = fs.statSync(p, { throwIfNoEntry: false });
    const kind = inputKind(p);
    if (kind === 'dir' ? !st?.isDirectory() : !st?.isFile()) {
      throw new UserError(`input ${p} is not a directory, tar shard (.tar, .tar.gz, .tgz) or Parquet file: check the path, or pass a list with --list`);
    }
  }
}

/** The first part of a container's keys: prefix and file name without its extension. */
function namespaceOf(container: string, o: ReadOptions): string {
  return `${o.keyPrefix}${tarStem(container) ?? path.basename(container).replace(/\.parquet$/i, '')}`;
}

export interface ReadInputsOptions {
  /** Only this worker's share: its own container files, or the keys the hash gives it. */
  slot?: { index: number; count: number };
  /**
   * Only these keys (--retry-failed). A container's own key (it could not be opened or read to
   * its end) brings back every sample of it.
   */
  onlyKeys?: ReadonlySet<string>;
  /** A container was read to its end: an earlier error row naming it (by its key) is over. */
  onContainerRead?: (key: string) => void;
  /** Each tar shard as it is opened, for byte progress. */
  onTar?: (file: string, reading: TarReading) => void;
}

export async function* readInputs(inputs: Inputs, o: ReadInputsOptions = {}): AsyncGenerator<SourceItem> {
  const containers = inputs.paths.filter((p) => inputKind(p) !== 'dir').map((p) => path.resolve(p));
  const owned = o.slot ? ownedContainers(containers, o.slot) : undefined;
  const keyOf = (item: SourceItem) => ('image' in item ? item.image.key : item.problem.key);
  const byHash = (key: string) => !o.slot || workerOfKey(key, o.slot.count) === o.slot.index;
  const wanted = (key: string, namespace?: string) => !o.onlyKeys || o.onlyKeys.has(key) || (namespace !== undefined && o.onlyKeys.has(namespace));
  /** Key namespace (prefix + shard name) → the container that took it. */
  const namespaces = new Map<string, string>();

  async function* container(p: string, mine: (key: string) => boolean): AsyncGenerator<SourceItem> {
    const abs = path.resolve(p);
    const opts = readOptionsOf(inputs, p);
    const namespace = namespaceOf(abs, opts);
    const first = namespaces.get(namespace);
    if (first !== undefined && first !== abs) {
      // Two shards named alike (00000.tar from two folders) would give the same keys.
      if (wanted(namespace) && mine(namespace)) {
        yield { problem: { key: namespace, display: abs, reason: `duplicate key: ${first} already gives the keys ${namespace}/...; pass this one with --key-prefix in its own run, or rename it` } };
      }
      return;
    }
    namespaces.set(namespace, abs);
    // --retry-failed: a container none of whose keys failed is not opened (keys from --key-column carry no namespace).
    const retried = [...(o.onlyKeys ?? [])].some((k) => k === namespace || k.startsWith(`${namespace}/`));
    if (o.onlyKeys && !retried && opts.keyColumn === undefined) return;
    const items = inputKind(abs) === 'tar' ? readTar(abs, opts, (r) => o.onTar?.(abs, r)) : readParquet(abs, opts);
    let whole = true;
    for await (const item of items) {
      if ('problem' in item && item.problem.key === namespace) whole = false;
      if (wanted(keyOf(item), namespace) && mine(keyOf(item))) yield item;
    }
    if (whole) o.onContainerRead?.(namespace);
  }

  for (const p of inputs.paths) {
    if (inputKind(p) === 'dir') {
      for await (const item of walkDirectory(p, readOptionsOf(inputs, p).keyPrefix)) if (wanted(keyOf(item)) && byHash(keyOf(item))) yield item;
    } else if (!owned) {
      yield* container(p, byHash);
    } else if (owned.has(path.resolve(p))) {
      yield* container(p, () => true);
    } else {
      // Another worker's file: not opened, but its keys are taken as if it were read here.
      const namespace = namespaceOf(p, readOptionsOf(inputs, p));
      if (!namespaces.has(namespace)) namespaces.set(namespace, path.resolve(p));
    }
  }
  for (const list of inputs.lists) {
    const prefix = readOptionsOf(inputs, list).keyPrefix;
    for await (const { key, abs } of readListEntries(list)) {
      if (inputKind(abs) !== 'dir') {
        yield* container(abs, byHash);
        continue;
      }
      const image = fileImage(`${prefix}${key}`, abs, abs);
      if (wanted(image.key) && byHash(image.key)) yield { image };
    }
  }
}

/** The key of every image the inputs hold (what a run over them should end up storing or failing). */
export async function* inputKeys(inputs: Inputs): AsyncGenerator<string> {
  for await (const item of readInputs(inputs)) if ('image' in item) yield item.image.key;
}

/** The inputs as extract's arguments: `dir1 shard.tar --list a.txt`. */
export function inputArgs(inputs: Inputs): string {
  return [...inputs.paths, ...inputs.lists.map((l) => `--list ${l}`)].join(' ');
}

/**
 * The bytes of `keys`: read at their recorded origin when there is one (a file, a tar member, a
 * Parquet row), else found in the inputs (the first source wins, as in extract).
 */
export async function locateKeys(inputs: Inputs, keys: ReadonlyMap<string, Origin | undefined>): Promise<Map<string, { bytes: Buffer; display: string }>> {
  const found = new Map<string, { bytes: Buffer; display: string }>();
  const search = new Set<string>();
  for (const [key, origin] of keys) {
    const at = origin ? await readAtOrigin(inputs, origin) : undefined;
    if (at) found.set(key, at);
    else search.add(key);
  }
  if (search.size === 0) return found;
  for await (const item of readInputs(inputs)) {
    if (!('image' in item) || !search.has(item.image.key)) continue;
    const bytes = await item.image.read().catch(() => undefined);
    if (bytes) found.set(item.image.key, { bytes, display: item.image.display });
    search.delete(item.image.key);
    if (search.size === 0) break;
  }
  return found;
}

async function readAtOrigin(inputs: Inputs, origin: Origin): Promise<{ bytes: Buffer; display: string } | undefined> {
  let items: AsyncGenerator<SourceItem>;
  if ('file' in origin) {
    const bytes = await fs.promises.readFile(origin.file).catch(() => undefined);
    return bytes && { bytes, display: origin.file };
  }
  if ('tar' in origin) items = readTar(origin.tar, readOptionsOf(inputs, origin.tar));
  else items = readParquet(origin.parquet, readOptionsOf(inputs, origin.parquet), new Set([origin.row]));
  for await (const item of items) {
    if (!('image' in item)) continue;
    const o = item.image.origin;
    if (('tar' in o && 'tar' in origin && o.member === origin.member) || ('parquet' in o && 'parquet' in origin && o.row === origin.row)) {
      return { bytes: await item.image.read(), display: item.image.display };
    }
  }
  return undefined;
}
