/**
 * safetensors, read and written by hand: an 8-byte little-endian header length, a JSON header
 * {name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?}, then the data. Tensors are
 * read one at a time with positional reads, so a 7B checkpoint is never held in memory twice.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { RERUN_ADVICE, writeAll, writeFileDurable } from '../core/durable-fs.js';
import { UserError } from '../core/errors.js';
import { float16ToFloat32, float32ToFloat16 } from '../core/half.js';

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
const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

interface HeaderEntry {
  dtype: unknown;
  shape: unknown;
  data_offsets: unknown;
}

function readHeader(file: string, fd: number): Located[] {
  const size = fs.fstatSync(fd).size;
  const head = Buffer.alloc(8);
  if (size < 8 || fs.readSync(fd, head, 0, 8, 0) !== 8) throw new UserError(`${file} is not a safetensors file (shorter than its header); download it again`);
  const headerLen = Number(head.readBigUInt64LE(0));
  // 100 MiB is the reference implementation's limit too; anything larger is not a header.
  if (headerLen > 100 * 2 ** 20 || 8 + headerLen > size) throw new UserError(`${file} has a corrupt safetensors header (length ${headerLen}, file ${size} bytes); download it again`);
  const json = Buffer.alloc(headerLen);
  readFully(fd, file, json, 8);
  let header: unknown;
  try {
    header = JSON.parse(json.toString('utf8'));
  } catch {
    throw new UserError(`${file} has a corrupt safetensors header (not JSON); download it again`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new UserError(`${file} has a corrupt safetensors header (not a JSON object); download it again`);
  }
  const dataStart = 8 + headerLen;
  const out: Located[] = [];
  for (const [name, entry] of Object.entries(header as Record<string, HeaderEntry>)) {
    if (name === '__metadata__') continue;
    const { dtype, shape, data_offsets: offsets } = entry ?? ({} as HeaderEntry);
    if (!Array.isArray(shape) || !shape.every(isCount) || !Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
      throw new UserError(`tensor ${name} in ${file} has a corrupt header entry (shape ${JSON.stringify(shape)}, data_offsets ${JSON.stringify(offsets)}); download it again`);
    }
    if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) {
      throw new UserError(`tensor ${name} in ${file} has dtype ${String(dtype)}; dinofeat reads F32, F16 and BF16 checkpoints`);
    }
    const [b, e] = offsets as [number, number];
    const elements = (shape as number[]).reduce((a, x) => a * x, 1);
    if (e - b !== elements * DTYPE_BYTES[dtype as StDtype] || dataStart + e > size) {
      throw new UserError(`tensor ${name} in ${file} has offsets [${b}, ${e}] that do not fit its shape [${shape}] or the file (${size} bytes); the file is truncated or corrupt`);
    }
    out.push({ name, dtype: dtype as StDtype, shape: shape as number[], file, begin: dataStart + b, end: dataStart + e });
  }
  return out;
}

/** Positional read of buf.length bytes at `position`; a short read means the file shrank. */
function readFully(fd: number, file: string, buf: Uint8Array, position: number): void {
  for (let done = 0; done < buf.length; ) {
    const n = fs.readSync(fd, buf, done, buf.length - done, position + done);
    if (n === 0) throw new UserError(`${file} ended at byte ${position + done} while dinofeat read it; was it changed meanwhile? Download it again`);
    done += n;
  }
}

/** The checkpoint's files, and for a sharded one the shard its index assigns each tensor. */
function checkpointFiles(dir: string): { files: string[]; index?: { path: string; weightMap: Map<string, string> } } {
  const indexPath = path.join(dir, 'model.safetensors.index.json');
  if (fs.existsSync(indexPath)) {
    let weightMap: unknown;
    try {
      weightMap = (JSON.parse(fs.readFileSync(indexPath, 'utf8')) as { weight_map?: unknown }).weight_map;
    } catch {
      weightMap = undefined;
    }
    if (typeof weightMap !== 'object' || weightMap === null || !Object.values(weightMap).every((f) => typeof f === 'string')) {
      throw new UserError(`${indexPath} is not valid JSON with a weight_map of tensor names to files; download it again`);
    }
    const map = new Map(Object.entries(weightMap as Record<string, string>).map(([t, f]) => [t, path.join(dir, f)]));
    return { files: [...new Set(map.values())].sort(), index: { path: indexPath, weightMap: map } };
  }
  const single = path.join(dir, 'model.safetensors');
  if (fs.existsSync(single)) return { files: [single] };
  throw new UserError(`no model.safetensors or model.safetensors.index.json in ${dir}: point at a Hugging Face checkpoint directory`);
}

export function openCheckpoint(dir: string): Checkpoint {
  const { files, index } = checkpointFiles(dir);
  const fds = new Map<string, number>();
  const tensors = new Map<string, Located>();
  try {
    for (const file of files) {
      let fd: number;
      try {
        fd = fs.openSync(file, 'r');
      } catch {
        throw new UserError(`cannot open ${file}${index ? `, listed in ${index.path}` : ''}; download it again`);
      }
      fds.set(file, fd);
      for (const t of readHeader(file, fd)) {
        const other = tensors.get(t.name);
        if (other) throw new UserError(`tensor ${t.name} is in both ${other.file} and ${file}; the checkpoint is inconsistent`);
        tensors.set(t.name, t);
      }
    }
    // The index and the shards must agree, or a shard from another download slipped in.
    for (const [name, file] of index?.weightMap ?? []) {
      if (tensors.get(name)?.file !== file) throw new UserError(`${index!.path} puts tensor ${name} in ${file}, which does not hold it; download the checkpoint again`);
    }
  } catch (e) {
    for (const fd of fds.values()) fs.closeSync(fd);
    throw e;
  }
  const all = [...tensors.keys()];
  const prefix = all.length > 0 && all.every((n) => n.startsWith('model.')) ? 'model.' : '';
  const byName = new Map<string, Located>();
  for (const [n, t] of tensors) byName.set(n.slice(prefix.length), { ...t, name: n.slice(prefix.length) });
  const where = index ? `any shard listed in ${index.path}` : files[0]!;

  const get = (name: string): Located => {
    const t = byName.get(name);
    if (!t) throw new UserError(`tensor ${name} is missing from ${where}; is it a complete checkpoint of the right model type?`);
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
      const fd = fds.get(t.file);
      if (fd === undefined) throw new Error(`checkpoint ${dir} read after close()`);
      const elements = (t.end - t.begin) / DTYPE_BYTES[t.dtype];
      if (t.dtype === 'F32') {
        // Read straight into the result: one copy of the tensor in memory, not two.
        const out = new Float32Array(elements);
        readFully(fd, t.file, new Uint8Array(out.buffer), t.begin);
        return out;
      }
      const halves = new Uint16Array(elements);
      readFully(fd, t.file, new Uint8Array(halves.buffer), t.begin);
      if (t.dtype === 'F16') return float16ToFloat32(halves);
      // bfloat16 is the top half of a float32: widening is a shift, exact.
      const wide = new Uint32Array(elements);
      for (let k = 0; k < elements; k++) wide[k] = halves[k]! << 16;
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

export async function writeSafetensors(
  file: string,
  tensors: Record<string, { dtype: StDtype; shape: number[]; data: Float32Array }>,
  metadata?: Record<string, string>,
): Promise<void> {
  const header: Record<string, unknown> = metadata ? { __metadata__: metadata } : {};
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    if (t.data.length !== t.shape.reduce((a, x) => a * x, 1)) throw new Error(`writeSafetensors: ${name} has ${t.data.length} values for shape [${t.shape}]`);
    const bytes = t.data.length * DTYPE_BYTES[t.dtype];
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = Buffer.from(JSON.stringify(header));
  // Pad the header to 8 bytes so tensor data is aligned, as the reference writer does.
  json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  await writeFileDurable(file, async (handle) => {
    await writeAll(handle, len);
    await writeAll(handle, json);
    // One tensor converted at a time, so at most one extra copy is ever held.
    for (const t of Object.values(tensors)) await writeAll(handle, encode(t.data, t.dtype));
  }, { advice: RERUN_ADVICE });
}
