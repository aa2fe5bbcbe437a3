/**
 * validate's cache check: the journaled shards exist with the recorded size, sha256, row count and
 * keys; their schema and metadata are dinofeat's and agree with cache.json; every row passes
 * row-checks.ts; no key is stored twice; CLS vectors are not all the same; manifest.json agrees
 * with the journals. Files in shards/ that no journal counts (temp files, crashed writes) are
 * reported as notes, never counted. Rows are streamed a row group at a time.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { LOCKS_DIR, MANIFEST_FILE, SHARDS_DIR, TMP_SUFFIX, parseShardName } from '../cache/layout.js';
import { featureFormatChange, fingerprintOf, flipText } from '../cache/identity.js';
import { liveShards, readAllJournals, type ShardEntry } from '../cache/manifest.js';
import type { ManifestSummary } from '../cache/manifest-summary.js';
import type { ReadTarget, ShardTarget } from '../cache/open-read-only.js';
import { openParquetShard } from '../shard/parquet-read.js';
import { parquetSchema } from '../shard/parquet-shard.js';
import { bucketLabel, columnsOfMeta, rowShapeOf, type ShardMeta } from '../shard/schema.js';
import { iterateShardRows, readShardInfo, type ShardInfo } from '../shard/shard-reader.js';
import { sha256File } from '../core/file-hash.js';
import { NormStats, formatNorms, l2norm, type NormSummary } from '../core/norm-stats.js';
import { abbreviate, plural } from '../core/text.js';
import { parsePreprocessing } from '../image/preprocessing-record.js';
import { CheckRecorder, type CheckResult } from './check.js';
import { checkRow } from './row-checks.js';

export interface CacheCheckOutput {
  result: CheckResult;
  /** Rows per model input size ("<w>x<h>") over the shards read. */
  rowsPerBucket: Record<string, number>;
  /** Metadata of each readable shard, by shard name. */
  shardMeta: Map<string, ShardMeta>;
  /** What the rows should have been made with: cache.json, else the first readable shard's metadata. */
  identity?: Identity;
  rows: number;
  clsNorms?: NormSummary;
}

type Identity = Pick<ShardMeta, 'fingerprint' | 'model' | 'preprocessing' | 'dtype' | 'registersKept' | 'flip'> & { format?: ShardInfo['format'] };

const short = (sha: string) => sha.slice(0, 12);
const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** Equal up to rounding: a model that ignores its input still rounds differently per bucket size. */
function sameVector(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  let scale = 0;
  for (let i = 0; i < a.length; i++) scale = Math.max(scale, Math.abs(a[i]!));
  for (let i = 0; i < a.length; i++) if (Math.abs(a[i]! - b[i]!) > 1e-5 * scale) return false;
  return true;
}

/** What the user runs to have rows extracted again once a shard is gone. */
function reextract(t: ReadTarget): string {
  return `dinofeat extract <images> --out ${t.dir ?? '<cache>'} with the same flags as before`;
}

export async function checkCache(t: ReadTarget): Promise<CacheCheckOutput> {
  const rec = new CheckRecorder('cache');
  const dropShard = t.dir
    ? `delete the shard file and run ${reextract(t)}: the rows of a missing shard are extracted again`
    : 'extract its images again with dinofeat extract';
  if (t.journalError) {
    rec.fail('journal', t.dir ?? '', t.journalError);
    rec.fix('journal', `restore the journal from a backup, or rebuild the cache: ${reextract(t)} --overwrite`);
  }
  const formatChange = t.config && featureFormatChange(t.config);
  if (t.dir && !t.config) {
    rec.fail('config', path.join(t.dir, 'cache.json'), 'missing or not valid JSON: the cache has no identity (model, preprocessing, dtype)');
    rec.fix('config', `rebuild the cache: ${reextract(t)} --overwrite`);
  } else if (formatChange) {
    rec.fail('config', path.join(t.dir!, 'cache.json'), `the cache ${formatChange}`);
    rec.fix('config', `rebuild the cache: ${reextract(t)} --overwrite`);
  } else if (t.config && fingerprintOf(t.config) !== t.config.fingerprint) {
    rec.fail('config', path.join(t.dir!, 'cache.json'), `fingerprint ${t.config.fingerprint} is not that of the model and preprocessing it records (${fingerprintOf(t.config)}): the file was edited or comes from another cache`);
    rec.fix('config', `restore cache.json, or rebuild the cache: ${reextract(t)} --overwrite`);
  }
  if (t.kind === 'cache' && t.dir && t.state) await checkCacheFiles(t, t.dir, rec);
  if (t.kind === 'shard' && t.dir && !t.shards[0]!.record) {
    rec.note(`${t.shards[0]!.name} is in cache ${t.dir} but no journal counts it (a crashed or replaced write): readers of the cache do not see it`);
  }

  let identity: Identity | undefined = t.config;
  const rowsPerBucket: Record<string, number> = {};
  const shardMeta = new Map<string, ShardMeta>();
  let rows = 0;
  const seen = new Map<string, string>();
  const norms = new NormStats();
  let firstCls: Float32Array | undefined;
  let clsVaries = false;

  for (const shard of t.shards) {
    const info = await checkShardFile(shard, rec, dropShard);
    if (!info) continue;
    shardMeta.set(shard.name, info.meta);
    identity ??= { ...info.meta, format: info.format };
    checkShardMeta(shard, info, identity, rec, dropShard);
    const preprocessing = parsePreprocessing(info.meta.preprocessing);
    if ('problem' in preprocessing) rec.note(`${shard.name}: ${preprocessing.problem}; bucket and crop boxes were not derived again`);
    const expectations = {
      ...rowShapeOf(info.meta),
      patchSize: info.meta.model.patchSize,
      preprocessing: 'value' in preprocessing ? preprocessing.value : undefined,
    };
    let index = 0;
    try {
      for await (const batch of iterateShardRows(shard.path)) {
        for (const row of batch) {
          const where = `${shard.name} row ${index} (${row.key})`;
          for (const p of checkRow(row, expectations)) rec.fail(p.kind, where, p.detail);
          const journaled = shard.record?.keys[index];
          if (shard.record && (!journaled || journaled[0] !== row.key || journaled[1] !== row.sha256)) {
            rec.fail('journal-keys', where, journaled ? `the journal lists ${journaled[0]} (sha256 ${short(journaled[1])}) here, the shard holds ${row.key} (sha256 ${short(row.sha256)})` : 'the journal lists fewer rows');
          }
          const other = seen.get(row.key);
          if (other !== undefined) rec.fail('duplicate-key', where, `key also stored in ${other}`);
          else seen.set(row.key, shard.name);
          rowsPerBucket[bucketLabel(row)] = (rowsPerBucket[bucketLabel(row)] ?? 0) + 1;
          if (row.cls.length === info.meta.hiddenSize) {
            norms.add(l2norm(row.cls));
            if (!firstCls) firstCls = row.cls;
            else if (!clsVaries && !sameVector(firstCls, row.cls)) clsVaries = true;
          }
          index++;
        }
      }
    } catch (e) {
      rec.fail('unreadable', `${shard.name} row ${index}`, `cannot read rows: ${(e as Error).message.split('\n')[0]}`);
      rec.fix('unreadable', dropShard);
      rows += index;
      continue;
    }
    rows += index;
    if (index !== info.rows) rec.fail('row-count', shard.name, `${index} rows read, the shard's footer says ${info.rows}`);
  }

  if (rows >= 2 && firstCls && !clsVaries) {
    rec.fail('cls-degenerate', 'all rows', `every one of the ${rows} rows has the same CLS vector: the model ignored its input`);
  }
  addFixes(rec, t, dropShard);
  const clsNorms = norms.summary();
  rec.info(`${plural(t.shards.length, 'shard')}, ${plural(rows, 'row')}, ${plural(Object.keys(rowsPerBucket).length, 'bucket')}; CLS norm ${formatNorms(clsNorms)}`);
  return { result: rec.result(), rowsPerBucket, shardMeta, identity, rows, clsNorms };
}

function addFixes(rec: CheckRecorder, t: ReadTarget, dropShard: string): void {
  const rowFix = `${dropShard}; if it recurs, check the model (dinofeat validate --model M --recompute N)`;
  for (const kind of ['patch-count', 'vector-length', 'grid', 'bucket', 'crop', 'provenance', 'cls-degenerate', 'row-count', 'journal-keys']) rec.fix(kind, rowFix);
  rec.fix('non-finite', `${dropShard}; if NaN/Inf come back, the model overflows (an fp16 model?): extract with an fp32 model`);
  rec.fix('duplicate-key', `run ${reextract(t)}: it drops every copy of a key stored twice and extracts the image again`);
}

/** Missing shards, stray files in shards/, manifest.json against the journals, held locks. */
async function checkCacheFiles(t: ReadTarget, dir: string, rec: CheckRecorder): Promise<void> {
  const state = t.state!;
  if (state.missing.length) {
    const journaled = liveShards(await readAllJournals(dir));
    for (const file of state.missing) {
      const lost = (journaled.get(file)?.keys ?? []).filter(([key]) => !state.keyToEntry.has(key));
      if (lost.length) {
        rec.fail('missing-shard', file, `journaled with ${journaled.get(file)?.rows} rows but the file is gone; ${lost.length} of its images are not stored anywhere else (e.g. ${lost[0]![0]})`);
      } else {
        rec.note(`${file} is journaled but gone; all its images are stored in other shards (a stale journal entry, harmless)`);
      }
    }
    rec.fix('missing-shard', `run ${reextract(t)}: the images of a missing shard are extracted again`);
  }

  const live = new Set(state.shards.keys());
  const stray: string[] = [];
  for (const name of (await fs.readdir(path.join(dir, SHARDS_DIR)).catch(() => [] as string[])).sort()) {
    const file = `${SHARDS_DIR}/${name}`;
    if (live.has(file) || state.missing.includes(file)) continue;
    const base = name.endsWith(TMP_SUFFIX) ? name.slice(0, -TMP_SUFFIX.length) : name;
    stray.push(`${file} (${name !== base ? 'temp file of a write in progress or crashed' : parseShardName(base) ? 'not journaled: a crashed or replaced write' : 'not a shard name'})`);
  }
  if (stray.length) rec.note(`not counted, no journal lists them (the next extract of their part deletes dinofeat's own leftovers): ${abbreviate(stray, 10)}`);

  const locks = await fs.readdir(path.join(dir, LOCKS_DIR)).catch(() => [] as string[]);
  if (locks.length) rec.note(`lock files present (${locks.join(', ')}): if a worker is still writing, results may change`);

  await checkManifestJson(dir, state.shards, rec);
}

async function checkManifestJson(dir: string, shards: ReadonlyMap<string, ShardEntry>, rec: CheckRecorder): Promise<void> {
  const file = path.join(dir, MANIFEST_FILE);
  let manifest: ManifestSummary;
  try {
    manifest = JSON.parse(await fs.readFile(file, 'utf8')) as ManifestSummary;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') rec.note(`no ${MANIFEST_FILE} yet (written at the end of a run; dinofeat merge ${dir} writes it)`);
    else rec.fail('manifest-json', file, 'not valid JSON');
    rec.fix('manifest-json', `dinofeat merge ${dir}`);
    return;
  }
  const listed = new Map((manifest.shards ?? []).map((s) => [s.file, s]));
  const differ: string[] = [];
  for (const [file, s] of shards) {
    const m = listed.get(file);
    if (!m) differ.push(`${file} not listed`);
    else if (m.sha256 !== s.sha256 || m.rows !== s.rows) differ.push(`${file} listed with other rows/sha256`);
  }
  for (const file of listed.keys()) if (!shards.has(file)) differ.push(`${file} listed but not journaled`);
  if (differ.length) {
    rec.fail('manifest-json', file, `out of date with the journals: ${differ.slice(0, 5).join('; ')}${differ.length > 5 ? `; ${differ.length - 5} more` : ''}`);
    rec.fix('manifest-json', `dinofeat merge ${dir} (rebuilds it from the journals)`);
  }
}

/** The file against its journal record, then its footer / schema; undefined when unreadable. */
async function checkShardFile(shard: ShardTarget, rec: CheckRecorder, dropShard: string): Promise<ShardInfo | undefined> {
  const r = shard.record;
  if (r) {
    const size = (await fs.stat(shard.path)).size;
    if (size !== r.bytes) {
      rec.fail('checksum', shard.name, `${size} bytes on disk, the journal recorded ${r.bytes}${size < r.bytes ? ' (truncated)' : ''}`);
    } else {
      const sha = await sha256File(shard.path);
      if (sha !== r.sha256) rec.fail('checksum', shard.name, `sha256 ${short(sha)}… differs from the journaled ${short(r.sha256)}…: the file changed after it was written (disk or copy corruption)`);
    }
    rec.fix('checksum', dropShard);
  }
  let info: ShardInfo;
  try {
    info = await readShardInfo(shard.path);
  } catch (e) {
    rec.fail('unreadable', shard.name, `not a readable dinofeat shard: ${(e as Error).message.split('\n')[0]}`);
    rec.fix('unreadable', dropShard);
    return undefined;
  }
  if (r && info.rows !== r.rows) rec.fail('row-count', shard.name, `${info.rows} rows in the file, the journal recorded ${r.rows}`);
  const expected = columnsOfMeta(info.meta);
  if (!same(info.columns, expected)) {
    rec.fail('schema', shard.name, `columns [${info.columns.join(', ')}], expected [${expected.join(', ')}]`);
  } else if (info.format === 'parquet') {
    const { metadata } = await openParquetShard(shard.path);
    const pick = ({ type, repetition_type, converted_type, num_children }: { type?: string; repetition_type?: string; converted_type?: string; num_children?: number }) =>
      ({ type, repetition_type, converted_type, num_children });
    const want = parquetSchema(expected);
    const bad = want.findIndex((w, k) => k > 0 && (metadata.schema[k]?.name !== w.name || !same(pick(metadata.schema[k]!), pick(w))));
    if (bad > 0 || metadata.schema.length !== want.length) {
      rec.fail('schema', shard.name, `Parquet column ${want[bad]?.name ?? metadata.schema[want.length]?.name} has another physical type than dinofeat writes`);
    }
  }
  rec.fix('schema', dropShard);
  return info;
}

/** The shard's metadata against the cache identity and itself. */
function checkShardMeta(shard: ShardTarget, info: ShardInfo, identity: Identity, rec: CheckRecorder, dropShard: string): void {
  const m = info.meta;
  if (m.fingerprint !== identity.fingerprint) {
    const what = [!same(m.model, identity.model) ? 'model' : '', !same(m.preprocessing, identity.preprocessing) ? 'preprocessing' : ''].filter(Boolean);
    rec.fail('fingerprint', shard.name, `made with fingerprint ${m.fingerprint}${what.length ? ` (other ${what.join(' and ')})` : ''}, the cache with ${identity.fingerprint}: its ${info.rows} rows are stale`);
    rec.fix('fingerprint', dropShard);
  } else if (!same(m.model, identity.model) || !same(m.preprocessing, identity.preprocessing)) {
    rec.fail('metadata', shard.name, 'same fingerprint as the cache but another model or preprocessing record');
  }
  const formatChange = featureFormatChange(m);
  if (formatChange) {
    rec.fail('metadata', shard.name, `the shard ${formatChange}`);
  } else if (fingerprintOf(m) !== m.fingerprint) {
    rec.fail('metadata', shard.name, `fingerprint ${m.fingerprint} is not that of the model and preprocessing its metadata records (${fingerprintOf(m)})`);
  }
  const differs: string[] = [];
  if (m.dtype !== identity.dtype) differs.push(`dtype ${m.dtype} vs the cache's ${identity.dtype}`);
  if (m.registersKept !== identity.registersKept) differs.push(`registers ${m.registersKept ? 'kept' : 'dropped'} vs the cache's ${identity.registersKept ? 'kept' : 'dropped'}`);
  if (Boolean(m.flip) !== Boolean(identity.flip)) differs.push(`${flipText(m.flip)} vs the cache's ${flipText(identity.flip)}`);
  if (identity.format && info.format !== identity.format) differs.push(`format ${info.format} vs the cache's ${identity.format}`);
  if (m.hiddenSize !== m.model.hiddenSize) differs.push(`hidden size ${m.hiddenSize} vs its model's ${m.model.hiddenSize}`);
  if (m.numRegisters !== m.model.numRegisters) differs.push(`${m.numRegisters} registers vs its model's ${m.model.numRegisters}`);
  if (differs.length) rec.fail('metadata', shard.name, differs.join('; '));
  rec.fix('metadata', dropShard);
}

