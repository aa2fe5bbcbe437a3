/**
 * safetensors, read and written by hand: an 8-byte little-endian header length, a JSON header
 * {name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?}, then the data. Tensors are
 * read one at a time with positional reads, so a 7B checkpoint is never held in memory twice.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { UserError } from '../errors.js';
import { float16ToFloat32, float32ToFloat16 } from './half.js';

export type StDtype = 'F32' | 'F16' | 'BF16';
const DTYPE_BYTES: Record<StDtype, number> = { F32: 4, F16: 2, BF16: 2 };

export interface TensorInfo {
  name: string;
  dtype: StDtype;
  shape: number[];
  file: string;
}

interface Located extends TensorInfo {
  /** Absolute byte range in `file`. */
  begin: number;
  end: number;
}

export interface Checkpoint {
  /** Canonical names: a leading 'model.' is stripped when every tensor has it. */
  names(): string[];
  has(name: string): boolean;
  info(name: string): TensorInfo;
  /** The tensor widened to float32 (exactly: F16 and BF16 are subsets of F32). */
  read(name: string, expectShape?: readonly number[]): Float32Array;
  /** sha256 over the safetensors files' bytes, files in name order, streamed. */
  sha256(): Promise<string>;
  close(): void;
}

const same = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((v, k) => v === b[k]);

function readHeader(file: string, fd: number): Located[] {
  const size = fs.fstatSync(fd).size;
  const head = Buffer.alloc(8);
  if (size < 8 || fs.readSync(fd, head, 0, 8, 0) !== 8) throw new UserError(`${file} is not a safetensors file (shorter than its header); download it again`);
  const headerLen = Number(head.readBigUInt64LE(0));
  if (headerLen > 100 * 2 ** 20 || 8 + headerLen > size) throw new UserError(`${file} has a corrupt safetensors header (length ${headerLen}); download it again`);
  const json = Buffer.alloc(headerLen);
  fs.readSync(fd, json, 0, headerLen, 8);
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  try {
    header = JSON.parse(json.toString('utf8'));
  } catch {
    throw new UserError(`${file} has a corrupt safetensors header (not JSON); download it again`);
  }
  const dataStart = 8 + headerLen;
  const out: Located[] = [];
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    if (!(t.dtype in DTYPE_BYTES)) throw new UserError(`tensor ${name} in ${file} has dtype ${t.dtype}; dinofeat reads F32, F16 and BF16 checkpoints`);
    const dtype = t.dtype as StDtype;
    const [b, e] = t.data_offsets;
    const elements = t.shape.reduce((a, x) => a * x, 1);
    if (e - b !== elements * DTYPE_BYTES[dtype] || dataStart + e > size || b < 0) {
      throw new UserError(`tensor ${name} in ${file} has offsets [${b}, ${e}] that do not fit its shape [${t.shape}] or the file (${size} bytes); the file is truncated or corrupt`);
    }
    out.push({ name, dtype, shape: t.shape, file, begin: dataStart + b, end: dataStart + e });
  }
  return out;
}

function checkpointFiles(dir: string): string[] {
  const index = path.join(dir, 'model.safetensors.index.json');
  if (fs.existsSync(index)) {
    let weightMap: Record<string, string>;
    try {
      weightMap = (JSON.parse(fs.readFileSync(index, 'utf8')) as { weight_map: Record<string, string> }).weight_map;
    } catch {
      throw new UserError(`${index} is not valid JSON with a weight_map; download it again`);
    }
    return [...new Set(Object.values(weightMap))].sort().map((f) => path.join(dir, f));
  }
  const single = path.join(dir, 'model.safetensors');
  if (fs.existsSync(single)) return [single];
  throw new UserError(`no model.safetensors or model.safetensors.index.json in ${dir}: point at a Hugging Face checkpoint directory`);
}

export function openCheckpoint(dir: string): Checkpoint {
  const files = checkpointFiles(dir);
  const fds = new Map<string, number>();
  const tensors = new Map<string, Located>();
  try {
    for (const file of files) {
      let fd: number;
      try {
        fd = fs.openSync(file, 'r');
      } catch {
        throw new UserError(`cannot open ${file}, listed in the checkpoint index; download it again`);
      }
      fds.set(file, fd);
      for (const t of readHeader(file, fd)) tensors.set(t.name, t);
    }
  } catch (e) {
    for (const fd of fds.values()) fs.closeSync(fd);
    throw e;
  }
  const all = [...tensors.keys()];
  const prefixed = all.length > 0 && all.every((n) => n.startsWith('model.'));
  const byName = new Map<string, Located>();
  for (const [n, t] of tensors) byName.set(prefixed ? n.slice('model.'.length) : n, { ...t, name: prefixed ? n.slice(6) : n });

  const get = (name: string): Located => {
    const t = byName.get(name);
    if (!t) throw new UserError(`tensor ${name} is missing from the checkpoint in ${dir}; is it a complete checkpoint of the right model type?`);
    return t;
  };

  return {
    names: () => [...byName.keys()],
    has: (name) => byName.has(name),
    info: (name) => {
      const { begin: _b, end: _e, ...info } = get(name);
      return info;
    },
    read(name, expectShape) {
      const t = get(name);
      if (expectShape && !same(t.shape, expectShape)) {
        throw new UserError(`tensor ${name} in ${t.file} has shape [${t.shape}], expected [${expectShape}]; the checkpoint does not match its config.json`);
      }
      const bytes = Buffer.alloc(t.end - t.begin);
      fs.readSync(fds.get(t.file)!, bytes, 0, bytes.length, t.begin);
      if (t.dtype === 'F32') return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4).slice();
      const halves = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2);
      if (t.dtype === 'F16') return float16ToFloat32(halves);
      // bfloat16 is the top half of a float32: widening is a shift, exact.
      const wide = new Uint32Array(halves.length);
      for (let k = 0; k < halves.length; k++) wide[k] = halves[k]! << 16;
      return new Float32Array(wide.buffer);
    },
    async sha256() {
      const h = createHash('sha256');
      for (const file of files) {
        for await (const chunk of fs.createReadStream(file, { highWaterMark: 4 * 2 ** 20 })) h.update(chunk as Buffer);
      }
      return h.digest('hex');
    },
    close() {
      for (const fd of fds.values()) fs.closeSync(fd);
      fds.clear();
    },
  };
}

function encode(data: Float32Array, dtype: StDtype): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (dtype === 'F16') return new Uint8Array(float32ToFloat16(data).buffer);
  // bfloat16: round the float32 bits to nearest even on the upper 16 bits.
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
  const out = new Uint16Array(data.length);
  for (let k = 0; k < data.length; k++) {
    const b = bits[k]!;
    out[k] = (b & 0x7f800000) === 0x7f800000 && b & 0x7fffff ? (b >>> 16) | 0x40 : (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
  return new Uint8Array(out.buffer);
}

export function writeSafetensors(
  file: string,
  tensors: Record<string, { dtype: StDtype; shape: number[]; data: Float32Array }>,
  metadata?: Record<string, string>,
): void {
  const header: Record<string, unknown> = metadata ? { __metadata__: metadata } : {};
  const blobs: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const bytes = encode(t.data, t.dtype);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    blobs.push(bytes);
    offset += bytes.length;
  }
  let json = Buffer.from(JSON.stringify(header));
  // Pad the header to 8 bytes so tensor data is aligned, as the reference writer does.
  json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, len);
    fs.writeSync(fd, json);
    for (const b of blobs) fs.writeSync(fd, b);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}
