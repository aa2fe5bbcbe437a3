/**
 * Parquet files with an image column as a source: Hugging Face datasets' Image feature (a struct
 * {bytes, path}) or a plain binary column, read with hyparquet (zstd and the other codecs from
 * hyparquet-compressors), only the image and key columns, a slice of rows at a time and the next
 * one while the current one is extracted. A row group's image column is one slice when it is
 * small; a large one is cut into slices, and with a page index (pyarrow write_page_index=True)
 * only the pages of each slice are read.
 */
import path from 'node:path';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema } from 'hyparquet';
import type { AsyncBuffer, FileMetaData, SchemaTree } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import type { ReadOptions } from './read-options.js';
import { snappyDecompress } from './snappy.js';
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

/** Row slices [start, end) covering the file, each holding about `sliceBytes` of images at most (default: by the rules above). */
function slices(metadata: FileMetaData, column: string, sliceBytes?: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let start = 0;
  for (const group of metadata.row_groups) {
    const rows = Number(group.num_rows);
    const chunk = group.columns.find((c) => c.meta_data?.path_in_schema[0] === column);
    const bytes = Number(chunk?.meta_data?.total_uncompressed_size ?? 0);
    const indexed = chunk?.offset_index_offset !== undefined;
    const rowsIn = (limit: number) => (bytes <= limit ? rows : Math.max(1, Math.floor((rows * limit) / bytes)));
    for (let s = 0; s < rows; ) {
      const limit = sliceBytes ?? (!indexed ? SLICE_BYTES : out.length === 0 ? FIRST_SLICE_BYTES : INDEXED_SLICE_BYTES);
      const end = Math.min(rows, s + rowsIn(limit));
      out.push([start + s, start + end]);
      s = end;
    }
    start += rows;
  }
  return out;
}

interface OpenedParquet {
  file: AsyncBuffer;
  metadata: FileMetaData;
}

async function openParquet(abs: string): Promise<OpenedParquet | { problem: string }> {
  let file: AsyncBuffer;
  try {
    file = await asyncBufferFromFile(abs);
  } catch (e) {
    return { problem: `cannot read Parquet file (${(e as Error).message})` };
  }
  try {
    return { file, metadata: await parquetMetadataAsync(file) };
  } catch (e) {
    return { problem: `not a readable Parquet file (${(e as Error).message})` };
  }
}

/** Rows in the file, from its footer (undefined when it cannot be read: it becomes an error row later). */
export async function parquetRowCount(file: string): Promise<number | undefined> {
  const opened = await openParquet(path.resolve(file));
  return 'problem' in opened ? undefined : Number(opened.metadata.num_rows);
}

/**
 * Every row of one file, in order (only the rows `only` names, when given). A file that cannot be
 * read gives one problem naming it.
 */
export async function* readParquet(file: string, o: ReadOptions, only?: ReadonlySet<number>, sliceBytes?: number): AsyncGenerator<SourceItem> {
  const abs = path.resolve(file);
  const stem = path.basename(abs).replace(/\.parquet$/i, '');
  const fileProblem = (reason: string): SourceItem => ({ problem: { key: `${o.keyPrefix}${stem}`, display: abs, reason } });
  const opened = await openParquet(abs);
  if ('problem' in opened) return yield fileProblem(opened.problem);
  const schema = parquetSchema(opened.metadata);
  const column = findImageColumn(schema, o.imageColumn);
  if ('problem' in column) return yield fileProblem(column.problem);
  if (o.keyColumn !== undefined && !schema.children.some((n) => n.element.name === o.keyColumn && n.children.length === 0)) {
    return yield fileProblem(`no column ${o.keyColumn} to take keys from (columns: ${schema.children.map((n) => n.element.name).join(', ')}): check --key-column`);
  }
  const columns = o.keyColumn !== undefined && o.keyColumn !== column.name ? [column.name, o.keyColumn] : [column.name];

  const plan = slices(opened.metadata, column.name, sliceBytes).filter(([start, end]) => !only || [...only].some((r) => r >= start && r < end));
  // The next slice is read while this one's images are extracted, so the run never waits on the file.
  const readSlice = ([start, end]: [number, number]): Promise<Record<string, unknown>[] | Error> =>
    parquetReadObjects({ file: opened.file, metadata: opened.metadata, columns, rowStart: start, rowEnd: end, compressors: codecs, useOffsetIndex: true, utf8: false })
      .catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
  let next = plan.length ? readSlice(plan[0]!) : undefined;
  for (let s = 0; s < plan.length; s++) {
    const [start, end] = plan[s]!;
    const rows = await next!;
    next = s + 1 < plan.length ? readSlice(plan[s + 1]!) : undefined;
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
      const named = o.keyColumn === undefined ? `${stem}/${row}` : keyOfValue(rows[i]![o.keyColumn]);
      if (named === undefined) {
        yield { problem: { key: `${o.keyPrefix}${stem}/${row}`, display, reason: `column ${o.keyColumn} is null or not text/number in this row: it cannot be a key` } };
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
