/**
 * Parquet files with an image column as a source: Hugging Face datasets' Image feature (a struct
 * {bytes, path}) or a plain binary column, read with hyparquet (zstd and the other codecs from
 * hyparquet-compressors), only the image and key columns, a slice of rows at a time and the next
 * one while the current one is extracted. A row group's image column is one slice when it is
 * small; a large one is cut into slices, and with a page index (pyarrow write_page_index=True)
 * only the pages of each slice are read.
 */
import path from 'node:path';
import { parquetMetadataAsync, parquetReadObjects, parquetSchema } from 'hyparquet';
import type { AsyncBuffer, ColumnChunk, FileMetaData, SchemaTree } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import type { ReadOptions } from './read-options.js';
import { snappyDecompress } from './snappy.js';
import { openFileRanges, type FileRanges } from './file-ranges.js';
import { pageRuns, type PageRun } from './parquet-pages.js';
import type { SourceItem } from './types.js';

/** Image bytes per read: a row group's image column larger than this is read in slices. */
const SLICE_BYTES = 64 * 2 ** 20;
/**
 * With a page index a slice reads only its own pages, so slices can be small: the first one
 * smaller still, so extraction starts at once instead of after a whole row group.
 */
const INDEXED_SLICE_BYTES = 8 * 2 ** 20;
const FIRST_SLICE_BYTES = 2 ** 20;

/** zstd, gzip, brotli and lz4 from hyparquet-compressors; snappy, the Hub's usual codec, our own (snappy.ts). */
const codecs = { ...compressors, SNAPPY: snappyDecompress };

export function isParquetFile(file: string): boolean {
  return file.toLowerCase().endsWith('.parquet');
}

type ImageColumn = { name: string; struct: boolean };

const isBinaryLeaf = (n: SchemaTree) =>
  n.children.length === 0 && n.element.type === 'BYTE_ARRAY' && n.element.converted_type === undefined && n.element.logical_type === undefined;
const structBytes = (n: SchemaTree) => n.children.find((c) => c.element.name === 'bytes' && isBinaryLeaf(c));

function typeName(n: SchemaTree): string {
  if (n.children.length) return `struct<${n.children.map((c) => c.element.name).join(', ')}>`;
  return (n.element.logical_type?.type ?? n.element.converted_type ?? n.element.type ?? 'unknown').toLowerCase();
}

/** The column that holds the images, or why none can be used (one line). */
export function findImageColumn(schema: SchemaTree, wanted: string | undefined): ImageColumn | { problem: string } {
  const top = schema.children;
  const asImage = (n: SchemaTree): ImageColumn | undefined =>
    structBytes(n) ? { name: n.element.name, struct: true } : isBinaryLeaf(n) ? { name: n.element.name, struct: false } : undefined;
  const candidates = top.map(asImage).filter((c): c is ImageColumn => c !== undefined);
  const listed = candidates.length ? candidates.map((c) => c.name).join(', ') : 'none';
  if (wanted !== undefined) {
    const node = top.find((n) => n.element.name === wanted);
    if (!node) return { problem: `no column ${wanted} (columns: ${top.map((n) => n.element.name).join(', ')}); pass --image-column with one of: ${listed}` };
    return asImage(node) ?? { problem: `column ${wanted} is ${typeName(node)}, not image bytes (a binary column or a struct with a binary bytes field); image columns: ${listed}` };
  }
  const image = top.find((n) => n.element.name === 'image' && structBytes(n));
  if (image) return { name: 'image', struct: true };
  if (candidates.length === 1) return candidates[0]!;
  return { problem: `cannot tell which column holds the images (image columns: ${listed}): pass --image-column NAME` };
}

function keyOfValue(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  return undefined;
}

/** A chunk this big without a page index is walked page by page (parquet-pages.ts) instead of read whole. */
const walkedChunk = (chunk: ColumnChunk | undefined, limit: number) =>
  chunk !== undefined && chunk.offset_index_offset === undefined && Number(chunk.meta_data?.total_compressed_size ?? 0) > limit;

/**
 * How each row group is read: row slices [start, end) each holding about `sliceBytes` of images at
 * most (default: by the rules above), or, for a big chunk with no page index, its pages walked.
 */
type GroupPlan = { slices: Array<[number, number]> } | { walk: { start: number; end: number; chunk: ColumnChunk } };

function groupPlans(metadata: FileMetaData, column: string, sliceBytes?: number): GroupPlan[] {
  const out: GroupPlan[] = [];
  let start = 0;
  let sliced = 0;
  for (const group of metadata.row_groups) {
    const rows = Number(group.num_rows);
    const chunk = group.columns.find((c) => c.meta_data?.path_in_schema[0] === column);
    if (walkedChunk(chunk, sliceBytes ?? SLICE_BYTES)) {
      out.push({ walk: { start, end: start + rows, chunk: chunk! } });
      start += rows;
      continue;
    }
    const bytes = Number(chunk?.meta_data?.total_uncompressed_size ?? 0);
    const indexed = chunk?.offset_index_offset !== undefined;
    const rowsIn = (limit: number) => (bytes <= limit ? rows : Math.max(1, Math.floor((rows * limit) / bytes)));
    const slices: Array<[number, number]> = [];
    for (let s = 0; s < rows; ) {
      const limit = sliceBytes ?? (!indexed ? SLICE_BYTES : sliced === 0 ? FIRST_SLICE_BYTES : INDEXED_SLICE_BYTES);
      const end = Math.min(rows, s + rowsIn(limit));
      slices.push([start + s, start + end]);
      sliced++;
      s = end;
    }
    out.push({ slices });
    start += rows;
  }
  return out;
}

/** Where a run's bytes start in the file made of it: not 0, which hyparquet reads as "no dictionary page". */
const RUN_OFFSET = 4;

/**
 * The file's metadata narrowed to one run of walked pages: a row group of the run's rows whose
 * only chunk is the run, in a schema holding only the image column's path (a struct keeps its
 * nesting, so definition levels decode as in the file). Offsets are into the run's file (RUN_OFFSET).
 */
function runMetadata(metadata: FileMetaData, chunk: ColumnChunk, run: PageRun): FileMetaData {
  const meta = chunk.meta_data!;
  const path = meta.path_in_schema;
  const schema: FileMetaData['schema'] = [{ ...metadata.schema[0]!, num_children: 1 }];
  for (let depth = 0, from = 1; depth < path.length; depth++) {
    // Find the path's element among the siblings at this depth, skipping other subtrees.
    let at = from;
    while (metadata.schema[at]!.name !== path[depth]) at = afterSubtree(metadata.schema, at);
    schema.push(depth < path.length - 1 ? { ...metadata.schema[at]!, num_children: 1 } : metadata.schema[at]!);
    from = at + 1;
  }
  const rows = BigInt(run.rows);
  const runChunk: ColumnChunk = {
    ...chunk,
    file_offset: 0n,
    offset_index_offset: undefined,
    offset_index_length: undefined,
    column_index_offset: undefined,
    column_index_length: undefined,
    meta_data: {
      ...meta,
      num_values: rows,
      total_compressed_size: BigInt(run.bytes.length),
      dictionary_page_offset: run.dictionaryBytes > 0 ? BigInt(RUN_OFFSET) : undefined,
      data_page_offset: BigInt(RUN_OFFSET + run.dictionaryBytes),
      index_page_offset: undefined,
      bloom_filter_offset: undefined,
      bloom_filter_length: undefined,
    },
  };
  const group = metadata.row_groups[0]!;
  return { ...metadata, schema, num_rows: rows, row_groups: [{ ...group, columns: [runChunk], num_rows: rows, file_offset: 0n, sorting_columns: undefined }] };
}

/** The run as the file runMetadata describes; hyparquet asks for the whole run, which it gets uncopied. */
function runFile(run: PageRun): AsyncBuffer {
  const { bytes } = run;
  const byteLength = RUN_OFFSET + bytes.length;
  return {
    byteLength,
    async slice(start, end = byteLength) {
      const whole = start === RUN_OFFSET && end === byteLength && bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
      return whole ? (bytes.buffer as ArrayBuffer) : bytes.slice(start - RUN_OFFSET, end - RUN_OFFSET).buffer;
    },
  };
}

function afterSubtree(schema: FileMetaData['schema'], at: number): number {
  let next = at + 1;
  for (let k = 0; k < (schema[at]!.num_children ?? 0); k++) next = afterSubtree(schema, next);
  return next;
}

const asError = (e: unknown) => (e instanceof Error ? e : new Error(String(e)));

/** Rows [start, end) of the file as decoded objects, or why they cannot be. */
interface RowBatch {
  start: number;
  end: number;
  rows: Record<string, unknown>[] | Error;
}

/** Reads the next batch while the caller works on this one, so the run never waits on the file. */
async function* readAhead<T>(source: AsyncIterator<T>): AsyncGenerator<T> {
  let next = source.next();
  for (;;) {
    const r = await next;
    if (r.done) return;
    next = source.next();
    yield r.value;
  }
}

interface OpenedParquet {
  file: FileRanges;
  metadata: FileMetaData;
}

async function openParquet(abs: string): Promise<OpenedParquet | { problem: string }> {
  let file: FileRanges;
  try {
    file = await openFileRanges(abs);
  } catch (e) {
    return { problem: `cannot read Parquet file (${(e as Error).message})` };
  }
  try {
    return { file, metadata: await parquetMetadataAsync(file.asyncBuffer) };
  } catch (e) {
    await file.close();
    return { problem: `not a readable Parquet file (${(e as Error).message})` };
  }
}

/** Rows in the file, from its footer (undefined when it cannot be read: it becomes an error row later). */
export async function parquetRowCount(file: string): Promise<number | undefined> {
  const opened = await openParquet(path.resolve(file));
  if ('problem' in opened) return undefined;
  await opened.file.close();
  return Number(opened.metadata.num_rows);
}

/**
 * Every row of one file, in order (only the rows `only` names, when given). A file that cannot be
 * read gives one problem naming it.
 */
export async function* readParquet(file: string, o: ReadOptions, only?: ReadonlySet<number>, sliceBytes?: number): AsyncGenerator<SourceItem> {
  const abs = path.resolve(file);
  const stem = path.basename(abs).replace(/\.parquet$/i, '');
  const fileProblem: FileProblem = (reason) => ({ problem: { key: `${o.keyPrefix}${stem}`, display: abs, reason } });
  const opened = await openParquet(abs);
  if ('problem' in opened) return yield fileProblem(opened.problem);
  try {
    yield* readRows(opened, abs, stem, fileProblem, o, only, sliceBytes);
  } finally {
    await opened.file.close();
  }
}

type FileProblem = (reason: string) => SourceItem;

async function* readRows({ file, metadata }: OpenedParquet, abs: string, stem: string, fileProblem: FileProblem, o: ReadOptions, only: ReadonlySet<number> | undefined, sliceBytes: number | undefined): AsyncGenerator<SourceItem> {
  const schema = parquetSchema(metadata);
  const found = findImageColumn(schema, o.imageColumn);
  if ('problem' in found) return yield fileProblem(found.problem);
  const column: ImageColumn = found;
  const keyColumn = o.keyColumn;
  if (keyColumn !== undefined && !schema.children.some((n) => n.element.name === keyColumn && n.children.length === 0)) {
    return yield fileProblem(`no column ${keyColumn} to take keys from (columns: ${schema.children.map((n) => n.element.name).join(', ')}): check --key-column`);
  }
  const columns = keyColumn !== undefined && keyColumn !== column.name ? [column.name, keyColumn] : [column.name];
  const wanted = (start: number, end: number) => !only || [...only].some((r) => r >= start && r < end);
  const read = (options: { columns: string[]; rowStart: number; rowEnd: number; file?: AsyncBuffer; metadata?: FileMetaData }) =>
    parquetReadObjects({ file: file.asyncBuffer, metadata, compressors: codecs, useOffsetIndex: true, utf8: false, ...options });

  /** Walked pages of one big chunk, in runs; the keys (when a key column is named) read for the whole group at once. */
  async function* walk({ start, end, chunk }: { start: number; end: number; chunk: ColumnChunk }): AsyncGenerator<RowBatch> {
    let keys: Record<string, unknown>[] | undefined;
    let at = start;
    try {
      if (keyColumn !== undefined && keyColumn !== column.name) keys = await read({ columns: [keyColumn], rowStart: start, rowEnd: end });
      for await (const run of pageRuns(file.readAt, chunk.meta_data!, sliceBytes ?? INDEXED_SLICE_BYTES)) {
        const first = start + run.firstRow;
        at = first + run.rows;
        if (at > end) throw new Error(`the image column's pages hold more rows than its row group (${end - start})`);
        if (!wanted(first, at)) continue;
        const rows = await read({ columns: [column.name], rowStart: 0, rowEnd: run.rows, file: runFile(run), metadata: runMetadata(metadata, chunk, run) }).catch(asError);
        if (keys && !(rows instanceof Error)) rows.forEach((row, k) => (row[keyColumn!] = keys![first - start + k]![keyColumn!]));
        yield { start: first, end: at, rows };
      }
      if (at !== end) throw new Error(`the image column's pages hold ${at - start} of the row group's ${end - start} rows`);
    } catch (e) {
      // The chunk cannot be walked on from here: the rows not yet given are error rows.
      if (at < end) yield { start: at, end, rows: asError(e) };
    }
  }

  async function* batches(): AsyncGenerator<RowBatch> {
    for (const plan of groupPlans(metadata, column.name, sliceBytes)) {
      if ('walk' in plan) {
        yield* walk(plan.walk);
        continue;
      }
      for (const [start, end] of plan.slices) {
        if (!wanted(start, end)) continue;
        yield { start, end, rows: await read({ columns, rowStart: start, rowEnd: end }).catch(asError) };
      }
    }
  }

  for await (const { start, end, rows } of readAhead(batches())) {
    if (rows instanceof Error) {
      // Rows of a slice that cannot be decoded: one error row each, then the next slice.
      for (let row = start; row < end; row++) {
        if (!only || only.has(row)) yield { problem: { key: `${o.keyPrefix}${stem}/${row}`, display: `${abs}:row ${row}`, reason: `cannot decode the row (${rows.message})` } };
      }
      continue;
    }
    for (let i = 0; i < rows.length; i++) {
      const row = start + i;
      if (only && !only.has(row)) continue;
      const display = `${abs}:row ${row}`;
      const value = rows[i]![column.name];
      const bytes = column.struct ? (value as { bytes?: unknown } | null)?.bytes : value;
      const named = keyColumn === undefined ? `${stem}/${row}` : keyOfValue(rows[i]![keyColumn]);
      if (named === undefined) {
        yield { problem: { key: `${o.keyPrefix}${stem}/${row}`, display, reason: `column ${keyColumn} is null or not text/number in this row: it cannot be a key` } };
        continue;
      }
      const key = `${o.keyPrefix}${named}`;
      if (!(bytes instanceof Uint8Array)) {
        yield { problem: { key, display, reason: `image bytes in column ${column.name} are null` } };
        continue;
      }
      const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      yield { image: { key, read: async () => buffer, display, origin: { parquet: abs, row } } };
    }
  }
}
