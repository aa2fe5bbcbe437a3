/**
 * The cache's crash-safe manifest: the live shard set replayed from every part's journal.
 *
 * A shard counts only once its journal line is on disk. Opening a part (with its lock held)
 * repairs what a crash can leave behind in that part: a torn last journal line is cut off, and
 * shard files the journal does not reference (renamed but never journaled, or replaced but not
 * yet deleted) and *.tmp files are deleted, as are temp files of the summaries whose writer has
 * died. Only the lock holder of a part touches that part's files, so workers sharing a directory
 * never delete each other's shards in flight.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { appendJournal, mentionedFiles, readJournal, replayJournal, type ParsedJournal, type ReplaceRecord, type ShardRecord } from './journal.js';
import { truncateTornLine } from './jsonl.js';
import {
  CACHE_CONFIG_FILE, ERRORS_FILE, JOURNAL_NAME, MANIFEST_DIR, MANIFEST_FILE, SHARDS_DIR, TMP_SUFFIX, checkPartId, journalPath, parseShardName, partErrorsPath, shardFile,
} from './layout.js';
import { HOST_TAG, fsyncDir, parseAtomicTemp } from '../core/durable-fs.js';
import { pidAlive } from './lock.js';
import type { ShardFormat } from '../shard/schema.js';
import type { Origin } from '../source/types.js';

/** Files of the cache root that any part's run rewrites (writeFileAtomic). */
const SUMMARY_FILES = [MANIFEST_FILE, ERRORS_FILE, CACHE_CONFIG_FILE];

export interface ShardEntry extends ShardRecord {
  part: string;
}

export interface KeyEntry {
  /** sha256 of the image file the stored row was extracted from. */
  sha256: string;
  /** The shard holding the row, relative to the cache dir. */
  shard: string;
  /** Where the image's bytes came from (absent for rows of older runs). */
  origin?: Origin;
}

const keyEntry = (sha256: string, shard: string, origin: Origin | undefined): KeyEntry => (origin ? { sha256, shard, origin } : { sha256, shard });

export interface DuplicateKey {
  key: string;
  /** Every live shard holding a row for the key. */
  shards: string[];
}

/** Reads every part's journal in the directory, by part id. */
export async function readAllJournals(dir: string): Promise<Map<string, ParsedJournal>> {
  const names = await fs.readdir(path.join(dir, MANIFEST_DIR)).catch(() => [] as string[]);
  const journals = new Map<string, ParsedJournal>();
  for (const name of names.sort()) {
    const m = JOURNAL_NAME.exec(name);
    if (m) journals.set(m[1]!, await readJournal(path.join(dir, MANIFEST_DIR, name)));
  }
  return journals;
}

/** Live shards across parts, in part then journal order. */
export function liveShards(journals: ReadonlyMap<string, ParsedJournal>): Map<string, ShardEntry> {
  const shards = new Map<string, ShardEntry>();
  for (const [part, journal] of journals) {
    for (const record of replayJournal(journal.records).values()) shards.set(record.file, { ...record, part });
  }
  return shards;
}

/** Keys stored in more than one live shard (overlapping workers, or a crash between write and cleanup). */
export function findDuplicates(journals: ReadonlyMap<string, ParsedJournal>): DuplicateKey[] {
  return indexKeys(liveShards(journals).values()).duplicates;
}

function indexKeys(shards: Iterable<ShardRecord>): { keyToEntry: Map<string, KeyEntry>; duplicates: DuplicateKey[] } {
  const keyToEntry = new Map<string, KeyEntry>();
  const seen = new Map<string, string[]>();
  for (const shard of shards) {
    for (const [key, sha256, origin] of shard.keys) {
      const where = seen.get(key);
      if (where) where.push(shard.file);
      else seen.set(key, [shard.file]);
      keyToEntry.set(key, keyEntry(sha256, shard.file, origin));
    }
  }
  const duplicates = [...seen].filter(([, s]) => s.length > 1).map(([key, s]) => ({ key, shards: s }));
  return { keyToEntry, duplicates };
}

/**
 * Repairs one part after a crash: cuts a torn journal line and deletes the part's unreferenced
 * shard files and temp files. The caller must hold the part's lock. Returns what it deleted.
 */
export async function repairPart(dir: string, partId: string, journal: ParsedJournal): Promise<string[]> {
  if (journal.torn) await truncateTornLine(journalPath(dir, partId), journal.validBytes);
  const live = new Set(replayJournal(journal.records).keys());
  const removed: string[] = [];
  const shardsDir = path.join(dir, SHARDS_DIR);
  for (const name of await fs.readdir(shardsDir).catch(() => [] as string[])) {
    const base = name.endsWith(TMP_SUFFIX) ? name.slice(0, -TMP_SUFFIX.length) : name;
    if (parseShardName(base)?.partId !== partId) continue;
    const file = `${SHARDS_DIR}/${name}`;
    if (name === base && live.has(file)) continue;
    await fs.rm(path.join(dir, file), { force: true });
    removed.push(file);
  }
  const errorsFile = partErrorsPath(dir, partId);
  for (const name of await fs.readdir(path.dirname(errorsFile)).catch(() => [] as string[])) {
    if (parseAtomicTemp(name, errorsFile)) await fs.rm(path.join(path.dirname(errorsFile), name), { force: true });
  }
  // The summaries are rewritten by the runs of every part: only a temp whose writer is gone from this host is a leftover.
  for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
    const writer = SUMMARY_FILES.map((file) => parseAtomicTemp(name, path.join(dir, file))).find((w) => w !== undefined);
    if (writer && writer.host === HOST_TAG && !pidAlive(writer.pid)) await fs.rm(path.join(dir, name), { force: true });
  }
  if (removed.length) await fsyncDir(shardsDir);
  return removed;
}

export class CacheState {
  /** Highest sequence number handed out per part, including shards still being written. */
  private readonly allocated = new Map<string, number>();

  private constructor(
    readonly dir: string,
    /** Live shards by file (relative to the cache dir). */
    readonly shards: Map<string, ShardEntry>,
    /** Every stored key: the image sha256 it was extracted from and its shard. */
    readonly keyToEntry: Map<string, KeyEntry>,
    /** Keys held by more than one live shard, as found when opened. */
    readonly duplicates: DuplicateKey[],
    /** Journaled shards whose file is gone (deleted by hand); their keys are not in keyToEntry. */
    readonly missing: string[],
    /** Orphan and temp files deleted when the part was opened. */
    readonly removed: string[],
    private readonly journals: Map<string, ParsedJournal>,
  ) {}

  /** Opens the cache for writing part `partId`; the caller holds that part's lock. */
  static async open(dir: string, partId: string): Promise<CacheState> {
    checkPartId(partId);
    const journals = await readAllJournals(dir);
    const own = journals.get(partId) ?? { records: [], validBytes: 0, torn: false };
    const removed = await repairPart(dir, partId, own);
    journals.set(partId, { ...own, torn: false });
    return CacheState.build(dir, journals, removed);
  }

  /** A read-only view (merge, validate, inspect): repairs nothing, deletes nothing. */
  static async read(dir: string): Promise<CacheState> {
    return CacheState.build(dir, await readAllJournals(dir), []);
  }

  private static async build(dir: string, journals: Map<string, ParsedJournal>, removed: string[]): Promise<CacheState> {
    const shards = liveShards(journals);
    const missing: string[] = [];
    for (const file of shards.keys()) {
      if (!(await fs.stat(path.join(dir, file)).catch(() => undefined))) missing.push(file);
    }
    for (const file of missing) shards.delete(file);
    const { keyToEntry, duplicates } = indexKeys(shards.values());
    return new CacheState(dir, shards, keyToEntry, duplicates, missing, removed, journals);
  }

  /** Part ids that have a journal. */
  get parts(): string[] {
    return [...this.journals.keys()];
  }

  /** A shard file name in part `partId` that neither a journal nor this process has used yet. */
  nextShardFile(partId: string, format: ShardFormat): string {
    const records = this.journals.get(partId)?.records ?? [];
    let seq = this.allocated.get(partId) ?? 0;
    for (const file of mentionedFiles(records)) {
      const name = parseShardName(path.posix.basename(file));
      if (name && name.partId === partId) seq = Math.max(seq, name.seq);
    }
    this.allocated.set(partId, seq + 1);
    return shardFile(partId, seq + 1, format);
  }

  /** Journals a shard whose file is already durably in place. */
  async commit(partId: string, record: ShardRecord): Promise<void> {
    await this.append(partId, record);
    this.shards.set(record.file, { ...record, part: partId });
    for (const [key, sha256, origin] of record.keys) this.keyToEntry.set(key, keyEntry(sha256, record.file, origin));
  }

  /** Journals that `record.replace` was rewritten as `record.by` (already in place). */
  async replace(partId: string, record: ReplaceRecord): Promise<void> {
    await this.append(partId, record);
    const old = this.shards.get(record.replace);
    this.shards.delete(record.replace);
    for (const [key] of old?.keys ?? []) {
      if (this.keyToEntry.get(key)?.shard === record.replace) this.keyToEntry.delete(key);
    }
    if (record.by) {
      this.shards.set(record.by.file, { ...record.by, part: partId });
      for (const [key, sha256, origin] of record.by.keys) this.keyToEntry.set(key, keyEntry(sha256, record.by.file, origin));
    }
  }

  /** Re-reads one part's journal (after taking its lock, to see what its last holder did). */
  async reloadPart(partId: string): Promise<ParsedJournal> {
    const journal = await readJournal(journalPath(this.dir, partId));
    this.journals.set(partId, journal);
    for (const [file, entry] of this.shards) if (entry.part === partId) this.shards.delete(file);
    for (const record of replayJournal(journal.records).values()) this.shards.set(record.file, { ...record, part: partId });
    const { keyToEntry } = indexKeys(this.shards.values());
    this.keyToEntry.clear();
    for (const [k, v] of keyToEntry) this.keyToEntry.set(k, v);
    return journal;
  }

  private async append(partId: string, record: ShardRecord | ReplaceRecord): Promise<void> {
    await appendJournal(journalPath(this.dir, partId), record);
    const journal = this.journals.get(partId) ?? { records: [], validBytes: 0, torn: false };
    journal.records.push(record);
    this.journals.set(partId, journal);
  }
}
