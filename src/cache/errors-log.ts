/**
 * The log of images that failed: one file per part (manifest/errors-<P>.jsonl, so workers never
 * write the same file) and errors.jsonl, the merged view rebuilt at the end of a run. Failures are
 * appended as they happen; an image that later succeeds leaves the log at the next save, which
 * rewrites the file atomically. A failure whose image is by now in the cache is never listed,
 * except a duplicate key: that row names another input's image, which the stored row is not, so it
 * stays (one per key and image) until that image is gone from the inputs or renamed.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../core/durable-fs.js';
import { appendJsonLine, readJsonLines } from './jsonl.js';
import { ERRORS_FILE, MANIFEST_DIR, PART_ERRORS_NAME, checkPartId, partErrorsPath } from './layout.js';

export type ErrorStage = 'source' | 'read' | 'decode' | 'infer' | 'write';

export interface ErrorEntry {
  key: string;
  /** Printable path of the image. */
  path: string;
  stage: ErrorStage;
  reason: string;
  /** ISO time of the failure. */
  time: string;
  /** A duplicate key: where the image that holds the key came from. */
  duplicateOf?: string;
}

/** A duplicate's entry is its own (key and image), so the image that holds the key never resolves it. */
function entryId(e: Pick<ErrorEntry, 'key' | 'path' | 'duplicateOf'>): string {
  return e.duplicateOf === undefined ? e.key : `${e.key}\0${e.path}`;
}

function listed(e: ErrorEntry, cached: { has(key: string): boolean }): boolean {
  return e.duplicateOf !== undefined || !cached.has(e.key);
}

function serialize(entries: Iterable<ErrorEntry>): string {
  return [...entries].map((e) => `${JSON.stringify(e)}\n`).join('');
}

/** Latest entry per key, in first-failure order. */
function latestByKey(entries: Iterable<ErrorEntry>): Map<string, ErrorEntry> {
  const byKey = new Map<string, ErrorEntry>();
  for (const e of entries) {
    const prev = byKey.get(entryId(e));
    if (!prev || prev.time <= e.time) byKey.set(entryId(e), e);
  }
  return byKey;
}

export class ErrorsLog {
  private dirty = false;

  private constructor(
    private readonly file: string,
    private readonly byKey: Map<string, ErrorEntry>,
  ) {}

  /** Opens part `partId`'s log (the caller holds the part's lock). */
  static async open(dir: string, partId: string): Promise<ErrorsLog> {
    const file = partErrorsPath(dir, checkPartId(partId));
    const parsed = await readJsonLines<ErrorEntry>(file);
    const log = new ErrorsLog(file, latestByKey(parsed.records));
    // A torn last line would swallow the next append; rewrite without it.
    if (parsed.torn) await log.saveNow();
    return log;
  }

  get entries(): ReadonlyMap<string, ErrorEntry> {
    return this.byKey;
  }

  /** Records a failure now (appended, so it survives a crash that follows). */
  async record(entry: Omit<ErrorEntry, 'time'> & { time?: string }): Promise<void> {
    const full: ErrorEntry = { ...entry, time: entry.time ?? new Date().toISOString() };
    this.byKey.delete(entryId(full));
    this.byKey.set(entryId(full), full);
    await appendJsonLine(this.file, full, false, 'errors-line-torn');
  }

  /** The image succeeded: it leaves the log at the next save. */
  resolve(key: string): void {
    if (this.byKey.delete(key)) this.dirty = true;
  }

  /** Rewrites the part's log atomically without resolved entries. */
  async save(): Promise<void> {
    if (this.dirty) await this.saveNow();
  }

  private async saveNow(): Promise<void> {
    await writeFileAtomic(this.file, serialize(this.byKey.values()));
    this.dirty = false;
  }
}

/**
 * All parts' failures, latest per key, minus images now in the cache (`cached`): what
 * --retry-failed retries and what errors.jsonl lists.
 */
export async function readErrors(dir: string, cached: { has(key: string): boolean } = new Set()): Promise<ErrorEntry[]> {
  const names = await fs.readdir(path.join(dir, MANIFEST_DIR)).catch(() => [] as string[]);
  const all: ErrorEntry[] = [];
  for (const name of names.sort()) {
    if (PART_ERRORS_NAME.test(name)) all.push(...(await readJsonLines<ErrorEntry>(path.join(dir, MANIFEST_DIR, name))).records);
  }
  return [...latestByKey(all).values()].filter((e) => listed(e, cached));
}

/** Rebuilds errors.jsonl from all parts; returns what it lists. */
export async function writeMergedErrors(dir: string, cached: { has(key: string): boolean }): Promise<ErrorEntry[]> {
  const entries = await readErrors(dir, cached);
  await writeFileAtomic(path.join(dir, ERRORS_FILE), serialize(entries));
  return entries;
}
