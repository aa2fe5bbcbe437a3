/**
 * What a cache is: the one record (model, preprocessing, stored form) that decides the numbers in
 * its shards, written to cache.json when the cache is created. The fingerprint recipe lives here,
 * beside the check that compares two identities, so validate recomputes it from cache.json exactly
 * as extract computed it; every shard's metadata is derived from the same record.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { readTextIfExists, writeFileAtomic } from '../core/durable-fs.js';
import { UserError } from '../core/errors.js';
import { DINOFEAT_VERSION } from '../core/version.js';
import type { ModelInfo } from '../model/info.js';
import type { JsonObject, ShardFormat, ShardMeta, TensorDtype } from '../shard/schema.js';
import { CACHE_CONFIG_FILE, ERRORS_FILE, MANIFEST_DIR, MANIFEST_FILE, SHARDS_DIR } from './layout.js';

/** How the features are stored: chosen when the cache is made, fixed for its life. */
export interface StoredForm {
  format: ShardFormat;
  dtype: TensorDtype;
  /** Whether the register tokens have a column of their own. */
  registersKept: boolean;
}

export interface CacheIdentity extends StoredForm {
  dinofeatVersion: string;
  /** fingerprintOf(this): what shapes the numbers, hashed. */
  fingerprint: string;
  /** The model, its weights' sha256 always filled in (from the file itself for a foreign export). */
  model: ModelInfo;
  preprocessing: JsonObject;
}

export interface CacheConfig extends CacheIdentity {
  createdAt: string;
  /**
   * New each time the cache is created or cleared, so the workers of one run tell "cleared for
   * us" apart from "made by an earlier run". Absent in caches made before it existed.
   */
  generation?: string;
}

/** What the fingerprint covers; a change to any of it makes other features. */
type Fingerprinted = Pick<CacheIdentity, 'dinofeatVersion' | 'model' | 'preprocessing'>;

/** The fingerprint recipe: extract writes it, validate recomputes it from cache.json. */
export function fingerprintOf(what: Fingerprinted): string {
  const hashed = { dinofeat: what.dinofeatVersion, model: { ...what.model, weights: what.model.weightsSha256 }, preprocessing: what.preprocessing };
  return createHash('sha256').update(JSON.stringify(hashed)).digest('hex').slice(0, 16);
}

export interface IdentityParts {
  /** With its weights' hash (model/weights-hash.ts). */
  model: ModelInfo & { weightsSha256: string };
  preprocessing: JsonObject;
  stored: StoredForm;
}

/** The identity of a cache made by this dinofeat with this model, preprocessing and stored form. */
export function cacheIdentity(p: IdentityParts): CacheIdentity {
  const base = { dinofeatVersion: DINOFEAT_VERSION, model: p.model, preprocessing: p.preprocessing };
  return { ...base, fingerprint: fingerprintOf(base), ...p.stored };
}

/** What every shard of the cache records about how it was made. */
export function shardMetaOf(identity: CacheIdentity): ShardMeta {
  return {
    dinofeatVersion: identity.dinofeatVersion,
    dtype: identity.dtype,
    hiddenSize: identity.model.hiddenSize,
    numRegisters: identity.model.numRegisters,
    registersKept: identity.registersKept,
    model: identity.model,
    preprocessing: identity.preprocessing,
    fingerprint: identity.fingerprint,
  };
}

export async function readCacheConfig(dir: string): Promise<CacheConfig | undefined> {
  const file = path.join(dir, CACHE_CONFIG_FILE);
  const text = await readTextIfExists(file);
  if (text === undefined) return undefined;
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
  const config: CacheConfig = { ...identity, createdAt: new Date().toISOString(), generation: randomBytes(8).toString('hex') };
  await fs.mkdir(dir, { recursive: true });
  await writeFileAtomic(path.join(dir, CACHE_CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`);
  return config;
}

/**
 * Deletes the cache's contents (for --overwrite, under the cache-wide lock): only the names
 * dinofeat writes, so pointing --out at the wrong directory cannot delete anything else. Locks are
 * left to their holders. cache.json goes last: a clear cut short still names the old identity, so
 * the next run with --overwrite clears again rather than adopting the old rows.
 */
export async function clearCache(dir: string): Promise<void> {
  for (const name of [MANIFEST_FILE, ERRORS_FILE, MANIFEST_DIR, SHARDS_DIR, CACHE_CONFIG_FILE]) {
    await fs.rm(path.join(dir, name), { recursive: true, force: true });
  }
}
