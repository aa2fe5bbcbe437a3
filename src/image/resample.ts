/**
 * Resize + normalise as Hugging Face's processors do it (torch's antialiased interpolate,
 * half-pixel centres), straight from the 8-bit frame as decoded, in a WebAssembly SIMD kernel
 * (resample.wat) driven from here:
 *
 * - per output position, the source taps and their weights are computed once per (size, filter):
 *   the same kernels, support and renormalisation over the taps inside the image as torch's
 *   antialiased path (`_compute_index_ranges_weights`: triangle for bilinear, Keys a = -0.5 for
 *   bicubic, support widened by the scale when shrinking);
 * - one pass over the source rows adds each, weighted, into the lines (along stored y) whose taps
 *   include it, 16 bytes at a time, in fixed point (int16 weights, exact int32 sums: two rows cost
 *   what one did in float32); a line whose taps are all in is filtered along stored x into the
 *   output in float32: the output is the only buffer the size of an image, so memory is the 8-bit
 *   source plus the output and a few lines, never a float frame;
 * - EXIF orientation is folded in (orientation.ts): the frame is read as stored and each pass
 *   writes to the upright position, so no rotated copy is made;
 * - each output pixel is rescaled and normalised as it is written, for DINOv2 after clamping and
 *   rounding half to even to 8 bits (its processor resizes the 8-bit image).
 *
 * The ONNX Resize graph (test/helpers/resize-graph.ts) and the scalar float64 code this replaced
 * (test/helpers/resample-f64.ts) are the same filter in floating point; tests hold this to both,
 * within what the fixed-point weights' rounding moves, and to Hugging Face (docs/pixel-parity.md).
 */
import type { ModelInfo, Resample } from '../model/info.js';
import type { Size } from './buckets.js';
import type { AxisMap } from './orientation.js';
import { resampleKernel } from './resample-kernel.js';

/** Taps of one axis: output i reads `size[i]` source positions from `start[i]`, weights at i·stride. */
export interface AxisTaps {
  start: Int32Array;
  size: Int32Array;
  stride: number;
  weights: Float64Array;
}

function triangle(x: number): number {
  x = Math.abs(x);
  return x < 1 ? 1 - x : 0;
}

/** Keys' cubic with a = -0.5, as torch's antialiased bicubic. */
function keys(x: number): number {
  const a = -0.5;
  x = Math.abs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

/** torch's antialiased weights for resizing `inSize` positions to `outSize` (align_corners false). */
export function axisTaps(inSize: number, outSize: number, filter: Resample): AxisTaps {
  const kernel = filter === 'bicubic' ? keys : triangle;
  const halfWidth = filter === 'bicubic' ? 2 : 1;
  const scale = inSize / outSize;
  const support = scale >= 1 ? halfWidth * scale : halfWidth;
  const invScale = scale >= 1 ? 1 / scale : 1;
  const stride = Math.ceil(support) * 2 + 1;
  const taps: AxisTaps = { start: new Int32Array(outSize), size: new Int32Array(outSize), stride, weights: new Float64Array(outSize * stride) };
  for (let i = 0; i < outSize; i++) {
    const center = scale * (i + 0.5);
    const min = Math.max(Math.trunc(center - support + 0.5), 0);
    const size = Math.min(Math.trunc(center + support + 0.5), inSize) - min;
    let total = 0;
    for (let j = 0; j < size; j++) {
      const w = kernel((j + min - center + 0.5) * invScale);
      taps.weights[i * stride + j] = w;
      total += w;
    }
    if (total !== 0) for (let j = 0; j < size; j++) taps.weights[i * stride + j]! /= total;
    taps.start[i] = min;
    taps.size[i] = size;
  }
  return taps;
}

/** The same taps read along an axis stored backwards: starts mirrored, weights reversed. */
export function mirrored(t: AxisTaps, inSize: number): AxisTaps {
  const out: AxisTaps = { start: new Int32Array(t.start.length), size: t.size, stride: t.stride, weights: new Float64Array(t.weights.length) };
  for (let i = 0; i < t.start.length; i++) {
    const n = t.size[i]!;
    out.start[i] = inSize - t.start[i]! - n;
    for (let j = 0; j < n; j++) out.weights[i * t.stride + j] = t.weights[i * t.stride + n - 1 - j]!;
  }
  return out;
}

export interface Normalisation {
  mean: readonly number[];
  std: readonly number[];
  /** Clamp to 0..255 and round half to even before normalising (DINOv2's 8-bit resize). */
  eightBit: boolean;
}

/**
 * DINOv3's processor rescales to [0, 1] floats before resizing, so its resize result is never
 * rounded. DINOv2's (BitImageProcessor) resizes the 8-bit image, so its result is clamped to
 * 0..255 and rounded (torchvision: clamp, then round half to even); bicubic overshoots at edges,
 * so both steps matter.
 */
export function normalisationOf(info: Pick<ModelInfo, 'family' | 'imageMean' | 'imageStd'>): Normalisation {
  return { mean: info.imageMean, std: info.imageStd, eightBit: info.family === 'dinov2' };
}

/** What to make of one stored frame: its axes' taps and where each pass writes. */
export interface ResamplePlan {
  /** Output positions along stored x, and along stored y. */
  alongX: AxisTaps;
  alongY: AxisTaps;
  transposed: boolean;
  out: Size;
}

const cache = new Map<string, AxisTaps>();

/** Taps are the same for every image of a size; a few hundred sizes cover most datasets. */
function cachedTaps(inSize: number, outSize: number, filter: Resample, flip: boolean): AxisTaps {
  const key = `${inSize} ${outSize} ${filter} ${flip}`;
  let t = cache.get(key);
  if (!t) {
    if (cache.size >= 512) cache.clear();
    const upright = axisTaps(inSize, outSize, filter);
    t = flip ? mirrored(upright, inSize) : upright;
    cache.set(key, t);
  }
  return t;
}

/** The plan for a stored frame of `stored` size that must become `out` (upright) under `map`. */
export function planResample(stored: Size, out: Size, map: AxisMap, filter: Resample): ResamplePlan {
  const [xOut, xFlip, yOut, yFlip] = map.transposed
    ? [out.height, map.flipY, out.width, map.flipX]
    : [out.width, map.flipX, out.height, map.flipY];
  return {
    alongX: cachedTaps(stored.width, xOut, filter, xFlip),
    alongY: cachedTaps(stored.height, yOut, filter, yFlip),
    transposed: map.transposed,
    out,
  };
}

/**
 * Columns of a transposed output (EXIF 5-8, phones' portrait photos) written together. Written one
 * at a time, each float of a column fell on another cache line: 12 MP to 1024² took 18-21 ms more
 * than the same frame upright; in blocks of 64, 7-13 ms (16 to 256 measured: docs/speed.md).
 */
const TRANSPOSED_BLOCK = 64;

/** Rows copied into the kernel's memory at a time (at least one row): small enough to stay in cache. */
const CHUNK_BYTES = 256 * 1024;

/** Byte offsets (16-aligned) of one frame's data in the kernel's memory while it adds a band. */
interface Layout {
  rows: number;
  acc: number;
  line: number;
  starts: number;
  sizes: number;
  xWeights: number;
  yWeights: number;
  norm: number;
  end: number;
}

const align16 = (n: number) => Math.ceil(n / 16) * 16;

/**
 * Resamples an RGB8 frame (HWC, as stored) to normalised float32 [3, H, W], upright, from its rows
 * in order, band by band (`add`), so the whole frame never has to be in one place.
 *
 * Along stored y first, in the WebAssembly SIMD kernel (resample-kernel.ts): each output line along
 * stored y is the weighted sum of its source rows, 16 bytes of a row at a time, into an int32
 * line the frame's width (fixedWeights); only the lines whose taps are open exist (a few). A
 * shrink's row feeds two or more lines, so the rows are taken in runs that the same lines share,
 * two lines a kernel call, and each 16 bytes are widened once for both. Finished lines are
 * filtered along x two at a time in float32 (one vector per RGB pixel; a finished line waits for
 * the next, the last of a frame goes alone) and written where the upright image has them. The
 * y sums are exact integers, so they depend neither on how rows are banded nor on which lines
 * share a call.
 */
export class RowResampler {
  private readonly out: Float32Array;
  private readonly lines: LineOrder;
  /**
   * Accumulator lines (line order[k] in slot k mod slots from when its taps open until it is
   * filtered along x), kept here between bands; a frame added in one band never needs them outside
   * the kernel.
   */
  private acc: Int32Array | undefined;
  /** Samples (int32) in an accumulator line. */
  private readonly lineSamples: number;
  private readonly xWeights: Float32Array;
  /** Per channel (lanes R, G, B, unused): the scale, then the shift of normalisation; then the y weights' unit. */
  private readonly normVectors: Float32Array;
  private readonly layout: Layout;
  private readonly rowBytes: number;
  private readonly chunkRows: number;
  /** Rows added so far, and the first line (in `order`) not finished. */
  private next = 0;
  private open = 0;
  /** A finished line (in `order`) whose x pass waits to be made with the next one's, or -1. */
  private waiting = -1;
  /**
   * A transposed plan's finished lines are columns of the output: they wait here, TRANSPOSED_BLOCK
   * at a time, and are written row by row, so each write fills whole cache lines of the output.
   */
  private block: { lines: Float32Array; at: Int32Array; count: number } | undefined;

  /** `out`: where the output goes (every value is written, so a reused buffer needs no clearing). */
  constructor(private readonly stored: Size, private readonly plan: ResamplePlan, private readonly norm: Normalisation, out?: Float32Array) {
    const { alongX: tx, alongY: ty } = plan;
    const length = outputLength(plan);
    if (out && out.length !== length) throw new Error(`output buffer holds ${out.length} floats, the plan makes ${length}`);
    this.out = out ?? new Float32Array(length);
    this.lines = lineOrder(ty, stored.height);
    this.rowBytes = stored.width * 3;
    // The x pass reads one sample past the last pixel; the y pass writes whole 16-sample vectors.
    this.lineSamples = align16(this.rowBytes + 1);
    this.xWeights = floatWeights(tx);
    this.normVectors = normVectors(norm, this.lines.unit);
    this.chunkRows = Math.max(1, Math.floor(CHUNK_BYTES / this.rowBytes));
    const xOut = tx.start.length;
    // The y pass reads up to 15 bytes past the last row of a chunk.
    const sizes = [this.chunkRows * this.rowBytes + 16, this.lines.slots * this.lineSamples * 4, 2 * 3 * xOut * 4, xOut * 4, xOut * 4, this.xWeights.byteLength, this.lines.weights.byteLength, 48];
    const at = sizes.map((_, k) => sizes.slice(0, k).reduce((a, s) => a + align16(s), 0));
    this.layout = { rows: at[0]!, acc: at[1]!, line: at[2]!, starts: at[3]!, sizes: at[4]!, xWeights: at[5]!, yWeights: at[6]!, norm: at[7]!, end: at[7]! + 48 };
  }

  /** The next whole rows of the frame. */
  add(band: Uint8Array): void {
    const count = band.length / this.rowBytes;
    if (!Number.isInteger(count) || this.next + count > this.stored.height) throw new Error(`a band of ${band.length} bytes does not fit the ${this.stored.width}x${this.stored.height} frame at row ${this.next}`);
    const tx = this.plan.alongX;
    const { layout: at, rowBytes } = this;
    const kernel = resampleKernel();
    const m = kernel.reserve(at.end);
    // The kernel's memory is shared by every frame this thread has open: this frame's state goes in and comes back out.
    m.i32.set(tx.start, at.starts / 4);
    m.i32.set(tx.size, at.sizes / 4);
    m.f32.set(this.xWeights, at.xWeights / 4);
    m.i16.set(this.lines.weights, at.yWeights / 2);
    m.f32.set(this.normVectors, at.norm / 4);
    if (this.acc) m.i32.set(this.acc, at.acc / 4);
    const { order, start, end, weightFrom } = this.lines;
    let { open, waiting } = this;
    for (let r = 0; r < count; r += this.chunkRows) {
      const n = Math.min(this.chunkRows, count - r);
      m.u8.set(band.subarray(r * rowBytes, (r + n) * rowBytes), at.rows);
      const c0 = this.next + r, c1 = c0 + n;
      // Runs of rows that the same lines (k from open to last - 1) take, two lines a call.
      for (let row = c0; row < c1;) {
        let last = open;
        while (last < order.length && start[last]! <= row) last++;
        let stop = c1;
        if (last < order.length && start[last]! < stop) stop = start[last]!;
        if (last > open && end[open]! < stop) stop = end[open]!;
        const rows = at.rows + (row - c0) * rowBytes;
        for (let k = open; k < last; k += 2) {
          const j = k + 1 < last ? k + 1 : k;
          kernel.vertical(rows, rowBytes, stop - row, rowBytes, at.yWeights + weightFrom[k]! + row * 2, this.slot(k), row === start[k], at.yWeights + weightFrom[j]! + row * 2, this.slot(j), row === start[j]);
        }
        for (; open < last && end[open] === stop; open++) {
          if (waiting < 0) waiting = open;
          else {
            this.filterAlongX(waiting, open);
            waiting = -1;
          }
        }
        row = stop;
      }
    }
    this.open = open;
    this.next += count;
    if (this.next === this.stored.height) {
      if (waiting >= 0) this.filterAlongX(waiting, waiting);
      this.writeBlock();
      return;
    }
    this.waiting = waiting;
    this.acc ??= new Int32Array(this.lines.slots * this.lineSamples);
    this.acc.set(m.i32.subarray(at.acc / 4, at.acc / 4 + this.acc.length));
  }

  /** Where line order[k]'s sums are in the kernel's memory. */
  private slot(k: number): number {
    return this.layout.acc + (k % this.lines.slots) * this.lineSamples * 4;
  }

  /** Finished lines order[a] and order[b] (b may be a) filtered along x, normalised and placed. */
  private filterAlongX(a: number, b: number): void {
    const { layout: at } = this;
    const { order } = this.lines;
    const tx = this.plan.alongX;
    const n = 3 * tx.start.length;
    const kernel = resampleKernel();
    kernel.horizontal(this.slot(a), this.slot(b), tx.start.length, at.starts, at.sizes, at.xWeights, tx.stride, at.norm, this.norm.eightBit, at.line, at.line + n * 4);
    const m = kernel.reserve(at.end);
    this.place(order[a]!, m.f32.subarray(at.line / 4, at.line / 4 + n));
    if (b !== a) this.place(order[b]!, m.f32.subarray(at.line / 4 + n, at.line / 4 + 2 * n));
  }

  /** Output line `i` along stored y (three planes along stored x) to where the upright image has it. */
  private place(i: number, line: Float32Array): void {
    const { out, plan } = this;
    if (plan.transposed) {
      const block = (this.block ??= { lines: new Float32Array(TRANSPOSED_BLOCK * line.length), at: new Int32Array(TRANSPOSED_BLOCK), count: 0 });
      block.lines.set(line, block.count * line.length);
      block.at[block.count++] = i;
      if (block.count === TRANSPOSED_BLOCK) this.writeBlock();
      return;
    }
    const { width, height } = plan.out;
    const n = line.length / 3;
    for (let c = 0; c < 3; c++) out.set(line.subarray(c * n, (c + 1) * n), c * width * height + i * width);
  }

  /**
   * The waiting columns of a transposed plan, written one output row of all of them at a time: as
   * one run when they are neighbours in order (most plans' lines come in order, or reversed on a
   * mirrored axis), else one by one (an enlarging mirrored axis's lines).
   */
  private writeBlock(): void {
    const { block, out } = this;
    if (!block || block.count === 0) return;
    const { width, height } = this.plan.out;
    const { lines, at, count } = block;
    const lineLength = lines.length / TRANSPOSED_BLOCK;
    const n = lineLength / 3;
    const step = count > 1 ? at[1]! - at[0]! : 1;
    let run = step === 1 || step === -1;
    for (let j = 2; run && j < count; j++) run = at[j]! - at[j - 1]! === step;
    for (let c = 0; c < 3; c++) {
      for (let a = 0; a < n; a++) {
        const row = c * width * height + a * width;
        let from = c * n + a;
        if (run) for (let j = 0, o = row + at[0]!; j < count; j++, o += step, from += lineLength) out[o] = lines[from]!;
        else for (let j = 0; j < count; j++, from += lineLength) out[row + at[j]!] = lines[from]!;
      }
    }
    block.count = 0;
  }

  /** The normalised output, once every row has come. */
  finish(): Float32Array {
    if (this.next !== this.stored.height) throw new Error(`${this.next} of ${this.stored.height} rows resampled`);
    return this.out;
  }
}

/**
 * x·(1/(255·std)) − mean/std per channel, in float32 steps as the ONNX graph folded it (the kernel
 * does the clamp and rounding first for DINOv2); then `unit`, the y weights' step, in every lane.
 */
function normVectors(norm: Normalisation, unit: number): Float32Array {
  const v = new Float32Array(12);
  for (let c = 0; c < 3; c++) {
    v[c] = 1 / (255 * norm.std[c]!);
    v[4 + c] = -norm.mean[c]! / norm.std[c]!;
  }
  v.fill(unit, 8);
  return v;
}

/** What the y pass needs of an axis's taps, the same for every frame of its size (made once per taps). */
interface LineOrder {
  /** Output lines in the order their taps start (reversed on a mirrored axis): stored row order. */
  order: Int32Array;
  /** Line order[k]'s first source row, and the row after its last. */
  start: Int32Array;
  end: Int32Array;
  /** Bytes from the weights' start to where line order[k]'s weight for row 0 would be (int16). */
  weightFrom: Int32Array;
  /** Accumulator slots: one more than the lines open at once, as a finished line keeps its slot while it waits for the next. */
  slots: number;
  /** The weights in fixed point (fixedWeights), each `unit` in value. */
  weights: Int16Array;
  unit: number;
}

const lineOrders = new WeakMap<AxisTaps, LineOrder>();

function lineOrder(t: AxisTaps, rows: number): LineOrder {
  let lines = lineOrders.get(t);
  if (!lines) {
    const end = (i: number) => t.start[i]! + t.size[i]!;
    const order = Int32Array.from(t.start.keys()).sort((a, b) => t.start[a]! - t.start[b]! || end(a) - end(b));
    const start = new Int32Array(order.length), ends = new Int32Array(order.length), weightFrom = new Int32Array(order.length);
    for (let k = 0; k < order.length; k++) {
      const i = order[k]!;
      start[k] = t.start[i]!;
      ends[k] = end(i);
      weightFrom[k] = (i * t.stride - start[k]!) * 2;
    }
    lines = { order, start, end: ends, weightFrom, slots: mostOpen(t, rows) + 1, ...fixedWeights(t) };
    lineOrders.set(t, lines);
  }
  return lines;
}

const floats = new WeakMap<AxisTaps, Float32Array>();

/** An axis's weights in float32, as the x pass reads them. */
function floatWeights(t: AxisTaps): Float32Array {
  let w = floats.get(t);
  if (!w) floats.set(t, (w = new Float32Array(t.weights)));
  return w;
}

/**
 * An axis's weights in fixed point for the y pass, int16 in units of 2^-bits, `bits` the most that
 * keeps every weight within int16 and 255 times a line's Σ|W| within int32 (the sum of any line of
 * 8-bit samples). Each line's weights are rounded so that they sum to exactly what its weights
 * sum to (1, in units): each rounded down, then up by one where the remainders are largest. So a
 * flat area comes out exact, and elsewhere a sample is off by Σ e_j·(p_j − p̄), e_j within one unit
 * (2^-15 of the largest weight or less): at most 0.011 of an 8-bit level measured, on sharp edges
 * enlarged, where weights are largest (docs/pixel-parity.md).
 */
function fixedWeights(t: AxisTaps): { weights: Int16Array; unit: number } {
  let largest = 0, widest = 0;
  for (let i = 0; i < t.start.length; i++) {
    let sum = 0;
    for (let j = 0; j < t.size[i]!; j++) {
      const w = Math.abs(t.weights[i * t.stride + j]!);
      largest = Math.max(largest, w);
      sum += w;
    }
    widest = Math.max(widest, sum);
  }
  const INT16_MAX = 32767, INT32_MAX = 2 ** 31 - 1;
  // Rounding moves each weight by less than one unit, so each line's Σ|W| keeps a margin of its taps.
  const bits = Math.floor(Math.min(Math.log2(INT16_MAX / (largest || 1)), Math.log2((INT32_MAX / 255 - t.stride) / (widest || 1))));
  const weights = new Int16Array(t.weights.length);
  for (let i = 0; i < t.start.length; i++) {
    const from = i * t.stride, n = t.size[i]!;
    const scaled = Array.from(t.weights.subarray(from, from + n), (w) => w * 2 ** bits);
    let short = Math.round(scaled.reduce((a, w) => a + w, 0));
    scaled.forEach((w, j) => (short -= weights[from + j] = Math.floor(w)));
    const byRemainder = scaled.map((_, j) => j).sort((a, b) => (scaled[b]! - weights[from + b]!) - (scaled[a]! - weights[from + a]!) || a - b);
    for (let k = 0; k < short; k++) weights[from + byRemainder[k]!]!++;
  }
  return { weights, unit: 2 ** -bits };
}

/** The most lines whose taps hold any one row: the accumulator lines a frame needs at once. */
function mostOpen(t: AxisTaps, rows: number): number {
  const delta = new Int32Array(rows + 1);
  for (let i = 0; i < t.start.length; i++) {
    delta[t.start[i]!]!++;
    delta[t.start[i]! + t.size[i]!]!--;
  }
  let open = 0, most = 1;
  for (let r = 0; r < rows; r++) most = Math.max(most, (open += delta[r]!));
  return most;
}

/** Floats in a plan's output: three planes of the bucket. */
export function outputLength(plan: ResamplePlan): number {
  return 3 * plan.out.width * plan.out.height;
}

/** The whole frame at once (`rgb` may be a view), into `out` if given. */
export function resample(rgb: Uint8Array, stored: Size, plan: ResamplePlan, norm: Normalisation, out?: Float32Array): Float32Array {
  const r = new RowResampler(stored, plan, norm, out);
  r.add(rgb);
  return r.finish();
}
