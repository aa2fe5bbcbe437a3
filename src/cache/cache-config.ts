/**
 * cache.json: what a cache was made with, written when the cache is created. Rows made with a
 * different model, preprocessing or storage settings must not be mixed into it; the check here
 * says what differs and the CLI decides (refuse, or clear with --overwrite).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../core/errors.js';
import type { ModelInfo } from '../model/info.js';
import { writeFileAtomic } from '../core/durable-fs.js';
import { CACHE_CONFIG_FILE, ERRORS_FILE, MANIFEST_DIR, MANIFEST_FILE, SHARDS_DIR } from './layout.js';
import type { JsonObject, ShardFormat, TensorDtype } from './schema.js';

export interface CacheIdentity {
  dinofeatVersion: string;
  /** Of model + preprocessing + dinofeat version; computed by the caller. */
  fingerprint: string;
  model: ModelInfo;
  preprocessing: JsonObject;
  format: ShardFormat;
  dtype: TensorDtype;
  registersKept: boolean;
}

export interface CacheConfig extends CacheIdentity {
  createdAt: string;
}

export async function readCacheConfig(dir: string): Promise<CacheConfig | undefined> {
  const file = path.join(dir, CACHE_CONFIG_FILE);
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  try {
    return JSON.parse(text) as CacheConfig;
  } catch {
    throw new UserError(`${file} is not valid JSON; restore it or rerun with --overwrite`);
  }
}

const stable = (v: unknown) => JSON.stringify(v);

/** What differs between the cache and this run, in words; undefined when they match. */
export function identityMismatch(config: CacheIdentity, run: CacheIdentity): string | undefined {
  const diffs: string[] = [];
  if (config.fingerprint !== run.fingerprint) {
    const what = [
      stable(config.model) !== stable(run.model) ? 'model' : undefined,
      stable(config.preprocessing) !== stable(run.preprocessing) ? 'preprocessing' : undefined,
      config.dinofeatVersion !== run.dinofeatVersion ? `dinofeat version (${config.dinofeatVersion} vs ${run.dinofeatVersion})` : undefined,
    ].filter(Boolean);
    diffs.push(`fingerprint ${config.fingerprint} vs ${run.fingerprint}${what.length ? ` (${what.join(', ')} differ)` : ''}`);
  }
  if (config.format !== run.format) diffs.push(`format ${config.format} vs ${run.format}`);
  if (config.dtype !== run.dtype) diffs.push(`dtype ${config.dtype} vs ${run.dtype}`);
  if (config.registersKept !== run.registersKept) {
    diffs.push(`registers ${config.registersKept ? 'kept' : 'dropped'} vs ${run.registersKept ? 'kept' : 'dropped'}`);
  }
  return diffs.length ? diffs.join('; ') : undefined;
}

export async function writeCacheConfig(dir: string, identity: CacheIdentity): Promise<CacheConfig> {
  const config: CacheConfig = { ...identity, createdAt: new Date().toISOString() };
  await fs.mkdir(dir, { recursive: true });
  await writeFileAtomic(path.join(dir, CACHE_CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`);
  return config;
}

/**
 * Deletes the cache's contents (for --overwrite): only the names dinofeat writes, so pointing
 * --out at the wrong directory cannot delete anything else. Locks are left to their holders.
 */
export async function clearCache(dir: string): Promise<void> {
  for (const name of [CACHE_CONFIG_FILE, MANIFEST_FILE, ERRORS_FILE, SHARDS_DIR, MANIFEST_DIR]) {
    await fs.rm(path.join(dir, name), { recursive: true, force: true });
  }
}
