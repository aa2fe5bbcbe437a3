/**
 * Just enough of numpy's .npz (a zip of .npy files, numpy.savez) to read small arrays and the shape
 * of big ones without reading their data: the zip's central directory (zip64 fields included, as
 * numpy writes every entry with force_zip64), each member's .npy header, and the bytes of the
 * members asked for. Stored members are read in place; deflated ones (savez_compressed) whole.
 */
import fs from 'node:fs/promises';
import zlib from 'node:zlib';

export interface NpyArray {
  /** numpy's dtype string, e.g. '<f4', '<i8'. */
  descr: string;
  shape: number[];
  /** The values as numbers: only for the members `withValues` picks. */
  values?: number[];
}

interface Member {
  name: string;
  method: number;
  compressedSize: number;
  localOffset: number;
}

const MAX_EOCD_SEARCH = 22 + 0xffff;

async function readAt(handle: fs.FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  const { bytesRead } = await handle.read(buf, 0, length, position);
  if (bytesRead !== length) throw new Error('truncated file');
  return buf;
}

/** The central directory's members. */
async function members(handle: fs.FileHandle, size: number): Promise<Member[]> {
  const tailLength = Math.min(size, MAX_EOCD_SEARCH);
  const tail = await readAt(handle, size - tailLength, tailLength);
  const eocd = tail.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (eocd < 0) throw new Error('not a zip file (no end of central directory)');
  let count = tail.readUInt16LE(eocd + 10);
  let cdSize = tail.readUInt32LE(eocd + 12);
  let cdOffset = tail.readUInt32LE(eocd + 16);
  if (cdOffset === 0xffffffff || count === 0xffff) {
    // The zip64 end record, found through its locator just before the classic one.
    const locator = eocd - 20;
    if (locator < 0 || tail.readUInt32LE(locator) !== 0x07064b50) throw new Error('zip64 locator missing');
    const end64 = await readAt(handle, Number(tail.readBigUInt64LE(locator + 8)), 56);
    count = Number(end64.readBigUInt64LE(32));
    cdSize = Number(end64.readBigUInt64LE(40));
    cdOffset = Number(end64.readBigUInt64LE(48));
  }
  const cd = await readAt(handle, cdOffset, cdSize);
  const out: Member[] = [];
  for (let at = 0, i = 0; i < count; i++) {
    if (cd.readUInt32LE(at) !== 0x02014b50) throw new Error('bad central directory entry');
    const nameLength = cd.readUInt16LE(at + 28);
    const extraLength = cd.readUInt16LE(at + 30);
    const commentLength = cd.readUInt16LE(at + 32);
    let uncompressed = cd.readUInt32LE(at + 24);
    let compressedSize = cd.readUInt32LE(at + 20);
    let localOffset = cd.readUInt32LE(at + 42);
    // Zip64 extra field: the 64-bit values of exactly the fields that hold 0xffffffff, in this order.
    for (let e = at + 46 + nameLength; e < at + 46 + nameLength + extraLength; ) {
      const id = cd.readUInt16LE(e);
      const length = cd.readUInt16LE(e + 2);
      if (id === 0x0001) {
        let v = e + 4;
        const next = () => Number(cd.readBigUInt64LE((v += 8) - 8));
        if (uncompressed === 0xffffffff) uncompressed = next();
        if (compressedSize === 0xffffffff) compressedSize = next();
        if (localOffset === 0xffffffff) localOffset = next();
      }
      e += 4 + length;
    }
    out.push({ name: cd.toString('utf8', at + 46, at + 46 + nameLength), method: cd.readUInt16LE(at + 10), compressedSize, localOffset });
    at += 46 + nameLength + extraLength + commentLength;
  }
  return out;
}

/** The .npy header of `bytes`: dtype, shape, where the data starts. */
function npyHeader(bytes: Buffer): { descr: string; shape: number[]; dataOffset: number } {
  if (bytes.toString('latin1', 0, 6) !== '\x93NUMPY') throw new Error('member is not a .npy array');
  const major = bytes[6]!;
  const headerLength = major === 1 ? bytes.readUInt16LE(8) : bytes.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = bytes.toString('latin1', start, start + headerLength);
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || shape === undefined || /'fortran_order':\s*True/.test(header)) throw new Error(`unsupported .npy header ${header.trim()}`);
  return { descr, shape: shape.split(',').map((s) => s.trim()).filter(Boolean).map(Number), dataOffset: start + headerLength };
}

const READERS: Record<string, [number, (b: Buffer, at: number) => number]> = {
  '<i8': [8, (b, at) => Number(b.readBigInt64LE(at))], '<i4': [4, (b, at) => b.readInt32LE(at)],
  '<u8': [8, (b, at) => Number(b.readBigUInt64LE(at))], '<u4': [4, (b, at) => b.readUInt32LE(at)],
  '<f8': [8, (b, at) => b.readDoubleLE(at)], '<f4': [4, (b, at) => b.readFloatLE(at)],
};

/** Every member's dtype and shape; values of the (small, numeric) members `withValues` picks. */
export async function readNpz(file: string, withValues: (name: string) => boolean = () => false): Promise<Map<string, NpyArray>> {
  const handle = await fs.open(file, 'r');
  try {
    const { size } = await handle.stat();
    const out = new Map<string, NpyArray>();
    for (const m of await members(handle, size)) {
      const local = await readAt(handle, m.localOffset, 30);
      const dataStart = m.localOffset + 30 + local.readUInt16LE(26) + local.readUInt16LE(28);
      const name = m.name.replace(/\.npy$/, '');
      const wanted = withValues(name);
      let bytes: Buffer;
      if (m.method === 8) bytes = zlib.inflateRawSync(await readAt(handle, dataStart, m.compressedSize));
      else if (m.method === 0) bytes = await readAt(handle, dataStart, wanted ? m.compressedSize : Math.min(m.compressedSize, 4096));
      else throw new Error(`member ${m.name} uses zip method ${m.method}`);
      const h = npyHeader(bytes);
      const array: NpyArray = { descr: h.descr, shape: h.shape };
      if (wanted) {
        const reader = READERS[h.descr.replace(/^\|/, '<')];
        if (!reader) throw new Error(`${name} has dtype ${h.descr}, not a number type`);
        const n = h.shape.reduce((a, b) => a * b, 1);
        array.values = Array.from({ length: n }, (_, i) => reader[1](bytes, h.dataOffset + i * reader[0]));
      }
      out.set(name, array);
    }
    return out;
  } finally {
    await handle.close();
  }
}
