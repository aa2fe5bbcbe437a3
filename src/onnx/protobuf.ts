/**
 * A minimal protobuf encoder, just what writing ONNX needs. Messages are encoded into a list of
 * chunks whose sizes are known up front; large payloads (weights) are lazy chunks produced only
 * when the file is written, one at a time, so a multi-gigabyte model is never held twice in memory.
 */

/** Bytes that are produced on demand; `size` must equal the produced length. */
export interface LazyBytes {
  readonly size: number;
  produce(): Uint8Array;
}
export type Chunk = Uint8Array | LazyBytes;

const enum Wire {
  Varint = 0,
  Fixed64 = 1,
  Len = 2,
  Fixed32 = 5,
}

function varintBytes(value: number | bigint): Uint8Array {
  // Negative int64 values are encoded as their 64-bit two's complement (10 bytes).
  let v = BigInt.asUintN(64, BigInt(value));
  const out: number[] = [];
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return Uint8Array.from(out);
}

function smallVarint(value: number): Uint8Array {
  if (value < 0 || value > Number.MAX_SAFE_INTEGER) return varintBytes(value);
  const out: number[] = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return Uint8Array.from(out);
}

const textEncoder = new TextEncoder();

export function chunkSize(chunk: Chunk): number {
  return chunk instanceof Uint8Array ? chunk.length : chunk.size;
}

/** An encoded message under construction. Field helpers append in call order. */
export class ProtoMessage {
  readonly chunks: Chunk[] = [];
  private bytes = 0;

  get size(): number {
    return this.bytes;
  }

  private push(chunk: Chunk): void {
    this.chunks.push(chunk);
    this.bytes += chunkSize(chunk);
  }

  private tag(field: number, wire: Wire): void {
    this.push(smallVarint(field * 8 + wire));
  }

  varint(field: number, value: number | bigint): this {
    this.tag(field, Wire.Varint);
    this.push(typeof value === 'bigint' ? varintBytes(value) : smallVarint(value));
    return this;
  }

  float32(field: number, value: number): this {
    this.tag(field, Wire.Fixed32);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.push(b);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytesField(field, textEncoder.encode(value));
  }

  bytesField(field: number, value: Chunk): this {
    this.tag(field, Wire.Len);
    this.push(smallVarint(chunkSize(value)));
    this.push(value);
    return this;
  }

  message(field: number, msg: ProtoMessage): this {
    this.tag(field, Wire.Len);
    this.push(smallVarint(msg.size));
    for (const c of msg.chunks) this.push(c);
    return this;
  }

  /** Concatenate every chunk (lazy ones included): for small messages only. */
  toBytes(): Uint8Array {
    const out = new Uint8Array(this.bytes);
    let at = 0;
    for (const c of this.chunks) {
      const b = c instanceof Uint8Array ? c : c.produce();
      if (b.length !== chunkSize(c)) throw new Error(`lazy chunk produced ${b.length} bytes, declared ${chunkSize(c)}`);
      out.set(b, at);
      at += b.length;
    }
    return out;
  }
}

/** Decoding side: only what reading ONNX metadata needs. */
export function readVarint(buf: Uint8Array, at: number): { value: number; next: number } {
  let value = 0;
  let scale = 1;
  let i = at;
  for (;;) {
    if (i >= buf.length) throw new RangeError('truncated varint');
    const b = buf[i++]!;
    value += (b & 0x7f) * scale;
    if (b < 0x80) return { value, next: i };
    scale *= 128;
    if (scale > 2 ** 63) throw new RangeError('varint too long');
  }
}
