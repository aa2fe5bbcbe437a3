/**
 * The resampler (src/image/resample.ts) against worked weights, against the ONNX Resize graph it
 * replaced (an independent implementation, test/helpers/resize-graph.ts), and with EXIF
 * orientation folded in against sharp's rotated frame. Hugging Face parity: image-parity.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import ort from '../src/model/ort.js';
import type { ModelInfo } from '../src/model/info.js';
import { cropBox, type Bucket, type CropBox, type ResizeMode, type Size } from '../src/image/buckets.js';
import { decodeRgb, decodeStored, ImageError, readHeader, type DecodeOptions } from '../src/image/decode.js';
import { axisMap } from '../src/image/orientation.js';
import { axisTaps, mirrored, normalisationOf, planResample, resample } from '../src/image/resample.js';
import { ImagePool, SPARE_OUTPUT_BYTES } from '../src/image/image-pool.js';
import { structuredRgb } from './fixtures/images.js';
import { buildPreprocessModel } from './helpers/resize-graph.js';

type Info = Pick<ModelInfo, 'family' | 'imageMean' | 'imageStd' | 'resample'>;
const IMAGENET = { imageMean: [0.485, 0.456, 0.406], imageStd: [0.229, 0.224, 0.225] } as const;
const DINOV3: Info = { family: 'dinov3', resample: 'bilinear', ...IMAGENET };
const DINOV2: Info = { family: 'dinov2', resample: 'bicubic', ...IMAGENET };
const OPTS: DecodeOptions = { maxPixels: 100_000_000, background: '#ffffff', icc: 'ignore' };
/** One 8-bit level in normalised units, at the smallest std. */
const LEVEL = 1 / (255 * 0.224);

const weightsOf = (t: ReturnType<typeof axisTaps>, i: number) => [...t.weights.subarray(i * t.stride, i * t.stride + t.size[i]!)];
const close = (got: number[], want: number[]) => got.length === want.length && got.every((g, k) => Math.abs(g - want[k]!) < 1e-12);

test("taps are torch's antialiased weights: worked by hand for a shrink and a bicubic enlargement", () => {
  // 4 → 2, triangle widened by the scale 2: centres 1 and 3, support 2, renormalised at the edges.
  const shrink = axisTaps(4, 2, 'bilinear');
  assert.deepEqual([...shrink.start], [0, 1]);
  assert.deepEqual([...shrink.size], [3, 3]);
  assert.ok(close(weightsOf(shrink, 0), [3 / 7, 3 / 7, 1 / 7]), String(weightsOf(shrink, 0)));
  assert.ok(close(weightsOf(shrink, 1), [1 / 7, 3 / 7, 3 / 7]), String(weightsOf(shrink, 1)));
  // 2 → 4 bicubic (Keys a = -0.5): output 0 sits at 0.25, taps outside the image dropped.
  const enlarge = axisTaps(2, 4, 'bicubic');
  const [k0, k1] = [0.8671875, -0.0703125]; // keys(0.25), keys(1.25)
  assert.ok(close(weightsOf(enlarge, 0), [k0 / (k0 + k1), k1 / (k0 + k1)]), String(weightsOf(enlarge, 0)));
  // Every output's weights sum to one, for odd sizes too; mirroring reverses them.
  for (const [n, m] of [[97, 31], [31, 97], [5, 3], [1, 7], [7, 1]] as const) {
    for (const filter of ['bilinear', 'bicubic'] as const) {
      const t = axisTaps(n, m, filter);
      const back = mirrored(t, n);
      for (let i = 0; i < m; i++) {
        assert.ok(Math.abs(weightsOf(t, i).reduce((a, b) => a + b, 0) - 1) < 1e-12, `${n}→${m} ${filter} output ${i}`);
        assert.equal(back.start[i], n - t.start[i]! - t.size[i]!);
        assert.deepEqual(weightsOf(back, i), weightsOf(t, i).reverse());
      }
    }
  }
});

/** Runs the ONNX graph on an upright RGB8 frame. */
async function graphPixels(info: Info, rgb: Uint8Array, size: Size, out: Size): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(buildPreprocessModel(info));
  try {
    const result = await session.run({
      rgb: new ort.Tensor('uint8', rgb, [size.height, size.width, 3]),
      size: new ort.Tensor('int64', BigInt64Array.from([BigInt(out.height), BigInt(out.width)]), [2]),
    });
    return result.pixel_values!.data as Float32Array;
  } finally {
    await session.release();
  }
}

function differences(a: Float32Array, b: Float32Array): { max: number; mean: number; off: number } {
  assert.equal(a.length, b.length);
  let max = 0, sum = 0, off = 0;
  for (let k = 0; k < a.length; k++) {
    const d = Math.abs(a[k]! - b[k]!);
    max = Math.max(max, d);
    sum += d;
    if (d > LEVEL / 2) off++;
  }
  return { max, mean: sum / a.length, off: off / a.length };
}

const SIZES: Array<[Size, Size, string]> = [
  [{ width: 301, height: 199 }, { width: 64, height: 48 }, 'shrink'],
  [{ width: 37, height: 23 }, { width: 112, height: 80 }, 'enlarge'],
  [{ width: 97, height: 61 }, { width: 32, height: 96 }, 'shrink x, enlarge y'],
  [{ width: 5, height: 3 }, { width: 14, height: 14 }, 'tiny, odd'],
  [{ width: 1, height: 1 }, { width: 14, height: 28 }, 'one pixel'],
];

/**
 * Against the graph (float32 throughout): measured max |d| 9.3e-5 (DINOv3, enlarging; 1.6e-5
 * shrinking), as the y pass sums in fixed point (resample.ts fixedWeights: a weight within 2^-15 of
 * the largest); DINOv2 identical but where a value sits within that of a rounding boundary (one
 * level; 0.17 % of the tiny 5x3 frame's values, 0.026 % of the others' at most). Limits: 1.5e-4
 * (1.6x) and 0.25 % of values one level off; the control (no 8-bit rounding for DINOv2) must be
 * off by more than 1/20 of a level on average wherever the frame is not flat.
 */
test('resample equals the ONNX Resize graph: shrink, enlarge, mixed, odd and one-pixel frames; DINOv3 float, DINOv2 8-bit', async (t) => {
  for (const [size, out, name] of SIZES) {
    const rgb = structuredRgb(size.width, size.height, size.width);
    for (const info of [DINOV3, DINOV2]) {
      const ours = resample(rgb, size, planResample(size, out, axisMap(1), info.resample), normalisationOf(info));
      const d = differences(ours, await graphPixels(info, rgb, size, out));
      t.diagnostic(`${name} ${info.family}: max ${d.max.toExponential(2)} mean ${d.mean.toExponential(2)} off ${d.off}`);
      if (info.family === 'dinov3') assert.ok(d.max <= 1.5e-4, `${name}: max ${d.max}`);
      else {
        assert.ok(d.max <= LEVEL * 1.001, `${name}: max ${d.max}`);
        assert.ok(d.off <= 2.5e-3, `${name}: ${d.off} of values a level off`);
        if (size.width === 1) continue; // one flat pixel: rounding changes nothing
        const unrounded = resample(rgb, size, planResample(size, out, axisMap(1), info.resample), { ...normalisationOf(info), eightBit: false });
        assert.ok(differences(unrounded, ours).mean > LEVEL / 20, `${name}: control`);
      }
    }
  }
});

/**
 * EXIF 1-8 folded into the resampler against sharp's rotated frame resampled upright, whole and
 * cover-cropped: the same weights summed in another order, and for EXIF 5-8 the fixed-point pass
 * along the other axis (measured max 9.5e-7 for DINOv3 EXIF 1-4, 5.7e-5 for 5-8; DINOv2's 8-bit
 * values a level apart on 0.043 % at most). Limits 1e-4 (1.75x) and 0.05 % (as before).
 */
test('EXIF orientations 1-8, whole frames and cover crops: the stored frame resampled with its axes equals the rotated frame', async (t) => {
  const [w, h] = [83, 47];
  const raw = sharp(structuredRgb(w, h, 3), { raw: { width: w, height: h, channels: 3 } });
  const cases: Array<[ResizeMode, Size]> = [['stretch', { width: 32, height: 48 }], ['cover', { width: 48, height: 32 }], ['cover', { width: 16, height: 64 }]];
  for (let o = 1; o <= 8; o++) {
    const bytes = await raw.clone().withMetadata({ orientation: o }).png().toBuffer();
    const header = await readHeader(bytes, OPTS);
    assert.deepEqual([header.width, header.height], o >= 5 ? [h, w] : [w, h]);
    for (const [mode, size] of cases) {
      const bucket: Bucket = { ...size, trainer: size };
      const crop = cropBox(header, bucket, mode);
      const upright = await decodeRgb(bytes, crop, header, OPTS);
      const stored = await decodeStored(bytes, crop, header, OPTS);
      for (const info of [DINOV3, DINOV2]) {
        const want = resample(upright.data, upright, planResample(upright, size, axisMap(1), info.resample), normalisationOf(info));
        const got = resample(stored.data, stored, planResample(stored, size, stored.axes, info.resample), normalisationOf(info));
        const d = differences(got, want);
        t.diagnostic(`EXIF ${o} ${mode} ${size.width}x${size.height} ${info.family}: max ${d.max.toExponential(2)} off ${d.off}`);
        if (info.family === 'dinov3') assert.ok(d.max <= 1e-4, `EXIF ${o} ${mode}: max ${d.max}`);
        else assert.ok(d.max <= LEVEL * 1.001 && d.off <= 5e-4, `EXIF ${o} ${mode}: max ${d.max}, off ${d.off}`);
      }
    }
  }
});

/** A PNG of `size` with EXIF `orientation`, its header, and what decoding and resampling it here gives. */
async function fileAndWant(size: Size, orientation: number, seed: number, out: Size, filter: 'bilinear' | 'bicubic', box?: (h: Size) => CropBox) {
  const bytes = await sharp(structuredRgb(size.width, size.height, seed), { raw: { ...size, channels: 3 } }).withMetadata({ orientation }).png().toBuffer();
  const header = await readHeader(bytes, OPTS);
  const crop = box?.(header) ?? { x: 0, y: 0, w: header.width, h: header.height };
  const stored = await decodeStored(bytes, crop, header, OPTS);
  const want = resample(stored.data, stored, planResample(stored, out, stored.axes, filter), normalisationOf(DINOV3));
  return { job: { bytes, header, box: crop, decode: OPTS, out, filter, norm: normalisationOf(DINOV3) }, want };
}

test('a worker decodes the file and gives the pixels decode and resample give here: EXIF 6 folded in, a crop box, the bytes left as they were', async () => {
  const out = { width: 56, height: 42 };
  const pool = new ImagePool(2);
  try {
    for (const box of [undefined, (h: Size) => ({ x: 7, y: 3, w: h.width - 20, h: h.height - 9 })]) {
      const { job, want } = await fileAndWant({ width: 120, height: 90 }, 6, 1, out, 'bilinear', box);
      const before = Buffer.from(job.bytes);
      assert.deepEqual((await pool.run(job)).pixels, want, box ? 'crop box' : 'whole frame');
      assert.deepEqual(job.bytes, before, 'the caller keeps its bytes');
    }
  } finally {
    await pool.close();
  }
});

test('input buffers kept from earlier files carry later ones, larger or smaller, one after another and at once; a view into a larger buffer sends only its bytes', async () => {
  const out = { width: 28, height: 20 };
  const sizes = [{ width: 120, height: 90 }, { width: 30, height: 22 }, { width: 640, height: 300 }, { width: 31, height: 9 }];
  const jobs = await Promise.all(sizes.map((size, k) => fileAndWant(size, k + 1, k + 2, out, 'bicubic')));
  const pool = new ImagePool(1);
  try {
    for (const [k, j] of jobs.entries()) assert.deepEqual((await pool.run(j.job)).pixels, j.want, `file ${k} alone`);
    const together = await Promise.all([...jobs, ...jobs].map((j) => pool.run(j.job)));
    together.forEach((got, k) => assert.deepEqual(got.pixels, jobs[k % jobs.length]!.want, `file ${k % jobs.length} among others`));
    // A member of a larger read (as a tar chunk holds it): the file's bytes only, between others'.
    const [j] = jobs;
    const chunk = Buffer.concat([Buffer.alloc(1000, 7), j!.job.bytes, Buffer.alloc(5000, 9)]);
    assert.deepEqual((await pool.run({ ...j!.job, bytes: chunk.subarray(1000, 1000 + j!.job.bytes.length) })).pixels, j!.want, 'a view');
  } finally {
    await pool.close();
  }
});

test('a file the worker cannot decode fails as an image (libvips says why), and the worker goes on with the next', async () => {
  const out = { width: 28, height: 20 };
  const { job, want } = await fileAndWant({ width: 64, height: 48 }, 1, 5, out, 'bilinear');
  const pool = new ImagePool(1);
  try {
    const truncated = job.bytes.subarray(0, job.bytes.length - 200);
    await assert.rejects(pool.run({ ...job, bytes: truncated }), (e: unknown) => e instanceof ImageError && e.stage === 'decode' && /png|read|end|truncat/i.test(e.message));
    assert.deepEqual((await pool.run(job)).pixels, want, 'the next file');
  } finally {
    await pool.close();
  }
});

test('an output buffer kept from an earlier frame is written whole, whatever it held; a wrong-sized one is refused', async () => {
  const norm = normalisationOf(DINOV3);
  const size = { width: 90, height: 70 };
  const out = { width: 28, height: 20 };
  for (const [k, filter] of (['bilinear', 'bicubic'] as const).entries()) {
    const frame = structuredRgb(size.width, size.height, k + 3);
    // EXIF 8 (transposed and flipped): the output lines land out of row order.
    const plan = planResample(size, out, axisMap(8), filter);
    const want = resample(frame, size, plan, norm);
    const dirty = new Float32Array(want.length).fill(Number.NaN);
    assert.deepEqual(resample(frame, size, plan, norm, dirty), want, filter);
    assert.throws(() => resample(frame, size, plan, norm, new Float32Array(want.length - 1)), /output buffer holds 1679 floats, the plan makes 1680/);
  }
  // Through the pool: planes given back (here spoilt first) carry the next images' pixels.
  const { job, want } = await fileAndWant(size, 1, 9, out, 'bilinear');
  const pool = new ImagePool(2);
  try {
    for (let k = 0; k < 6; k++) {
      const { pixels: got } = await pool.run(job);
      assert.deepEqual(got, want, `frame ${k}`);
      got.fill(Number.NaN);
      pool.recycle(got);
      assert.equal(got.length, 0, 'the plane went to a worker');
    }
    const view = new Float32Array(8).subarray(2);
    pool.recycle(view);
    assert.equal(view.length, 6, 'a view is left where it is');
    const big = new Float32Array(SPARE_OUTPUT_BYTES / 4 + 1);
    pool.recycle(big);
    assert.equal(big.length, 0, 'a plane too big to be kept is freed at once (its memory not left to the collector)');
  } finally {
    await pool.close();
  }
});
