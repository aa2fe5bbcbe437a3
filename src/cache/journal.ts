/**
 * A part's manifest journal (manifest/part-<P>.jsonl): one line per committed shard, one per
 * shard rewritten without some rows. Appended and fsynced before a shard counts as committed;
 * only the holder of part P's lock writes P's journal. Replaying all journals gives the live
 * shard set; nothing else is trusted.
 */
import { appendJsonLine, readJsonLines, type ParsedLines } from './jsonl.js';
import type { ShardFormat } from '../shard/schema.js';
import type { Origin } from '../source/types.js';

/** A committed shard, as the journal records it. */
export interface ShardRecord {
  /** Relative to the cache dir, e.g. "shards/part-0-00003.parquet". */
  file: string;
  format: ShardFormat;
  rows: number;
  bytes: number;
  /** Of the shard file. */
  sha256: string;
  /**
   * [key, sha256 of the image bytes, where they came from] for every row, in row order. Rows of
   * older runs have no origin.
   */
  keys: KeyRecord[];
  /** Rows per bucket ("<bucket_width>x<bucket_height>"). */
  buckets: Record<string, number>;
  time: string;
}

export type KeyRecord = [key: string, sha256: string, origin?: Origin];

/** `replace` was rewritten without some rows as `by` (null: no rows were left, the shard is gone). */
export interface ReplaceRecord {
  replace: string;
  by: ShardRecord | null;
  time: string;
}

export type JournalRecord = ShardRecord | ReplaceRecord;

export function isReplace(record: JournalRecord): record is ReplaceRecord {
  return 'replace' in record;
}

export type ParsedJournal = ParsedLines<JournalRecord>;

export function readJournal(file: string): Promise<ParsedJournal> {
  return readJsonLines<JournalRecord>(file);
}

export function appendJournal(file: string, record: JournalRecord): Promise<void> {
  return appendJsonLine(file, record, true, 'journal-line-torn');
}

/** Live shards of one part after replaying its records in order. */
export function replayJournal(records: readonly JournalRecord[]): Map<string, ShardRecord> {
  const live = new Map<string, ShardRecord>();
  for (const record of records) {
    if (isReplace(record)) {
      live.delete(record.replace);
      if (record.by) live.set(record.by.file, record.by);
    } else {
      live.set(record.file, record);
    }
  }
  return live;
}

/** Every shard file name a journal has ever mentioned, live or not (sequence numbers are never reused). */
export function mentionedFiles(records: readonly JournalRecord[]): string[] {
  return records.flatMap((r) => (isReplace(r) ? [r.replace, ...(r.by ? [r.by.file] : [])] : [r.file]));
}
