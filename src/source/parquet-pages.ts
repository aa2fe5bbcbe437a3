/**
 * The pages of one column chunk, read a few at a time, for an image column whose row group is too
 * big to hold and has no page index (pyarrow's default: one row group of up to 1Mi rows, no index).
 * Asked for rows [a, b), hyparquet reads such a chunk whole, every time: a 2 GB row group would be
 * read whole for every slice, and held. Here the chunk is walked once, front to back, in runs of
 * whole pages (pageRuns says which), and each run is handed to hyparquet as a small column chunk of
 * its own, so it decodes them (levels, dictionary, codecs, page v2) as it decodes any chunk.
 *
 * Page headers are Thrift compact structs (parquet.thrift, PageHeader): only the page type,
 * compressed size and row count are kept; every other field is skipped by its wire type.
 */
import type { ColumnMetaData } from 'hyparquet';

/** Reads `length` bytes of the file from `position` (fewer only at its end). */
export type ReadAt = (position: number, length: number) => Promise<Uint8Array>;

/** A run of whole pages of the chunk, ready to be read as a chunk of its own. */
export interface PageRun {
  /** The chunk's row index of the run's first row. */
  firstRow: number;
  rows: number;
  /** The run's pages, headers included, after the dictionary page when they are dictionary-encoded. */
  bytes: Uint8Array;
  /** Bytes of `bytes` that are the dictionary page (0 without one). */
  dictionaryBytes: number;
}

const DATA_PAGE = 0;
const DICTIONARY_PAGE = 2;
const DATA_PAGE_V2 = 3;
/** Encodings of a data page whose values are indices into the dictionary page. */
const PLAIN_DICTIONARY = 2;
const RLE_DICTIONARY = 8;
/** A first read for a page header: a few dozen bytes, more with statistics (read again 4x bigger until it fits). */
const HEADER_READ = 4096;

class ShortInput extends Error {}

/** Thrift compact protocol, only what reading a PageHeader needs. */
class CompactReader {
  constructor(
    private readonly bytes: Uint8Array,
    public pos: number,
  ) {}

  private byte(): number {
    if (this.pos >= this.bytes.length) throw new ShortInput();
    return this.bytes[this.pos++]!;
  }

  varint(): number {
    let value = 0;
    for (let shift = 0; ; shift += 7) {
      const b = this.byte();
      value += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return value;
      if (shift > 63) throw new Error('bad varint in a page header');
    }
  }

  int(): number {
    const z = this.varint();
    return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
  }

  private skipBytes(n: number): void {
    if (this.pos + n > this.bytes.length) throw new ShortInput();
    this.pos += n;
  }

  /** Calls `field(id, type)` per field until the struct ends; `field` returns false to have it skipped. */
  struct(field: (id: number, type: number) => boolean): void {
    let id = 0;
    for (;;) {
      const head = this.byte();
      const type = head & 0x0f;
      if (type === 0) return;
      const delta = head >> 4;
      id = delta === 0 ? this.int() : id + delta;
      if (!field(id, type)) this.skip(type);
    }
  }

  skip(type: number): void {
    switch (type) {
      case 1: case 2: return; // booleans live in the field header
      case 3: return this.skipBytes(1);
      case 4: case 5: case 6: this.varint(); return;
      case 7: return this.skipBytes(8);
      case 8: return this.skipBytes(this.varint());
      case 9: case 10: {
        const head = this.byte();
        const size = head >> 4 === 15 ? this.varint() : head >> 4;
        const element = head & 0x0f;
        for (let k = 0; k < size; k++) element === 1 || element === 2 ? this.skipBytes(1) : this.skip(element);
        return;
      }
      case 11: {
        const size = this.varint();
        if (size === 0) return;
        const types = this.byte();
        for (let k = 0; k < size; k++) {
          this.skip(types >> 4);
          this.skip(types & 0x0f);
        }
        return;
      }
      case 12: return this.struct(() => false);
      default: throw new Error(`unknown Thrift type ${type} in a page header`);
    }
  }
}

interface PageHead {
  type: number;
  headerBytes: number;
  compressedBytes: number;
  /** Rows the page holds (values for a v1 page of a column that is not repeated). */
  rows: number;
  /** Its values are indices into the dictionary page (PLAIN_DICTIONARY or RLE_DICTIONARY). */
  usesDictionary: boolean;
}

const pageSize = (h: PageHead) => h.headerBytes + h.compressedBytes;
const isData = (h: PageHead) => h.type === DATA_PAGE || h.type === DATA_PAGE_V2;
const NOT_DATA: PageHead = { type: -1, headerBytes: 0, compressedBytes: 0, rows: 0, usesDictionary: false };

/** The page header at `at` in `bytes`, or undefined when `bytes` ends inside it. */
function pageHead(bytes: Uint8Array, at: number): PageHead | undefined {
  const r = new CompactReader(bytes, at);
  let type = -1;
  let compressedBytes = -1;
  let rows = 0;
  let encoding = -1;
  /** DataPageHeader (rows: field 1 num_values, encoding: 2) or DataPageHeaderV2 (3 num_rows, 4). */
  const dataHeader = (rowsField: number, encodingField: number) =>
    r.struct((id, t) => {
      if (t !== 5 || (id !== rowsField && id !== encodingField)) return false;
      if (id === rowsField) rows = r.int();
      else encoding = r.int();
      return true;
    });
  try {
    r.struct((id, t) => {
      if (id === 1 && t === 5) type = r.int();
      else if (id === 3 && t === 5) compressedBytes = r.int();
      else if (id === 5 && t === 12) dataHeader(1, 2);
      else if (id === 8 && t === 12) dataHeader(3, 4);
      else return false;
      return true;
    });
  } catch (e) {
    if (e instanceof ShortInput) return undefined;
    throw e;
  }
  if (type < 0 || compressedBytes < 0) throw new Error('a page header without its type or size');
  return { type, headerBytes: r.pos - at, compressedBytes, rows, usesDictionary: encoding === PLAIN_DICTIONARY || encoding === RLE_DICTIONARY };
}

/**
 * The chunk's pages in runs, front to back, each byte of the chunk read once. A dictionary page
 * goes with the dictionary-encoded pages that follow it, read together (pyarrow writes a row
 * group's first values dictionary-encoded, up to 1024 of them, then falls back to plain pages: that
 * run holds the whole dictionary, however big); other runs are about `sliceBytes` of whole pages
 * (one page at least).
 */
export async function* pageRuns(readAt: ReadAt, meta: ColumnMetaData, sliceBytes: number): AsyncGenerator<PageRun> {
  const start = Number(meta.dictionary_page_offset ?? meta.data_page_offset);
  const end = start + Number(meta.total_compressed_size);
  let at = start;
  let firstRow = 0;

  /** The header of the page at `p`, read on its own. */
  const headAt = async (p: number): Promise<PageHead> => {
    for (let want = HEADER_READ; ; want *= 4) {
      const probe = await readAt(p, Math.min(want, end - p));
      const head = pageHead(probe, 0);
      if (head) return head;
      if (probe.length >= end - p) throw new Error(`the column chunk ends inside a page header at byte ${p}`);
    }
  };

  /**
   * The header after a run's pages, to see whether its page joins the run: one that cannot be read
   * ends the run (NOT_DATA), and fails again as the next run's first, so the pages before it are kept.
   */
  const nextHead = (p: number): Promise<PageHead> => headAt(p).catch(() => NOT_DATA);

  const checked = async (p: number, length: number): Promise<Uint8Array> => {
    const bytes = await readAt(p, length);
    if (bytes.length < length) throw new Error(`the file ends inside the column chunk at byte ${p + bytes.length}`);
    return bytes;
  };

  while (at < end) {
    const first = await headAt(at);
    if (first.type === DICTIONARY_PAGE) {
      let q = at + pageSize(first);
      let rows = 0;
      for (let h; q < end && isData((h = await nextHead(q))) && h.usesDictionary; q += pageSize(h)) rows += h.rows;
      if (rows > 0) yield { firstRow, rows, bytes: await checked(at, q - at), dictionaryBytes: pageSize(first) };
      firstRow += rows;
      at = q;
      continue;
    }
    if (!isData(first)) throw new Error(`page of type ${first.type} inside the column chunk at byte ${at}`);
    // Writers put every dictionary-encoded page right after the dictionary (pyarrow, parquet-mr):
    // one elsewhere would need the dictionary kept for the whole chunk.
    if (first.usesDictionary) throw new Error(`a dictionary-encoded page at byte ${at}, away from its dictionary page`);
    // Whole plain pages within sliceBytes (the first one whatever its size), read in one piece of exactly their size.
    let q = at + pageSize(first);
    let rows = first.rows;
    for (let h; q < end && q - at < sliceBytes && isData((h = await nextHead(q))) && !h.usesDictionary && q + pageSize(h) - at <= sliceBytes; q += pageSize(h)) rows += h.rows;
    yield { firstRow, rows, bytes: await checked(at, q - at), dictionaryBytes: 0 };
    firstRow += rows;
    at = q;
  }
}
