/**
 * What a cache is: the one record (model, preprocessing, stored form, feature format) that decides
 * the numbers in its shards, written to cache.json when the cache is created, plus what is only
 * recorded (dinofeat's version, the execution provider). The fingerprint recipe lives here, beside
 * the check that compares two identities, so validate recomputes it from cache.json exactly as
 * extract computed it; every shard's metadata is derived from the same record.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { readTextIfExists, writeFileAtomic } from '../core/durable-fs.js';
import { UserError } from '../core/errors.js';
import { DINOFEAT_VERSION } from '../core/version.js';
import type { ModelInfo } from '../model/info.js';
import type { JsonObject, ShardFormat, ShardMeta, TensorDtype } from '../shard/schema.js';
import { FEATURE_FORMAT_VERSION } from './feature-format.js';
import { CACHE_CONFIG_FILE, ERRORS_FILE, MANIFEST_DIR, MANIFEST_FILE, SHARDS_DIR } from './layout.js';

/** How the features are stored: chosen when the cache is made, fixed for its life. */
export interface StoredForm {
  format: ShardFormat;
  dtype: TensorDtype;
  /** Whether the register tokens have a column of their own. */
  registersKept: boolean;
  /**
   * --flip: every row also holds the features of the horizontally flipped image. Left out of the
   * identity when off, so cache.json of a cache without them reads as before.
   */
  flip?: boolean;
}

export interface CacheIdentity extends StoredForm {
  /** FEATURE_FORMAT_VERSION of the dinofeat that made the cache (fingerprinted). */
  featureFormat: number;
  /** Recorded, not fingerprinted: a release with the same feature format reads the cache as its own. */
  dinofeatVersion: string;
  /** fingerprintOf(this): what shapes the numbers, hashed. */
  fingerprint: string;
  /** The model, its weights' sha256 always filled in (from the file itself for a foreign export). */
  model: ModelInfo;
  preprocessing: JsonObject;
  /**
   * The execution provider (--device) of this run: recorded in every shard it writes (cache.json
   * keeps the creating run's), not fingerprinted: providers compute the same graph, rounding apart.
   */
  device: string;
}

/** cache.json as read: one made before feature formats were versioned lacks featureFormat and device. */
export interface CacheConfig extends Omit<CacheIdentity, 'featureFormat' | 'device'> {
  featureFormat?: number;
  device?: string;
  createdAt: string;
  /**
   * New each time the cache is created or cleared, so the workers of one run tell "cleared for
   * us" apart from "made by an earlier run". Absent in caches made before it existed.
   */
  generation?: string;
}

/**
 * The model fields that decide the numbers, besides the weights: the graph (family, precision,
 * token layout, patch size, registers, hidden size), what the pixels are normalised and resized
 * with, and the intermediate layers stored beside the last. Not sourceRepo: a name, the weights'
 * hash says which weights they are. `layers` is absent for a model without them, and an absent
 * field drops out of the hashed JSON, so such caches keep the fingerprint they always had.
 */
const MODEL_FIELDS = [
  'family', 'precision', 'tokenLayout', 'patchSize', 'numRegisters', 'hiddenSize', 'imageMean', 'imageStd', 'resample', 'weightsSha256', 'layers',
] as const satisfies ReadonlyArray<keyof ModelInfo>;

/** The part of the model record the fingerprint covers. */
function fingerprintedModel(model: ModelInfo): Partial<ModelInfo> {
  return Object.fromEntries(MODEL_FIELDS.map((k) => [k, model[k]]));
}

/**
 * What the fingerprint covers; a change to any of it makes other features. Not dinofeat's version
 * (FEATURE_FORMAT_VERSION stands for what a release changes) and not the device.
 */
type Fingerprinted = { featureFormat?: number } & Pick<CacheIdentity, 'model' | 'preprocessing' | 'dtype'>;

/** The fingerprint recipe: extract writes it, validate recomputes it from cache.json and each shard. */
export function fingerprintOf(what: Fingerprinted): string {
  const hashed = {
    featureFormat: what.featureFormat ?? null,
    model: fingerprintedModel(what.model),
    preprocessing: what.preprocessing,
    dtype: what.dtype,
  };
  return createHash('sha256').update(JSON.stringify(hashed)).digest('hex').slice(0, 16);
}

export interface IdentityParts {
  /** With its weights' hash (model/weights-hash.ts). */
  model: ModelInfo & { weightsSha256: string };
  preprocessing: JsonObject;
  stored: StoredForm;
  device: string;
}

/** The identity of a cache made by this dinofeat with this model, preprocessing and stored form. */
export function cacheIdentity(p: IdentityParts): CacheIdentity {
  const base = { featureFormat: FEATURE_FORMAT_VERSION, model: p.model, preprocessing: p.preprocessing, dtype: p.stored.dtype };
  const { flip, ...stored } = p.stored;
  return { ...stored, ...(flip ? { flip } : {}), ...base, dinofeatVersion: DINOFEAT_VERSION, fingerprint: fingerprintOf(base), device: p.device };
}

/** What a flip setting reads as in words (identity and shard comparisons). */
export const flipText = (flip: boolean | undefined) => (flip ? 'flipped copies kept' : 'no flipped copies');

/** What every shard of the cache records about how it was made. */
export function shardMetaOf(identity: CacheIdentity): ShardMeta {
  return {
    featureFormat: identity.featureFormat,
    device: identity.device,
    dinofeatVersion: identity.dinofeatVersion,
    dtype: identity.dtype,
    hiddenSize: identity.model.hiddenSize,
    numRegisters: identity.model.numRegisters,
    registersKept: identity.registersKept,
    ...(identity.flip ? { flip: true } : {}),
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
export function identityMismatch(config: CacheConfig | CacheIdentity, run: CacheIdentity): string | undefined {
  const diffs: string[] = [];
  // The feature format is fingerprinted; compared as well so a hand-edited cache.json cannot hide it.
  if (config.fingerprint !== run.fingerprint || config.featureFormat !== run.featureFormat) {
    const what = [
      config.featureFormat !== run.featureFormat ? `feature format ${config.featureFormat ?? 'unversioned'} vs ${run.featureFormat}` : undefined,
      stable(fingerprintedModel(config.model)) !== stable(fingerprintedModel(run.model)) ? 'model' : undefined,
      stable(config.preprocessing) !== stable(run.preprocessing) ? 'preprocessing' : undefined,
      config.dtype !== run.dtype ? `dtype ${config.dtype} vs ${run.dtype}` : undefined,
    ].filter(Boolean);
    diffs.push(`fingerprint ${config.fingerprint} vs ${run.fingerprint}${what.length ? ` (${what.join(', ')} differ)` : ''}`);
  }
  if (config.format !== run.format) diffs.push(`format ${config.format} vs ${run.format}`);
  if (config.registersKept !== run.registersKept) {
    diffs.push(`registers ${config.registersKept ? 'kept' : 'dropped'} vs ${run.registersKept ? 'kept' : 'dropped'}`);
  }
  if (Boolean(config.flip) !== Boolean(run.flip)) diffs.push(`${flipText(config.flip)} vs ${flipText(run.flip)}`);
  return diffs.length ? diffs.join('; ') : undefined;
}

/**
 * What changed when a cache's (or a shard's) features are of another format than this dinofeat
 * computes, in words; undefined when they are of this one. Caches made before formats were
 * versioned count as another: their fingerprint hashed dinofeat's release, not this recipe.
 */
export function featureFormatChange(config: Pick<CacheConfig, 'featureFormat' | 'dinofeatVersion'>): string | undefined {
  const format = config.featureFormat;
  if (format === FEATURE_FORMAT_VERSION) return undefined;
  if (format === undefined) {
    return `was made by dinofeat ${config.dinofeatVersion}, before feature formats were versioned (its fingerprint covers that release), so its features must be extracted again once`;
  }
  const newer = format > FEATURE_FORMAT_VERSION ? `, newer than this dinofeat's ${FEATURE_FORMAT_VERSION} (or upgrade dinofeat)` : `; this dinofeat computes format ${FEATURE_FORMAT_VERSION}, whose features differ`;
  return `holds features of format ${format} (dinofeat ${config.dinofeatVersion})${newer}`;
}

/**
 * The one line that refuses a run into a cache of another identity. A cache of another feature
 * format gets its own: nothing the user changed differs, dinofeat's features did.
 */
export function mismatchRefusal(dir: string, config: CacheConfig, mismatch: string): string {
  const changed = featureFormatChange(config);
  if (changed) return `cache ${dir} ${changed}: rerun with --overwrite to extract it again, or use another --out`;
  return `cache ${dir} was made with other settings (${mismatch}); use another --out, or --overwrite to clear it`;
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
