/**
 * The execution providers a cache's live shards were made on, as their metadata records them:
 * extract notes a resume on another device, since providers round differently. Shards made
 * before the device was recorded, and unreadable ones (validate's business), name none.
 */
import path from 'node:path';
import { readShardMeta } from '../shard/shard-reader.js';
import type { CacheState } from './manifest.js';

export async function shardDevices(state: CacheState): Promise<Set<string>> {
  const devices = new Set<string>();
  for (const file of state.shards.keys()) {
    const meta = await readShardMeta(path.join(state.dir, file)).catch(() => undefined);
    if (meta?.device !== undefined) devices.add(meta.device);
  }
  return devices;
}
