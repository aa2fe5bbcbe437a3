/**
 * The execution providers a cache's parts last ran on, as the metadata of each part's newest live
 * shard records them: extract notes a resume on another device, since providers round differently.
 * One footer per part, not per shard, so a large cache costs nothing to ask (inspect reads every
 * shard and lists all devices). Shards made before the device was recorded, and unreadable ones
 * (validate's business), name none.
 */
import path from 'node:path';
import { readShardMeta } from '../shard/shard-reader.js';
import type { CacheState } from './manifest.js';

export async function lastDevices(state: CacheState): Promise<Set<string>> {
  const newest = new Map<string, string>();
  for (const [file, entry] of state.shards) newest.set(entry.part, file); // journal order: the last is the newest
  const devices = new Set<string>();
  for (const file of newest.values()) {
    const meta = await readShardMeta(path.join(state.dir, file)).catch(() => undefined);
    if (meta?.device !== undefined) devices.add(meta.device);
  }
  return devices;
}
