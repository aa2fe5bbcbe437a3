/**
 * Writes a model to disk atomically (temp file + rename) and streams lazy weights one at a time.
 * Protobuf messages cannot exceed 2 GiB, so when the weights are larger they go to an external
 * data file beside the model (ONNX external data: location/offset/length per tensor).
 */
import fs from 'node:fs';
import path from 'node:path';
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

function writeChunks(fd: number, chunks: readonly Chunk[], onBytes?: (n: number) => void): number {
  let total = 0;
  for (const c of chunks) {
    const b = c instanceof Uint8Array ? c : c.produce();
    if (b.length !== chunkSize(c)) throw new Error(`lazy chunk produced ${b.length} bytes, declared ${chunkSize(c)}`);
    fs.writeSync(fd, b);
    total += b.length;
    onBytes?.(b.length);
  }
  return total;
}

function withTempFile<T>(finalPath: string, body: (fd: number) => T): T {
  const tmp = `${finalPath}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, 'w');
  try {
    const r = body(fd);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, finalPath);
    return r;
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

export function writeModel(
  g: GraphBuilder,
  outPath: string,
  opts: Omit<ModelOptions, 'external'> & { forceExternal?: boolean; onBytes?: (n: number) => void },
): WriteResult {
  const weightBytes = g.initializers.reduce((a, t) => a + chunkSize(t.data), 0);
  const external = opts.forceExternal || weightBytes > PROTOBUF_LIMIT - 64 * 1024 * 1024;
  if (!external) {
    const msg = modelMessage(g, opts);
    const bytes = withTempFile(outPath, (fd) => writeChunks(fd, msg.chunks, opts.onBytes));
    return { modelPath: outPath, bytes };
  }

  const location = `${path.basename(outPath)}.data`;
  const dataPath = path.join(path.dirname(outPath), location);
  const offsets = new Map<string, number>();
  let dataBytes = 0;
  withTempFile(dataPath, (fd) => {
    for (const t of g.initializers) {
      if (chunkSize(t.data) < EXTERNAL_MIN_BYTES) continue;
      const pad = (EXTERNAL_ALIGN - (dataBytes % EXTERNAL_ALIGN)) % EXTERNAL_ALIGN;
      if (pad) fs.writeSync(fd, new Uint8Array(pad));
      dataBytes += pad;
      offsets.set(t.name, dataBytes);
      dataBytes += writeChunks(fd, [t.data], opts.onBytes);
    }
  });
  const msg = modelMessage(g, { ...opts, external: { location, offsets } });
  const modelBytes = withTempFile(outPath, (fd) => writeChunks(fd, msg.chunks));
  return { modelPath: outPath, dataPath, bytes: modelBytes + dataBytes };
}
