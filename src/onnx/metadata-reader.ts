/**
 * Reads ModelProto's metadata_props (field 14) and producer (field 2) from an .onnx file without
 * loading the graph: top-level fields are walked with positional reads and the graph (field 7),
 * which holds the weights, is skipped by its length.
 */
import fs from 'node:fs';
import { readVarint } from './protobuf.js';

export interface OnnxFileHeader {
  producerName?: string;
  metadata: Record<string, string>;
}

function readAt(fd: number, position: number, length: number): Uint8Array {
  const buf = new Uint8Array(length);
  const n = fs.readSync(fd, buf, 0, length, position);
  return buf.subarray(0, n);
}

function decodeStringPair(buf: Uint8Array): [string, string] {
  const dec = new TextDecoder();
  let key = '';
  let value = '';
  let at = 0;
  while (at < buf.length) {
    const tag = readVarint(buf, at);
    const len = readVarint(buf, tag.next);
    const bytes = buf.subarray(len.next, len.next + len.value);
    if (tag.value >> 3 === 1) key = dec.decode(bytes);
    else if (tag.value >> 3 === 2) value = dec.decode(bytes);
    at = len.next + len.value;
  }
  return [key, value];
}

/** Throws a plain Error when the file is not a protobuf ModelProto; callers wrap it for users. */
export function readOnnxHeader(file: string): OnnxFileHeader {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const out: OnnxFileHeader = { metadata: {} };
    let pos = 0;
    while (pos < size) {
      const head = readAt(fd, pos, 20);
      const tag = readVarint(head, 0);
      const field = tag.value >> 3;
      const wire = tag.value & 7;
      let next: number;
      if (wire === 0) {
        next = pos + readVarint(head, tag.next).next;
      } else if (wire === 2) {
        const len = readVarint(head, tag.next);
        const start = pos + len.next;
        next = start + len.value;
        if (next > size) throw new Error('truncated field');
        if (field === 14) {
          const [k, v] = decodeStringPair(readAt(fd, start, len.value));
          out.metadata[k] = v;
        } else if (field === 2) {
          out.producerName = new TextDecoder().decode(readAt(fd, start, len.value));
        }
      } else if (wire === 5) {
        next = pos + tag.next + 4;
      } else if (wire === 1) {
        next = pos + tag.next + 8;
      } else {
        throw new Error(`unexpected wire type ${wire}`);
      }
      pos = next;
    }
    return out;
  } finally {
    fs.closeSync(fd);
  }
}
