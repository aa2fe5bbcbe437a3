/**
 * The resampler as it was before its WebAssembly kernel (src/image/resample.ts until 2026-12-02):
 * along stored x first in float64 sums, each filtered row added into float32 output lines. Kept as
 * the reference test/resample.test.ts holds the kernel to (same taps, same orientation folding).
 */
import type { Size } from '../../src/image/buckets.js';
import type { AxisTaps, Normalisation, ResamplePlan } from '../../src/image/resample.js';

/**
 * For each stored row, the output lines (along stored y) it feeds and with which weight, in
 * source-row order: the inverse of the y taps, so each row is filtered along x once.
 */
function rowFeeds(t: AxisTaps, rows: number): { first: Int32Array; line: Int32Array; weight: Float64Array } {
  const first = new Int32Array(rows + 1);
  for (let i = 0; i < t.start.length; i++) for (let j = 0; j < t.size[i]!; j++) first[t.start[i]! + j + 1]!++;
  for (let r = 0; r < rows; r++) first[r + 1]! += first[r]!;
  const fill = first.slice(0, rows);
  const line = new Int32Array(first[rows]!);
  const weight = new Float64Array(first[rows]!);
  for (let i = 0; i < t.start.length; i++) {
    for (let j = 0; j < t.size[i]!; j++) {
      const k = fill[t.start[i]! + j]!++;
      line[k] = i;
      weight[k] = t.weights[i * t.stride + j]!;
    }
  }
  return { first, line, weight };
}

/**
 * Resamples an RGB8 frame (HWC, as stored) to normalised float32 [3, H, W], upright, from its rows
 * in order, band by band (`add`), so the whole frame never has to be in one place.
 *
 * Along stored x first, four source rows at a time, into float rows the output's width; each row
 * is added, weighted, into the output lines it feeds. (The other order, full-width float lines
 * along y first, measured 2x slower in V8.) The sums do not depend on how rows are banded.
 */
export class ScalarRowResampler {
  private readonly out: Float32Array;
  private readonly feeds: ReturnType<typeof rowFeeds>;
  private readonly rows: Float64Array[];
  private readonly rowBytes: number;
  private next = 0;

  constructor(private readonly stored: Size, private readonly plan: ResamplePlan, private readonly norm: Normalisation) {
    this.out = new Float32Array(3 * plan.out.width * plan.out.height);
    this.feeds = rowFeeds(plan.alongY, stored.height);
    this.rows = Array.from({ length: ROWS_AT_ONCE }, () => new Float64Array(plan.alongX.start.length * 3));
    this.rowBytes = stored.width * 3;
  }

  /** The next whole rows of the frame. */
  add(band: Uint8Array): void {
    const count = band.length / this.rowBytes;
    if (!Number.isInteger(count) || this.next + count > this.stored.height) throw new Error(`a band of ${band.length} bytes does not fit the ${this.stored.width}x${this.stored.height} frame at row ${this.next}`);
    const { alongX: tx, transposed, out: size } = this.plan;
    const { out, feeds, rows, rowBytes } = this;
    const plane = size.width * size.height;
    // Where output (along x: a, along y: b) lands: upright (x, y) = (a, b), or (b, a) when transposed.
    const stepA = transposed ? size.width : 1;
    const stepB = transposed ? 1 : size.width;
    for (let r = 0; r < count; r += ROWS_AT_ONCE) {
      const n = Math.min(ROWS_AT_ONCE, count - r);
      if (n === ROWS_AT_ONCE) filterFourRows(band, r * rowBytes, rowBytes, tx, rows);
      else for (let k = 0; k < n; k++) filterFourRows(band, (r + k) * rowBytes, 0, tx, [rows[k]!, rows[k]!, rows[k]!, rows[k]!]);
      for (let k = 0; k < n; k++) {
        const row = rows[k]!;
        const source = this.next + r + k;
        for (let f = feeds.first[source]!; f < feeds.first[source + 1]!; f++) {
          const w = feeds.weight[f]!;
          let o = feeds.line[f]! * stepB;
          for (let a = 0; a < tx.start.length; a++, o += stepA) {
            out[o] += w * row[a * 3]!;
            out[o + plane] += w * row[a * 3 + 1]!;
            out[o + 2 * plane] += w * row[a * 3 + 2]!;
          }
        }
      }
    }
    this.next += count;
  }

  /** The normalised output, once every row has come. */
  finish(): Float32Array {
    if (this.next !== this.stored.height) throw new Error(`${this.next} of ${this.stored.height} rows resampled`);
    normalise(this.out, this.plan.out.width * this.plan.out.height, this.norm);
    return this.out;
  }
}

/** The whole frame at once (`rgb` may be a view). */
export function resampleScalar(rgb: Uint8Array, stored: Size, plan: ResamplePlan, norm: Normalisation): Float32Array {
  const r = new ScalarRowResampler(stored, plan, norm);
  r.add(rgb);
  return r.finish();
}

/** Source rows filtered along x per call: one weight load serves four rows (measured 1.45x faster than one row at a time in V8). */
const ROWS_AT_ONCE = 4;

/**
 * Four source rows (RGB8 from `base`, `rowBytes` apart) filtered along x into `rows` (RGB float per
 * output). With `rowBytes` 0 the same row is filtered four times into the same buffer (the tail).
 */
function filterFourRows(rgb: Uint8Array, base: number, rowBytes: number, tx: AxisTaps, rows: readonly Float64Array[]): void {
  const { start, size, weights, stride } = tx;
  const [q0, q1, q2, q3] = rows as [Float64Array, Float64Array, Float64Array, Float64Array];
  for (let a = 0; a < start.length; a++) {
    let w = a * stride;
    const end = w + size[a]!;
    let p = base + start[a]! * 3;
    let r0 = 0, g0 = 0, b0 = 0, r1 = 0, g1 = 0, b1 = 0, r2 = 0, g2 = 0, b2 = 0, r3 = 0, g3 = 0, b3 = 0;
    for (; w < end; w++, p += 3) {
      const k = weights[w]!;
      r0 += k * rgb[p]!; g0 += k * rgb[p + 1]!; b0 += k * rgb[p + 2]!;
      const p1 = p + rowBytes;
      r1 += k * rgb[p1]!; g1 += k * rgb[p1 + 1]!; b1 += k * rgb[p1 + 2]!;
      const p2 = p1 + rowBytes;
      r2 += k * rgb[p2]!; g2 += k * rgb[p2 + 1]!; b2 += k * rgb[p2 + 2]!;
      const p3 = p2 + rowBytes;
      r3 += k * rgb[p3]!; g3 += k * rgb[p3 + 1]!; b3 += k * rgb[p3 + 2]!;
    }
    const o = a * 3;
    q0[o] = r0; q0[o + 1] = g0; q0[o + 2] = b0;
    q1[o] = r1; q1[o + 1] = g1; q1[o + 2] = b1;
    q2[o] = r2; q2[o + 1] = g2; q2[o + 2] = b2;
    q3[o] = r3; q3[o + 1] = g3; q3[o + 2] = b3;
  }
}

/** Round half to even, as torch.round and ONNX Round do. */
export function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** x·(1/(255·std)) − mean/std per channel, in float32 steps as the graph folds it. */
function normalise(out: Float32Array, plane: number, norm: Normalisation): void {
  for (let c = 0; c < 3; c++) {
    const scale = Math.fround(1 / (255 * norm.std[c]!));
    const shift = Math.fround(-norm.mean[c]! / norm.std[c]!);
    const end = (c + 1) * plane;
    if (norm.eightBit) {
      for (let o = c * plane; o < end; o++) out[o] = Math.fround(roundHalfEven(Math.min(255, Math.max(0, out[o]!))) * scale) + shift;
    } else {
      for (let o = c * plane; o < end; o++) out[o] = Math.fround(out[o]! * scale) + shift;
    }
  }
}
