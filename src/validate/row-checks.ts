/**
 * Checks of one stored row against what its shard says it holds: tensor sizes (intermediate
 * layers' too) against the grid and hidden size, grid against bucket and patch size, bucket and
 * crop box against what extract derives from the image size and the recorded preprocessing, no
 * NaN / Inf, a CLS that is not zero. Pure: works on the row as stored (tensor bytes are scanned, not decoded).
 */
import { DTYPE_BYTES, layerColumns, type EncodedRow, type TensorDtype } from '../shard/schema.js';
import { l2norm } from '../core/norm-stats.js';
import { assignBucket, cropBox } from '../image/buckets.js';
import type { RecordedPreprocessing } from '../image/preprocessing-record.js';

export interface RowExpectations {
  hiddenSize: number;
  numRegisters: number;
  registersKept: boolean;
  /** Intermediate layers each row stores (layer<k>_cls, layer<k>_patches). */
  layers: readonly number[];
  patchSize: number;
  dtype: TensorDtype;
  /** When readable: each row's bucket and crop box are derived again and compared. */
  preprocessing?: RecordedPreprocessing;
}

export interface RowProblem {
  kind: string;
  detail: string;
}

/** A CLS vector this short is zeros (LayerNorm output has norm around sqrt(hidden)). */
const MIN_CLS_NORM = 1e-6;

/** NaN and ±Inf in stored tensor bytes, without decoding them. */
export function countNonFinite(bytes: Uint8Array, dtype: TensorDtype): number {
  const size = DTYPE_BYTES[dtype];
  const aligned = bytes.byteOffset % size === 0 ? bytes : bytes.slice();
  const whole = aligned.byteLength - (aligned.byteLength % size);
  let bad = 0;
  if (dtype === 'float16') {
    // All-ones exponent: infinity or NaN.
    const halves = new Uint16Array(aligned.buffer, aligned.byteOffset, whole / 2);
    for (let i = 0; i < halves.length; i++) if ((halves[i]! & 0x7c00) === 0x7c00) bad++;
  } else {
    const floats = new Float32Array(aligned.buffer, aligned.byteOffset, whole / 4);
    for (let i = 0; i < floats.length; i++) if (!Number.isFinite(floats[i]!)) bad++;
  }
  return bad;
}

function countNonFiniteNumbers(values: ArrayLike<number>): number {
  let bad = 0;
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i]!)) bad++;
  return bad;
}

const box = (x: number, y: number, w: number, h: number) => `${w}x${h}+${x}+${y}`;

export function checkRow(row: EncodedRow, e: RowExpectations): RowProblem[] {
  const problems: RowProblem[] = [];
  const fail = (kind: string, detail: string) => problems.push({ kind, detail });
  const vectorBytes = e.hiddenSize * DTYPE_BYTES[e.dtype];

  if (!row.key) fail('provenance', 'empty key');
  if (!/^[0-9a-f]{64}$/.test(row.sha256)) fail('provenance', `sha256 "${row.sha256}" is not 64 hex digits`);

  // Tensor sizes: the last layer's CLS and patches, then each intermediate layer's.
  const groups: Array<{ cls: string; patches: string; clsValues?: Float32Array; patchBytes?: Uint8Array }> = [
    { cls: 'cls', patches: 'patches', clsValues: row.cls, patchBytes: row.patches },
    ...e.layers.map((k) => {
      const c = layerColumns(k);
      return { ...c, clsValues: row[c.cls], patchBytes: row[c.patches] };
    }),
  ];
  for (const g of groups) {
    if (!g.clsValues || !g.patchBytes) {
      fail('vector-length', `${g.cls} or ${g.patches} missing but the shard stores them`);
      continue;
    }
    if (g.clsValues.length !== e.hiddenSize) fail('vector-length', `${g.cls} has ${g.clsValues.length} values, hidden size is ${e.hiddenSize}`);
    if (g.patchBytes.byteLength % vectorBytes !== 0) {
      fail('vector-length', `${g.patches} hold ${g.patchBytes.byteLength} bytes, not a whole number of ${e.hiddenSize}-value ${e.dtype} vectors`);
    } else if (g.patchBytes.byteLength / vectorBytes !== row.grid_h * row.grid_w) {
      fail('patch-count', `${g.patches} holds ${g.patchBytes.byteLength / vectorBytes} vectors, grid ${row.grid_h}x${row.grid_w} needs ${row.grid_h * row.grid_w}`);
    }
  }
  if (e.registersKept) {
    const want = e.numRegisters * vectorBytes;
    if (!row.registers) fail('vector-length', 'registers missing but the shard keeps them');
    else if (row.registers.byteLength !== want) fail('vector-length', `registers hold ${row.registers.byteLength} bytes, expected ${e.numRegisters}x${e.hiddenSize} ${e.dtype} (${want})`);
  }

  // The flipped copy (--flip) has the plain columns' shapes.
  if (row.patches_flip && row.patches_flip.byteLength !== row.patches.byteLength) {
    fail('vector-length', `patches_flip hold ${row.patches_flip.byteLength} bytes, patches ${row.patches.byteLength}`);
  }
  if (row.cls_flip && row.cls_flip.length !== e.hiddenSize) fail('vector-length', `cls_flip has ${row.cls_flip.length} values, hidden size is ${e.hiddenSize}`);
  if (row.registers_flip && row.registers_flip.byteLength !== row.registers?.byteLength) {
    fail('vector-length', `registers_flip hold ${row.registers_flip.byteLength} bytes, registers ${row.registers?.byteLength ?? 0}`);
  }

  // Geometry: bucket, grid, crop.
  const p = e.patchSize;
  if (row.bucket_width % p !== 0 || row.bucket_height % p !== 0 || row.bucket_width < p || row.bucket_height < p) {
    fail('bucket', `bucket ${row.bucket_width}x${row.bucket_height} is not a multiple of the patch size ${p}`);
  }
  // A pooled cache (--pool N) stores one token per N×N patches.
  const cell = p * (e.preprocessing?.pool ?? 1);
  if (row.grid_h * cell !== row.bucket_height || row.grid_w * cell !== row.bucket_width) {
    const per = cell === p ? `patch ${p}` : `(patch ${p} x pool ${cell / p})`;
    fail('grid', `grid ${row.grid_h}x${row.grid_w} (h x w) is not bucket ${row.bucket_width}x${row.bucket_height} / ${per} = ${row.bucket_height / cell}x${row.bucket_width / cell}`);
  }
  if (row.width < 1 || row.height < 1) fail('crop', `image size ${row.width}x${row.height} is empty`);
  const inside = row.crop_x >= 0 && row.crop_y >= 0 && row.crop_w >= 1 && row.crop_h >= 1 &&
    row.crop_x + row.crop_w <= row.width && row.crop_y + row.crop_h <= row.height;
  if (!inside) fail('crop', `crop box ${box(row.crop_x, row.crop_y, row.crop_w, row.crop_h)} is not inside the ${row.width}x${row.height} upright image`);
  // A trainer's crops file (--crops) chose this row's bucket and crop, not the rule: only the
  // checks above (on the patch grid, inside the image) apply.
  if (e.preprocessing && !e.preprocessing.crops && inside) {
    const size = { width: row.width, height: row.height };
    const bucket = assignBucket(size, e.preprocessing.buckets);
    if (bucket.width !== row.bucket_width || bucket.height !== row.bucket_height) {
      fail('bucket', `a ${row.width}x${row.height} image goes to bucket ${bucket.width}x${bucket.height} under the recorded preprocessing, the row has ${row.bucket_width}x${row.bucket_height}`);
    } else {
      const c = cropBox(size, bucket, e.preprocessing.resize);
      if (c.x !== row.crop_x || c.y !== row.crop_y || c.w !== row.crop_w || c.h !== row.crop_h) {
        fail('crop', `crop box ${box(row.crop_x, row.crop_y, row.crop_w, row.crop_h)} differs from the ${e.preprocessing.resize} crop ${box(c.x, c.y, c.w, c.h)} of a ${row.width}x${row.height} image`);
      }
    }
  }

  // Values.
  const bad: string[] = [];
  for (const g of groups) {
    const clsBad = g.clsValues ? countNonFiniteNumbers(g.clsValues) : 0;
    if (clsBad) bad.push(`${g.cls} ${clsBad}`);
    const patchBad = g.patchBytes ? countNonFinite(g.patchBytes, e.dtype) : 0;
    if (patchBad) bad.push(`${g.patches} ${patchBad}`);
  }
  const regBad = row.registers ? countNonFinite(row.registers, e.dtype) : 0;
  if (regBad) bad.push(`registers ${regBad}`);
  const flipBad = (row.patches_flip ? countNonFinite(row.patches_flip, e.dtype) : 0) +
    (row.registers_flip ? countNonFinite(row.registers_flip, e.dtype) : 0) + (row.cls_flip ? countNonFiniteNumbers(row.cls_flip) : 0);
  if (flipBad) bad.push(`flipped copy ${flipBad}`);
  if (bad.length) fail('non-finite', `NaN/Inf values: ${bad.join(', ')}`);
  else if (row.cls.length && l2norm(row.cls) < MIN_CLS_NORM) fail('cls-degenerate', `CLS is all zeros (norm ${l2norm(row.cls)})`);
  return problems;
}
