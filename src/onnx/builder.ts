/**
 * Builds ONNX graphs in TypeScript. Field numbers follow onnx.proto (ModelProto, GraphProto,
 * NodeProto, AttributeProto, TensorProto, ValueInfoProto). Weights can be lazy: they are
 * produced one at a time while the file is written (see ./writer.ts).
 */
import { ProtoMessage, type Chunk, type LazyBytes } from './protobuf.js';

/** TensorProto.DataType values. */
export const DataType = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  INT32: 6,
  INT64: 7,
  BOOL: 9,
  FLOAT16: 10,
  BFLOAT16: 16,
} as const;
export type DataTypeId = (typeof DataType)[keyof typeof DataType];

const BYTES_PER_ELEMENT: Record<DataTypeId, number> = {
  1: 4, 2: 1, 3: 1, 6: 4, 7: 8, 9: 1, 10: 2, 16: 2,
};

function elementBytes(t: DataTypeId): number {
  return BYTES_PER_ELEMENT[t];
}

/** Attribute values, tagged so that 1.0 (float) and 1 (int) can never be confused. */
export type Attr =
  | { kind: 'f'; v: number }
  | { kind: 'i'; v: number }
  | { kind: 's'; v: string }
  | { kind: 'floats'; v: readonly number[] }
  | { kind: 'ints'; v: readonly number[] }
  | { kind: 't'; v: Initializer };
export const f = (v: number): Attr => ({ kind: 'f', v });
export const i = (v: number): Attr => ({ kind: 'i', v });
export const s = (v: string): Attr => ({ kind: 's', v });
export const floats = (v: readonly number[]): Attr => ({ kind: 'floats', v });
export const ints = (v: readonly number[]): Attr => ({ kind: 'ints', v });

export interface Initializer {
  name: string;
  dataType: DataTypeId;
  dims: readonly number[];
  /** Raw little-endian bytes, either present or produced on demand. */
  data: Uint8Array | LazyBytes;
}

export type Dim = number | string;
interface ValueInfo {
  name: string;
  elemType: DataTypeId;
  dims: readonly Dim[];
}
interface Node {
  opType: string;
  domain: string;
  inputs: string[];
  outputs: string[];
  attrs: Record<string, Attr>;
  name: string;
}

export function typedBytes(a: Float32Array | Uint16Array | Int32Array | BigInt64Array | Uint8Array | Int8Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/**
 * One graph. `op()` adds a node and returns its (single) output name; names are generated
 * from a prefix so that graph code reads like the math it implements.
 */
export class GraphBuilder {
  readonly inputs: ValueInfo[] = [];
  readonly outputs: ValueInfo[] = [];
  readonly initializers: Initializer[] = [];
  readonly nodes: Node[] = [];
  private readonly used = new Set<string>();
  private readonly constCache = new Map<string, string>();
  /** Prefix for generated names, e.g. 'layer.3'; set by scope(). */
  private prefix = '';

  constructor(readonly name: string) {}

  /** A fresh, unique value name. */
  fresh(hint: string): string {
    const base = this.prefix ? `${this.prefix}/${hint}` : hint;
    let candidate = base;
    for (let n = 1; this.used.has(candidate); n++) candidate = `${base}_${n}`;
    this.used.add(candidate);
    return candidate;
  }

  /** Run `body` with generated names under `prefix` (for readable graphs and profiles). */
  scope<T>(prefix: string, body: () => T): T {
    const saved = this.prefix;
    this.prefix = prefix;
    try {
      return body();
    } finally {
      this.prefix = saved;
    }
  }

  input(name: string, elemType: DataTypeId, dims: readonly Dim[]): string {
    this.used.add(name);
    this.inputs.push({ name, elemType, dims });
    return name;
  }

  output(name: string, elemType: DataTypeId, dims: readonly Dim[]): void {
    this.outputs.push({ name, elemType, dims });
  }

  /** Adds a weight under exactly `name` (checkpoint names are kept for traceability). */
  initializer(name: string, dataType: DataTypeId, dims: readonly number[], data: Uint8Array | LazyBytes): string {
    if (this.used.has(name)) throw new Error(`duplicate value name ${name}`);
    const expected = dims.reduce((a, b) => a * b, 1) * elementBytes(dataType);
    const size = data instanceof Uint8Array ? data.length : data.size;
    if (size !== expected) throw new Error(`initializer ${name}: ${size} bytes for dims [${dims}] of type ${dataType}, expected ${expected}`);
    this.used.add(name);
    this.initializers.push({ name, dataType, dims, data });
    return name;
  }

  /** Small constant tensors, deduplicated by value. */
  constFloat(values: readonly number[] | Float32Array, dims: readonly number[] = [values.length]): string {
    return this.constant(DataType.FLOAT, dims, typedBytes(Float32Array.from(values)), 'c_f');
  }

  constInt64(values: readonly number[], dims: readonly number[] = [values.length]): string {
    return this.constant(DataType.INT64, dims, typedBytes(BigInt64Array.from(values.map((v) => BigInt(v)))), 'c_i');
  }

  private constant(dataType: DataTypeId, dims: readonly number[], bytes: Uint8Array, hint: string): string {
    const cacheKey = `${dataType}|${dims.join(',')}|${Buffer.from(bytes).toString('base64')}`;
    const hit = this.constCache.get(cacheKey);
    if (hit) return hit;
    const saved = this.prefix;
    this.prefix = '';
    const name = this.fresh(hint);
    this.prefix = saved;
    this.used.delete(name);
    this.initializer(name, dataType, dims, bytes);
    this.constCache.set(cacheKey, name);
    return name;
  }

  /** Adds a node with `nOut` outputs and returns their names. */
  node(opType: string, inputs: readonly string[], attrs: Record<string, Attr> = {}, opts: { nOut?: number; domain?: string; hint?: string } = {}): string[] {
    const nOut = opts.nOut ?? 1;
    const hint = opts.hint ?? opType.toLowerCase();
    const outputs = Array.from({ length: nOut }, (_, k) => this.fresh(nOut === 1 ? hint : `${hint}_${k}`));
    this.nodes.push({ opType, domain: opts.domain ?? '', inputs: [...inputs], outputs, attrs, name: this.fresh(`n_${hint}`) });
    return outputs;
  }

  /** Single-output node. */
  op(opType: string, inputs: readonly string[], attrs: Record<string, Attr> = {}, opts: { domain?: string; hint?: string } = {}): string {
    return this.node(opType, inputs, attrs, opts)[0]!;
  }

  /** Renames the final producer of `value` so the graph output carries a contract name. */
  rename(value: string, to: string): void {
    for (const n of this.nodes) {
      n.outputs = n.outputs.map((o) => (o === value ? to : o));
      n.inputs = n.inputs.map((x) => (x === value ? to : x));
    }
    this.used.add(to);
  }
}

function tensorMessage(t: Initializer, external?: { location: string; offset: number }): ProtoMessage {
  const m = new ProtoMessage();
  for (const d of t.dims) m.varint(1, d);
  m.varint(2, t.dataType);
  m.string(8, t.name);
  if (external) {
    const size = t.data instanceof Uint8Array ? t.data.length : t.data.size;
    for (const [k, v] of [['location', external.location], ['offset', String(external.offset)], ['length', String(size)]] as const) {
      m.message(13, new ProtoMessage().string(1, k).string(2, v));
    }
    m.varint(14, 1); // data_location = EXTERNAL
  } else {
    m.bytesField(9, t.data as Chunk);
  }
  return m;
}

function attributeMessage(name: string, a: Attr): ProtoMessage {
  const m = new ProtoMessage().string(1, name);
  switch (a.kind) {
    case 'f': return m.float32(2, a.v).varint(20, 1);
    case 'i': return m.varint(3, a.v).varint(20, 2);
    case 's': return m.string(4, a.v).varint(20, 3);
    case 't': return m.message(5, tensorMessage(a.v)).varint(20, 4);
    case 'floats': for (const v of a.v) m.float32(7, v); return m.varint(20, 6);
    case 'ints': for (const v of a.v) m.varint(8, v); return m.varint(20, 7);
  }
}

function valueInfoMessage(v: ValueInfo): ProtoMessage {
  const shape = new ProtoMessage();
  for (const d of v.dims) shape.message(1, typeof d === 'number' ? new ProtoMessage().varint(1, d) : new ProtoMessage().string(2, d));
  const tensorType = new ProtoMessage().varint(1, v.elemType).message(2, shape);
  return new ProtoMessage().string(1, v.name).message(2, new ProtoMessage().message(1, tensorType));
}

export interface ModelOptions {
  opsets: Record<string, number>; // domain ('' = ai.onnx) -> version
  metadata?: Record<string, string>;
  producerName?: string;
  producerVersion?: string;
  docString?: string;
  /** Initializers that go to an external data file instead of the model (name -> offset). */
  external?: { location: string; offsets: Map<string, number> };
}

/** ONNX IR version matching opset 18 - 21 (IR 8 covers opset 18; 10 covers 21). */
const IR_VERSION = 8;

export function modelMessage(g: GraphBuilder, opts: ModelOptions): ProtoMessage {
  const graph = new ProtoMessage();
  for (const n of g.nodes) {
    const node = new ProtoMessage();
    for (const x of n.inputs) node.string(1, x);
    for (const y of n.outputs) node.string(2, y);
    node.string(3, n.name).string(4, n.opType);
    for (const [k, a] of Object.entries(n.attrs)) node.message(5, attributeMessage(k, a));
    if (n.domain) node.string(7, n.domain);
    graph.message(1, node);
  }
  graph.string(2, g.name);
  for (const t of g.initializers) {
    const offset = opts.external?.offsets.get(t.name);
    graph.message(5, tensorMessage(t, offset === undefined ? undefined : { location: opts.external!.location, offset }));
  }
  for (const v of g.inputs) graph.message(11, valueInfoMessage(v));
  for (const v of g.outputs) graph.message(12, valueInfoMessage(v));

  const model = new ProtoMessage().varint(1, IR_VERSION);
  model.string(2, opts.producerName ?? 'dinofeat');
  if (opts.producerVersion) model.string(3, opts.producerVersion);
  if (opts.docString) model.string(6, opts.docString);
  model.message(7, graph);
  for (const [domain, version] of Object.entries(opts.opsets)) {
    const o = new ProtoMessage();
    if (domain) o.string(1, domain);
    model.message(8, o.varint(2, version));
  }
  for (const [k, v] of Object.entries(opts.metadata ?? {})) model.message(14, new ProtoMessage().string(1, k).string(2, v));
  return model;
}

/** Encodes a small model fully in memory (tests, preprocessing graphs). */
export function encodeModel(g: GraphBuilder, opts: ModelOptions): Uint8Array {
  return modelMessage(g, opts).toBytes();
}
