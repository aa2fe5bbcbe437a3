/**
 * The run record: what a cache's runs read (image folders and list files, absolute) and the model
 * file they ran with its weights hash, so validate can check the images and recompute rows without
 * the flags again. It lives outside the cache identity (cache.json): later runs may add inputs,
 * and a model may move without the features changing.
 *
 * One file per part, manifest/inputs-<P>.json, written only by the worker holding that part's
 * lock: a run merges its inputs into its part's record and replaces it atomically. Workers that
 * run at once each own their file, so the read-merge-write needs no cache-wide lock and no input
 * is lost, even when workers read different inputs. Readers take the union over all parts.
 * --overwrite clears manifest/, and with it the records of the rows it cleared.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../core/errors.js';
import { parseAtomicTemp, readTextIfExists, writeFileAtomic } from '../core/durable-fs.js';
import { modelWeightsSha256 } from '../model/weights-hash.js';
import { inputKind, type Inputs } from '../source/inputs.js';
import { nonDefault, withDefaults, type ReadOptions } from '../source/read-options.js';
import { MANIFEST_DIR, checkPartId } from './layout.js';

/** What extract read, as it can be read again. */
export interface RecordedInputs {
  /** Image directories, absolute, in the order first given. */
  dirs: string[];
  /** Tar shards and Parquet files, absolute (absent when none: records of older runs stay as they were). */
  containers?: string[];
  /** Image list files, absolute (stdin is not a file). */
  lists: string[];
  /** Some run read a list from stdin: those paths are not recorded. */
  stdin: boolean;
  /** Inputs read with other than the default options (--key-prefix, --image-ext, ...): how. */
  readAs?: Record<string, Partial<ReadOptions>>;
}

/** The recorded inputs as a run reads them. */
export function inputsOfRecord(r: RecordedInputs): Inputs {
  return { paths: [...r.dirs, ...(r.containers ?? [])], lists: r.lists, readAs: r.readAs ?? {} };
}

export interface RecordedModel {
  /** The ONNX file extract ran, absolute. */
  path: string;
  /** model/weights-hash.ts's rule, as the cache fingerprint uses it. */
  weightsSha256: string;
}

export interface PartRunRecord {
  inputs: RecordedInputs;
  model: RecordedModel;
  updatedAt: string;
}

/** The union of every part's record. */
export interface RunRecord {
  inputs: RecordedInputs;
  /** Each model path recorded, most recent first (one model, perhaps seen at several paths). */
  models: RecordedModel[];
}

const RECORD_NAME = /^inputs-([A-Za-z0-9_.]+)\.json$/;
const STDIN_LIST = '-';

export function runRecordPath(dir: string, partId: string): string {
  return path.join(dir, MANIFEST_DIR, `inputs-${checkPartId(partId)}.json`);
}

const isStrings = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');

function parseRecord(text: string, file: string): PartRunRecord {
  const bad = () => new UserError(`${file} is not a dinofeat run record: delete it (the next extract writes it again) or pass --images and --model`);
  let v: Partial<PartRunRecord> | undefined;
  try {
    v = JSON.parse(text) as Partial<PartRunRecord>;
  } catch {
    throw bad();
  }
  const inputs = v?.inputs;
  const model = v?.model;
  if (!inputs || !isStrings(inputs.dirs) || !isStrings(inputs.lists) || typeof inputs.stdin !== 'boolean') throw bad();
  if ((inputs.containers !== undefined && !isStrings(inputs.containers)) || (inputs.readAs !== undefined && typeof inputs.readAs !== 'object')) throw bad();
  if (!model || typeof model.path !== 'string' || typeof model.weightsSha256 !== 'string' || typeof v?.updatedAt !== 'string') throw bad();
  return { inputs, model, updatedAt: v.updatedAt };
}

async function readPartRecord(file: string): Promise<PartRunRecord | undefined> {
  const text = await readTextIfExists(file);
  return text === undefined ? undefined : parseRecord(text, file);
}

const union = (a: readonly string[], b: readonly string[]): string[] => [...new Set([...a, ...b])];

/**
 * Adds this run's inputs and model to its part's record; a rerun of the same command writes
 * nothing. The caller holds the part's lock, so any temp file of this record left beside it is a
 * crashed write of this part: removed first.
 */
export async function recordRun(dir: string, partId: string, run: { inputs: Inputs; model: RecordedModel }): Promise<void> {
  const file = runRecordPath(dir, partId);
  for (const name of await fs.readdir(path.dirname(file)).catch(() => [] as string[])) {
    if (parseAtomicTemp(name, file)) await fs.rm(path.join(path.dirname(file), name), { force: true });
  }
  const before = await readPartRecord(file);
  const lists = run.inputs.lists.filter((l) => l !== STDIN_LIST).map((l) => path.resolve(l));
  const paths = run.inputs.paths.map((p) => path.resolve(p));
  const inputs: RecordedInputs = {
    dirs: union(before?.inputs.dirs ?? [], paths.filter((p) => inputKind(p) === 'dir')),
    lists: union(before?.inputs.lists ?? [], lists),
    stdin: (before?.inputs.stdin ?? false) || run.inputs.lists.includes(STDIN_LIST),
  };
  const containers = union(before?.inputs.containers ?? [], paths.filter((p) => inputKind(p) !== 'dir'));
  if (containers.length) inputs.containers = containers;
  // Options only for inputs read with non-default ones, so a default run's record is as before.
  const readAs = { ...before?.inputs.readAs };
  const given = nonDefault(withDefaults(run.inputs.read));
  for (const p of [...paths, ...lists]) {
    if (Object.keys(given).length) readAs[p] = given;
    else delete readAs[p];
  }
  if (Object.keys(readAs).length) inputs.readAs = readAs;
  const model: RecordedModel = { path: path.resolve(run.model.path), weightsSha256: run.model.weightsSha256 };
  if (before && JSON.stringify([before.inputs, before.model]) === JSON.stringify([inputs, model])) return;
  const record: PartRunRecord = { inputs, model, updatedAt: new Date().toISOString() };
  await fs.mkdir(path.dirname(file), { recursive: true });
  await writeFileAtomic(file, `${JSON.stringify(record, null, 2)}\n`);
}

/** The union of the parts' records; undefined when no run recorded one (a cache made before records). */
export async function readRunRecord(dir: string): Promise<RunRecord | undefined> {
  const names = (await fs.readdir(path.join(dir, MANIFEST_DIR)).catch(() => [] as string[])).filter((n) => RECORD_NAME.test(n)).sort();
  const parts: PartRunRecord[] = [];
  for (const name of names) {
    const part = await readPartRecord(path.join(dir, MANIFEST_DIR, name));
    if (part) parts.push(part);
  }
  if (parts.length === 0) return undefined;
  const newestFirst = [...parts].sort((a, b) => (a.updatedAt < b.updatedAt ? 1 : a.updatedAt > b.updatedAt ? -1 : 0));
  const inputs: RecordedInputs = {
    dirs: parts.reduce<string[]>((all, p) => union(all, p.inputs.dirs), []),
    lists: parts.reduce<string[]>((all, p) => union(all, p.inputs.lists), []),
    stdin: parts.some((p) => p.inputs.stdin),
  };
  const containers = parts.reduce<string[]>((all, p) => union(all, p.inputs.containers ?? []), []);
  if (containers.length) inputs.containers = containers;
  // The newest run's way of reading an input wins.
  const readAs = Object.assign({}, ...[...newestFirst].reverse().map((p) => p.inputs.readAs ?? {})) as Record<string, Partial<ReadOptions>>;
  if (Object.keys(readAs).length) inputs.readAs = readAs;
  return {
    inputs,
    models: newestFirst.map((p) => p.model).filter((m, k, all) => all.findIndex((o) => o.path === m.path) === k),
  };
}

/**
 * The recorded model to use: the most recent path that still holds the same weights. When none
 * does, one line naming the path and the way out.
 */
export async function recordedModelPath(models: readonly RecordedModel[]): Promise<string> {
  let problem: string | undefined;
  for (const m of models) {
    const st = await fs.stat(m.path).catch(() => undefined);
    const why = !st?.isFile()
      ? `the cache's model ${m.path} is gone (moved or deleted)`
      : (await modelWeightsSha256(m.path)) !== m.weightsSha256
        ? `the cache's model ${m.path} changed since extract ran (its weights hash is not the recorded ${m.weightsSha256.slice(0, 12)}…)`
        : undefined;
    if (!why) return m.path;
    problem ??= why;
  }
  throw new UserError(`${problem ?? 'the cache records no model'}: pass --model with the model the cache was made with, or --recompute 0 to skip recomputing`);
}
