/**
 * Writes a model to disk atomically (temp file + rename, core/durable-fs) and streams lazy weights
 * one at a time. Protobuf messages cannot exceed 2 GiB, so when the weights are larger they go to
 * an external data file beside the model (ONNX external data: location/offset/length per tensor).
 */
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { RERUN_ADVICE, writeAll, writeFileDurable } from '../core/durable-fs.js';
import { type GraphBuilder, type ModelOptions, modelMessage } from './builder.js';
import { chunkSize, type Chunk } from './protobuf.js';

const PROTOBUF_LIMIT = 2 ** 31 - 1;
/** Keep tiny tensors (shapes, constants) inside the model even when weights go external. */
const EXTERNAL_MIN_BYTES = 1024;
/** Align external tensors so they can be memory-mapped. */
const EXTERNAL_ALIGN = 64;

export interface WriteResult {
  modelPath: string;
  dataPath?: string;
  bytes: number;
}

/** Tags and lengths are a few bytes each: gathered into writes of this size, not one write apiece. */
const GATHER_BYTES = 2 ** 20;

/** Writes the chunks in order (lazy ones produced one at a time); returns the bytes written. */
async function writeChunks(handle: FileHandle, chunks: readonly Chunk[], onBytes?: (n: number) => void): Promise<number> {
  const gathered = new Uint8Array(GATHER_BYTES);
  let fill = 0;
  let total = 0;
  const flush = async () => {
    await writeAll(handle, gathered.subarray(0, fill));
    fill = 0;
  };
  for (const c of chunks) {
    const b = c instanceof Uint8Array ? c : c.produce();
    if (b.length !== chunkSize(c)) throw new Error(`lazy chunk produced ${b.length} bytes, declared ${chunkSize(c)}`);
    if (fill + b.length > GATHER_BYTES) await flush();
    if (b.length < GATHER_BYTES) {
      gathered.set(b, fill);
      fill += b.length;
    } else {
      await writeAll(handle, b);
    }
    total += b.length;
    onBytes?.(b.length);
  }
  await flush();
  return total;
}

const writeDurably = <T>(file: string, write: (handle: FileHandle) => Promise<T>) => writeFileDurable(file, write, { advice: RERUN_ADVICE });

export async function writeModel(
  g: GraphBuilder,
  outPath: string,
  opts: Omit<ModelOptions, 'external'> & { forceExternal?: boolean; onBytes?: (n: number) => void },
): Promise<WriteResult> {
  const weightBytes = g.initializers.reduce((a, t) => a + chunkSize(t.data), 0);
  const external = opts.forceExternal || weightBytes > PROTOBUF_LIMIT - 64 * 1024 * 1024;
  if (!external) {
    const msg = modelMessage(g, opts);
    const bytes = await writeDurably(outPath, (handle) => writeChunks(handle, msg.chunks, opts.onBytes));
    return { modelPath: outPath, bytes };
  }

  const location = `${path.basename(outPath)}.data`;
  const dataPath = path.join(path.dirname(outPath), location);
  const offsets = new Map<string, number>();
  const data: Chunk[] = [];
  let dataBytes = 0;
  for (const t of g.initializers) {
    if (chunkSize(t.data) < EXTERNAL_MIN_BYTES) continue;
    const pad = (EXTERNAL_ALIGN - (dataBytes % EXTERNAL_ALIGN)) % EXTERNAL_ALIGN;
    if (pad) data.push(new Uint8Array(pad));
    offsets.set(t.name, dataBytes + pad);
    data.push(t.data);
    dataBytes += pad + chunkSize(t.data);
  }
  // Data first: a model file on disk always has its whole data file beside it.
  await writeDurably(dataPath, (handle) => writeChunks(handle, data, opts.onBytes));
  const msg = modelMessage(g, { ...opts, external: { location, offsets } });
  const modelBytes = await writeDurably(outPath, (handle) => writeChunks(handle, msg.chunks));
  return { modelPath: outPath, dataPath, bytes: modelBytes + dataBytes };
}
