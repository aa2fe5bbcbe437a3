/**
 * The single source of truth for what a shard holds: column names and physical types, the
 * key/value metadata, and how one FeatureRow becomes column values (EncodedRow) and back.
 * Writers, readers, validate and inspect all go through this module, so a column cannot be
 * spelled two ways.
 *
 * Physical encoding (chosen by measurement, see docs/shard-writers.md):
 * - `patches` and `registers`: one binary value per row holding little-endian float16 (default)
 *   or float32, row-major [grid_h*grid_w, hidden] / [num_registers, hidden]. Typed list columns
 *   of this size write 100-300x slower in every JS writer measured.
 * - `cls`: a list<float32> of `hidden` values in both dtypes: it costs ~30 µs per row to write,
 *   keeps full precision, and DuckDB / pyarrow see a plain float array they can compute with.
 * - `layer<k>_cls` / `layer<k>_patches`, one pair per intermediate layer the model outputs
 *   (ModelInfo.layers): encoded as `cls` / `patches` are. Absent for a model without layers, so
 *   such shards are what they always were.
 * - With --flip, the horizontally mirrored copy sits beside them in the same row (`cls_flip`,
 *   `registers_flip`, `patches_flip`, same encodings) and `flip` says which orientation the plain
 *   columns hold: one row per key, as the journal, resume and validate count them.
 */
import os from 'node:os';
import type { ModelInfo } from '../model/info.js';
import { UserError } from '../core/errors.js';
import { float16ToFloat32, float32ToFloat16 } from '../core/half.js';

export type ShardFormat = 'parquet' | 'arrow';
export const SHARD_FORMATS: readonly ShardFormat[] = ['parquet', 'arrow'];
export const SHARD_EXTENSIONS: Readonly<Record<ShardFormat, string>> = { parquet: '.parquet', arrow: '.arrow' };

export type TensorDtype = 'float16' | 'float32';
export const TENSOR_DTYPES: readonly TensorDtype[] = ['float16', 'float32'];
export const DTYPE_BYTES: Readonly<Record<TensorDtype, number>> = { float16: 2, float32: 4 };

/** Bumped when columns or their meaning change, so readers can refuse shards they do not understand. */
export const SCHEMA_VERSION = 1;

/** One image's features as the pipeline produces them. */
export interface FeatureRow {
  /** Path relative to its input root, '/' separators. */
  key: string;
  /** Hex sha256 of the file bytes. */
  sha256: string;
  /** Upright original size. */
  width: number;
  height: number;
  /** Model input size. */
  bucketWidth: number;
  bucketHeight: number;
  gridH: number;
  gridW: number;
  /** Crop box in upright source pixels. */
  cropX: number;
  cropY: number;
  cropW: number;
  cropH: number;
  /** [hidden] */
  cls: Float32Array;
  /** [numRegisters * hidden], only when registers are kept. */
  registers?: Float32Array;
  /** [gridH * gridW * hidden], row-major. */
  patches: Float32Array;
  /** One per intermediate layer the model outputs, in its order; absent or empty without them. */
  layers?: LayerFeatures[];
  /** The features above are of the horizontally mirrored crop (a per-image plan's flip); only in a cache made with flips. */
  flip?: boolean;
  /** The other orientation (--flip): the same shapes, of the crop box mirrored (image/mirror.ts). */
  mirrored?: MirroredFeatures;
}

/** One intermediate layer's features of an image: as `cls` and `patches`, after block `layer` through the final norm. */
export interface LayerFeatures {
  /** Block number, 1-based. */
  layer: number;
  cls: Float32Array;
  patches: Float32Array;
}

/** The flipped copy of a row's features (intermediate layers are not flipped: extract refuses --flip with them). */
export interface MirroredFeatures {
  cls: Float32Array;
  registers?: Float32Array;
  patches: Float32Array;
}

export const STRING_COLUMNS = ['key', 'sha256'] as const;
export const INT_COLUMNS = [
  'width', 'height', 'bucket_width', 'bucket_height', 'grid_h', 'grid_w',
  'crop_x', 'crop_y', 'crop_w', 'crop_h',
] as const;
export type StringColumn = (typeof STRING_COLUMNS)[number];
export type IntColumn = (typeof INT_COLUMNS)[number];
export type TensorColumn = 'registers' | 'patches' | 'registers_flip' | 'patches_flip';
export type LayerClsColumn = `layer${number}_cls`;
export type LayerPatchesColumn = `layer${number}_patches`;
/** Columns a shard made with --flip adds, after the others. */
export const FLIP_COLUMNS = ['flip', 'cls_flip', 'registers_flip', 'patches_flip'] as const;
export type ColumnName = StringColumn | IntColumn | 'cls' | TensorColumn | LayerClsColumn | LayerPatchesColumn | 'flip' | 'cls_flip';

/** An intermediate layer's columns, named after its block number (1-based). */
export const layerColumns = (k: number): { cls: LayerClsColumn; patches: LayerPatchesColumn } => ({ cls: `layer${k}_cls`, patches: `layer${k}_patches` });

/** A row as stored: one property per physical column, named as the column is. */
export type EncodedRow = { [C in StringColumn]: string } & { [C in IntColumn]: number } & {
  cls: Float32Array;
  /** Present exactly when the shard keeps registers. */
  registers?: Uint8Array;
  patches: Uint8Array;
  /** Present exactly when the shard keeps flipped copies (--flip); registers_flip also needs registers kept. */
  flip?: boolean;
  cls_flip?: Float32Array;
  registers_flip?: Uint8Array;
  patches_flip?: Uint8Array;
} & { [C in LayerClsColumn]?: Float32Array } & { [C in LayerPatchesColumn]?: Uint8Array };

/**
 * How a column is stored and what it weighs: text, int32, bool, a list<float32> vector (`cls`,
 * `cls_flip`, `layer<k>_cls`) or a binary tensor of registers or patches. Encoders, readers and the
 * size estimate go by this, not by names.
 */
export type ColumnKind = 'string' | 'int' | 'bool' | 'vector' | 'registers' | 'patches';

export function columnKind(name: ColumnName): ColumnKind {
  if ((STRING_COLUMNS as readonly string[]).includes(name)) return 'string';
  if ((INT_COLUMNS as readonly string[]).includes(name)) return 'int';
  if (name === 'flip') return 'bool';
  if (name === 'cls' || name === 'cls_flip' || name.endsWith('_cls')) return 'vector';
  return name.startsWith('registers') ? 'registers' : 'patches';
}

/** The intermediate layers a shard's columns hold, ascending (from layer<k>_cls names). */
export function layersOfColumns(columns: readonly string[]): number[] {
  return columns.flatMap((c) => /^layer(\d+)_cls$/.exec(c)?.[1] ?? []).map(Number).sort((a, b) => a - b);
}

type IntField = 'width' | 'height' | 'bucketWidth' | 'bucketHeight' | 'gridH' | 'gridW' | 'cropX' | 'cropY' | 'cropW' | 'cropH';
const INT_FIELDS: Readonly<Record<IntColumn, IntField>> = {
  width: 'width', height: 'height', bucket_width: 'bucketWidth', bucket_height: 'bucketHeight',
  grid_h: 'gridH', grid_w: 'gridW', crop_x: 'cropX', crop_y: 'cropY', crop_w: 'cropW', crop_h: 'cropH',
};

/**
 * Columns of a shard, in file order: the final layer's, each intermediate layer's, then the flip
 * columns, so every column keeps its place whatever is added after it.
 */
export function shardColumns(registersKept: boolean, layers: readonly number[] = [], flip = false): readonly ColumnName[] {
  const perLayer = layers.flatMap((k) => {
    const c = layerColumns(k);
    return [c.cls, c.patches];
  });
  const flipColumns = flip ? FLIP_COLUMNS.filter((c) => registersKept || c !== 'registers_flip') : [];
  return [...STRING_COLUMNS, ...INT_COLUMNS, 'cls', ...(registersKept ? (['registers'] as const) : []), 'patches', ...perLayer, ...flipColumns];
}

/** The columns of a shard with this metadata. */
export const columnsOfMeta = (meta: Pick<ShardMeta, 'model' | 'registersKept' | 'flip'>): readonly ColumnName[] =>
  shardColumns(meta.registersKept, shardLayers(meta), meta.flip);

/** The intermediate layers a shard of this metadata stores (its model's). */
export const shardLayers = (meta: Pick<ShardMeta, 'model'>): readonly number[] => meta.model.layers ?? [];

/** A JSON-serialisable object; plain `object` so callers' interfaces (which lack index signatures) fit. */
export type JsonObject = object;

/** What every shard records about how it was made (Parquet footer / Arrow schema metadata). */
export interface ShardMeta {
  /** The feature format it was made in (cache/feature-format.ts); absent in shards made before it. */
  featureFormat?: number;
  /** The execution provider it was made on (--device); absent in shards made before it was recorded. */
  device?: string;
  dinofeatVersion: string;
  dtype: TensorDtype;
  hiddenSize: number;
  /** The model's register count; the column exists only when `registersKept`. */
  numRegisters: number;
  registersKept: boolean;
  /** Flipped copies kept (--flip); absent in shards without them. */
  flip?: boolean;
  model: ModelInfo;
  preprocessing: JsonObject;
  fingerprint: string;
}

export const META_KEYS = {
  schemaVersion: 'dinofeat.schema_version',
  dinofeatVersion: 'dinofeat.version',
  dtype: 'dinofeat.dtype',
  layout: 'dinofeat.layout',
  hiddenSize: 'dinofeat.hidden_size',
  numRegisters: 'dinofeat.num_registers',
  registersKept: 'dinofeat.registers_kept',
  model: 'dinofeat.model',
  preprocessing: 'dinofeat.preprocessing',
  fingerprint: 'dinofeat.fingerprint',
  featureFormat: 'dinofeat.feature_format',
  device: 'dinofeat.device',
  flip: 'dinofeat.flip',
} as const;

/** Human-readable layout string, stored in the metadata so a reader needs no documentation. */
export function layoutDescription(dtype: TensorDtype, registersKept: boolean, layers: readonly number[] = [], flip = false): string {
  const parts = [
    `patches: [grid_h*grid_w, hidden] row-major little-endian ${dtype}`,
    ...(registersKept ? [`registers: [num_registers, hidden] row-major little-endian ${dtype}`] : []),
    'cls: list<float32>[hidden]',
    ...(layers.length ? [`layer<k>_cls, layer<k>_patches for k in ${layers.join(',')}: as cls, patches, the output of block k (from 1) through the final norm`] : []),
    ...(flip ? ['cls_flip, registers_flip, patches_flip: the same, of the horizontally flipped image (crop box mirrored); flip: bool, true when the plain columns are the flipped image'] : []),
  ];
  return parts.join('; ');
}

export function metaToKeyValue(meta: ShardMeta): Record<string, string> {
  return {
    [META_KEYS.schemaVersion]: String(SCHEMA_VERSION),
    [META_KEYS.dinofeatVersion]: meta.dinofeatVersion,
    [META_KEYS.dtype]: meta.dtype,
    [META_KEYS.layout]: layoutDescription(meta.dtype, meta.registersKept, shardLayers(meta), meta.flip),
    [META_KEYS.hiddenSize]: String(meta.hiddenSize),
    [META_KEYS.numRegisters]: String(meta.numRegisters),
    [META_KEYS.registersKept]: String(meta.registersKept),
    [META_KEYS.model]: JSON.stringify(meta.model),
    [META_KEYS.preprocessing]: JSON.stringify(meta.preprocessing),
    [META_KEYS.fingerprint]: meta.fingerprint,
    ...(meta.featureFormat !== undefined ? { [META_KEYS.featureFormat]: String(meta.featureFormat) } : {}),
    ...(meta.device !== undefined ? { [META_KEYS.device]: meta.device } : {}),
    ...(meta.flip ? { [META_KEYS.flip]: 'true' } : {}),
  };
}

/** Parses shard metadata; `source` names the file in the error when something is missing. */
export function metaFromKeyValue(kv: ReadonlyMap<string, string>, source: string): ShardMeta {
  const get = (key: string): string => {
    const v = kv.get(key);
    if (v === undefined) throw new ShardFormatError(`${source}: metadata key ${key} is missing`);
    return v;
  };
  const version = Number(get(META_KEYS.schemaVersion));
  if (version !== SCHEMA_VERSION) {
    throw new ShardFormatError(`${source}: schema version ${version}, this dinofeat reads ${SCHEMA_VERSION}`);
  }
  const dtype = get(META_KEYS.dtype);
  if (!(TENSOR_DTYPES as readonly string[]).includes(dtype)) {
    throw new ShardFormatError(`${source}: unknown dtype ${dtype}`);
  }
  const featureFormat = kv.get(META_KEYS.featureFormat);
  const device = kv.get(META_KEYS.device);
  return {
    ...(featureFormat !== undefined ? { featureFormat: Number(featureFormat) } : {}),
    ...(device !== undefined ? { device } : {}),
    ...(kv.get(META_KEYS.flip) === 'true' ? { flip: true } : {}),
    dinofeatVersion: get(META_KEYS.dinofeatVersion),
    dtype: dtype as TensorDtype,
    hiddenSize: Number(get(META_KEYS.hiddenSize)),
    numRegisters: Number(get(META_KEYS.numRegisters)),
    registersKept: get(META_KEYS.registersKept) === 'true',
    model: JSON.parse(get(META_KEYS.model)) as ModelInfo,
    preprocessing: JSON.parse(get(META_KEYS.preprocessing)) as JsonObject,
    fingerprint: get(META_KEYS.fingerprint),
  };
}

/** A shard whose contents do not follow this schema (foreign, corrupt, or from another version). */
export class ShardFormatError extends UserError {}

// Tensors are stored as the host's typed-array bytes; every platform Node ships for is little-endian,
// and this guard turns a silent byte-order mix-up into a loud failure if that ever changes.
if (os.endianness() !== 'LE') throw new Error('dinofeat shards assume a little-endian host');

export function encodeTensor(values: Float32Array, dtype: TensorDtype): Uint8Array {
  const typed = dtype === 'float16' ? float32ToFloat16(values) : values;
  return new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
}

/** Decodes stored tensor bytes; copies first when a reader hands out an unaligned view. */
export function decodeTensor(bytes: Uint8Array, dtype: TensorDtype): Float32Array {
  const size = DTYPE_BYTES[dtype];
  if (bytes.byteLength % size !== 0) {
    throw new ShardFormatError(`tensor of ${bytes.byteLength} bytes is not a whole number of ${dtype} values`);
  }
  const aligned = bytes.byteOffset % size === 0 ? bytes : bytes.slice();
  if (dtype === 'float32') {
    return new Float32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 4).slice();
  }
  return float16ToFloat32(new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2));
}

/** Shape facts a row must satisfy; a mismatch is a pipeline bug, caught before it reaches disk. */
export interface RowShape {
  hiddenSize: number;
  numRegisters: number;
  registersKept: boolean;
  /** The intermediate layers every row carries, in order (none when absent). */
  layers?: readonly number[];
  /** Every row carries its flipped copy (--flip). */
  flip?: boolean;
}

/** The row shape of a shard with this metadata. */
export function rowShapeOf(meta: ShardMeta): Required<Omit<RowShape, 'flip'>> & Pick<RowShape, 'flip'> & { dtype: TensorDtype } {
  return { hiddenSize: meta.hiddenSize, numRegisters: meta.numRegisters, registersKept: meta.registersKept, layers: shardLayers(meta), flip: meta.flip, dtype: meta.dtype };
}

export function checkRowShape(row: FeatureRow, shape: RowShape): void {
  const fail = (what: string): never => {
    throw new Error(`row ${row.key}: ${what}`);
  };
  const patches = row.gridH * row.gridW * shape.hiddenSize;
  const checkFeatures = (f: MirroredFeatures, suffix: string) => {
    if (f.cls.length !== shape.hiddenSize) fail(`cls${suffix} has ${f.cls.length} values, expected ${shape.hiddenSize}`);
    if (f.patches.length !== patches) {
      fail(`patches${suffix} has ${f.patches.length} values, expected ${row.gridH}x${row.gridW}x${shape.hiddenSize}`);
    }
    if (shape.registersKept) {
      const registers = shape.numRegisters * shape.hiddenSize;
      if (f.registers?.length !== registers) {
        fail(`registers${suffix} has ${f.registers?.length ?? 0} values, expected ${shape.numRegisters}x${shape.hiddenSize}`);
      }
    }
  };
  checkFeatures(row, '');
  const layers = row.layers ?? [];
  const want = shape.layers ?? [];
  if (layers.map((l) => l.layer).join() !== want.join()) fail(`has layers [${layers.map((l) => l.layer)}], the shard stores [${want}]`);
  for (const l of layers) {
    if (l.cls.length !== shape.hiddenSize || l.patches.length !== patches) {
      fail(`layer ${l.layer} has ${l.cls.length} cls and ${l.patches.length} patch values, expected ${shape.hiddenSize} and ${row.gridH}x${row.gridW}x${shape.hiddenSize}`);
    }
  }
  if (shape.flip) {
    if (!row.mirrored) fail('the flipped copy is missing but the shard keeps flipped copies');
    checkFeatures(row.mirrored!, '_flip');
  } else if (row.mirrored || row.flip) {
    fail('carries a flipped copy or flip flag but the shard keeps no flipped copies');
  }
  for (const column of INT_COLUMNS) {
    const v = row[INT_FIELDS[column]];
    if (!Number.isInteger(v) || v < 0 || v > 0x7fffffff) fail(`${column} = ${v} is not a non-negative int32`);
  }
}

export function encodeRow(row: FeatureRow, meta: RowShape & { dtype: TensorDtype }): EncodedRow {
  checkRowShape(row, meta);
  const encoded = {
    key: row.key,
    sha256: row.sha256,
    cls: row.cls,
    patches: encodeTensor(row.patches, meta.dtype),
  } as EncodedRow;
  for (const column of INT_COLUMNS) encoded[column] = row[INT_FIELDS[column]];
  if (meta.registersKept) encoded.registers = encodeTensor(row.registers!, meta.dtype);
  for (const l of row.layers ?? []) {
    const c = layerColumns(l.layer);
    encoded[c.cls] = l.cls;
    encoded[c.patches] = encodeTensor(l.patches, meta.dtype);
  }
  if (meta.flip) {
    const m = row.mirrored!;
    encoded.flip = row.flip === true;
    encoded.cls_flip = m.cls;
    if (meta.registersKept) encoded.registers_flip = encodeTensor(m.registers!, meta.dtype);
    encoded.patches_flip = encodeTensor(m.patches, meta.dtype);
  }
  return encoded;
}

export function decodeRow(row: EncodedRow, dtype: TensorDtype): FeatureRow {
  const decoded = {
    key: row.key,
    sha256: row.sha256,
    cls: row.cls,
    patches: decodeTensor(row.patches, dtype),
  } as FeatureRow;
  for (const column of INT_COLUMNS) decoded[INT_FIELDS[column]] = row[column];
  if (row.registers) decoded.registers = decodeTensor(row.registers, dtype);
  const layers = layersOfColumns(Object.keys(row)).map((k) => {
    const c = layerColumns(k);
    return { layer: k, cls: row[c.cls]!, patches: decodeTensor(row[c.patches]!, dtype) };
  });
  if (layers.length) decoded.layers = layers;
  if (row.patches_flip && row.cls_flip) {
    decoded.flip = row.flip === true;
    decoded.mirrored = {
      cls: row.cls_flip,
      patches: decodeTensor(row.patches_flip, dtype),
      ...(row.registers_flip ? { registers: decodeTensor(row.registers_flip, dtype) } : {}),
    };
  }
  return decoded;
}

/** Bytes a row adds to a shard, near enough to decide when to start the next shard. */
export function encodedRowBytes(row: EncodedRow): number {
  const layers = layersOfColumns(Object.keys(row)).reduce((n, k) => {
    const c = layerColumns(k);
    return n + row[c.cls]!.byteLength + row[c.patches]!.byteLength;
  }, 0);
  const flipped = (row.patches_flip?.byteLength ?? 0) + (row.registers_flip?.byteLength ?? 0) + (row.cls_flip?.byteLength ?? 0);
  return row.patches.byteLength + (row.registers?.byteLength ?? 0) + row.cls.byteLength + layers + flipped +
    row.key.length + row.sha256.length + 4 * INT_COLUMNS.length + 32;
}

/** The bucket a row counts under in summaries: the model input size. */
export function bucketLabel(row: Pick<EncodedRow, 'bucket_width' | 'bucket_height'>): string {
  return `${row.bucket_width}x${row.bucket_height}`;
}
