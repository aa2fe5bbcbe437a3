/**
 * How many images the inputs hold for this worker, found ahead of extraction so progress has a
 * real total early: directories walked and list files read (names only, no image bytes), Parquet
 * row counts from their footers. A tar shard cannot be counted without reading it whole; its
 * progress is the bytes read of its size instead. A list on stdin counts as it comes.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { inputKind, readOptionsOf, type Inputs } from './inputs.js';
import { readListEntries } from './list.js';
import { parquetRowCount } from './parquet.js';
import { ownedContainers, workerOfKey } from './partition.js';
import { tarStem } from './tar.js';
import { walkDirectory } from './walk.js';

export interface AheadCount {
  /** Images counted so far (this worker's share). */
  images: number;
  /** Every input is counted (no tar shard, no stdin list, nothing left to walk). */
  final: boolean;
  /** Total bytes of the tar shards this worker reads, counted by bytes instead. */
  tarBytes: number;
}

/**
 * Counts, calling `report` as the count grows and once at the end (not when `cancelled` stops it:
 * the run ended first, and a walk must not keep the process alive).
 */
export async function countAhead(
  inputs: Inputs, slot: { index: number; count: number }, report: (c: AheadCount) => void, cancelled: () => boolean,
): Promise<void> {
  const count: AheadCount = { images: 0, final: false, tarBytes: 0 };
  let uncounted = false;
  const containers = inputs.paths.filter((p) => inputKind(p) !== 'dir').map((p) => path.resolve(p));
  const owned = ownedContainers(containers, slot);
  const mine = (key: string) => workerOfKey(key, slot.count) === slot.index;
  let last = 0;
  const add = (n: number) => {
    count.images += n;
    // A report every 1000 images is enough for a progress bar.
    if (count.images - last >= 1000) {
      last = count.images;
      report({ ...count });
    }
  };

  const container = async (abs: string, byHash: boolean) => {
    if (inputKind(abs) === 'tar') {
      count.tarBytes += (await fs.stat(abs).catch(() => undefined))?.size ?? 0;
      uncounted = true;
      return;
    }
    const rows = await parquetRowCount(abs);
    const o = readOptionsOf(inputs, abs);
    if (rows === undefined) return add(1); // becomes one error row naming the file
    if (!byHash || slot.count === 1) return add(rows);
    if (o.keyColumn !== undefined) {
      uncounted = true; // keys are in the file: this worker's share is known only as they are read
      return;
    }
    const namespace = `${o.keyPrefix}${tarStem(abs) ?? path.basename(abs).replace(/\.parquet$/i, '')}`;
    let n = 0;
    for (let row = 0; row < rows; row++) if (mine(`${namespace}/${row}`)) n++;
    add(n);
  };

  for (const p of inputs.paths) {
    if (cancelled()) return;
    const abs = path.resolve(p);
    if (inputKind(p) === 'dir') {
      for await (const item of walkDirectory(p, readOptionsOf(inputs, p).keyPrefix)) {
        if (cancelled()) return;
        if (mine('image' in item ? item.image.key : item.problem.key)) add(1);
      }
    } else if (!owned) await container(abs, true);
    else if (owned.has(abs)) await container(abs, false);
  }
  for (const list of inputs.lists) {
    if (list === '-') {
      uncounted = true;
      continue;
    }
    const prefix = readOptionsOf(inputs, list).keyPrefix;
    for await (const { key, abs } of readListEntries(list)) {
      if (cancelled()) return;
      if (inputKind(abs) !== 'dir') await container(abs, true);
      else if (mine(`${prefix}${key}`)) add(1);
    }
  }
  count.final = !uncounted;
  report({ ...count });
}
