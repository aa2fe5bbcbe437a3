/**
 * The resampler's WebAssembly SIMD kernel (src/image/resample.wat) against the scalar float64
 * resampler it replaced (test/helpers/resample-f64.ts), the committed bytes against the .wat, and
 * the kernel's shared memory under frames resampled in turns. Parity with Hugging Face:
 * image-parity.test.ts; against the ONNX graph and sharp's rotations: resample.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import type { ModelInfo } from '../src/model/info.js';
import type { Size } from '../src/image/buckets.js';
import { axisMap } from '../src/image/orientation.js';
import { normalisationOf, planResample, resample, RowResampler, type Normalisation } from '../src/image/resample.js';
import { structuredRgb } from './fixtures/images.js';
import { resampleScalar } from './helpers/resample-f64.js';

type Info = Pick<ModelInfo, 'family' | 'imageMean' | 'imageStd' | 'resample'>;
const IMAGENET = { imageMean: [0.485, 0.456, 0.406], imageStd: [0.229, 0.224, 0.225] } as const;
const DINOV3: Info = { family: 'dinov3', resample: 'bilinear', ...IMAGENET };
const DINOV2: Info = { family: 'dinov2', resample: 'bicubic', ...IMAGENET };
/** One 8-bit level in normalised units, at the smallest std. */
const LEVEL = 1 / (255 * 0.224);
/** The kernel's float output's largest measured difference from float64's, in levels (0.011), with margin. */
const TIE_LEVELS = 0.015;

test('the committed kernels (resample.wat, half.wat) are what scripts/build-wasm.mjs assembles', () => {
  const r = spawnSync(process.execPath, ['scripts/build-wasm.mjs', '--check'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
});

/**
 * Widths whose rows are not whole 16-byte vectors (3·W mod 16 ≠ 0 for every width here), shrinking,
 * enlarging and both at once, 1-pixel frames, and a frame larger than the kernel's 256 KiB chunk of
 * rows (333x300) so a line's taps straddle two chunks.
 */
const SIZES: Array<[Size, Size]> = [
  [{ width: 301, height: 199 }, { width: 64, height: 48 }],
  [{ width: 37, height: 23 }, { width: 112, height: 80 }],
  [{ width: 97, height: 61 }, { width: 32, height: 96 }],
  [{ width: 5, height: 3 }, { width: 14, height: 14 }],
  [{ width: 1, height: 1 }, { width: 14, height: 28 }],
  [{ width: 7, height: 1 }, { width: 3, height: 5 }],
  [{ width: 333, height: 300 }, { width: 40, height: 72 }],
  [{ width: 333, height: 300 }, { width: 400, height: 350 }],
];

/** Largest |a − b|. */
function maxDifference(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let max = 0;
  for (let k = 0; k < a.length; k++) max = Math.max(max, Math.abs(a[k]! - b[k]!));
  return max;
}

/**
 * For the 8-bit path: values that differ from the reference's, each of which must be one level
 * apart and sit near a tie: the reference's unrounded sum within TIE_LEVELS of k + 0.5, the most
 * the kernel's unrounded sums are measured to differ from the reference's (a value nearer a tie
 * than that may round either way). Returns how many there were.
 */
function tiesOnly(got: Float32Array, want: Float32Array, unrounded: Float32Array, norm: Normalisation, name: string): number {
  const plane = got.length / 3;
  let ties = 0;
  for (let k = 0; k < got.length; k++) {
    if (got[k] === want[k]) continue;
    const c = Math.floor(k / plane);
    const level = (unrounded[k]! + norm.mean[c]! / norm.std[c]!) * 255 * norm.std[c]!;
    assert.ok(Math.abs(got[k]! - want[k]!) <= LEVEL * 1.001, `${name}: value ${k} is ${got[k]}, not ${want[k]}`);
    assert.ok(Math.abs(level - Math.floor(level) - 0.5) < TIE_LEVELS, `${name}: value ${k} rounded from ${level}, not near a tie`);
    ties++;
  }
  return ties;
}

/**
 * The kernel (y pass in fixed point, resample.ts fixedWeights; x pass in float32) against float64
 * sums along x in the old code: measured max |Δ| 1.9e-4 (float output, 0.011 of an 8-bit level:
 * bicubic enlarging 37x23, where the weights are largest and so coarsest; 1.3e-5 on a 12 MP frame
 * shrunk to 256²), limit 2.5e-4 (1.35x; weights rounded without keeping each line's sum exact give
 * 3.1e-4). DINOv2's 8-bit values are the same but near ties (tiesOnly).
 */
test('the kernel equals the scalar float64 resampler: odd widths, shrink and enlarge, EXIF 1-8, bilinear and bicubic, DINOv3 float and DINOv2 8-bit', (t) => {
  let worst = 0, ties = 0, values = 0;
  for (const [size, out] of SIZES) {
    const rgb = structuredRgb(size.width, size.height, size.width);
    for (const info of [DINOV3, DINOV2, { ...DINOV3, resample: 'bicubic' } as Info]) {
      const norm = normalisationOf(info);
      for (let o = 1; o <= 8; o++) {
        const plan = planResample(size, out, axisMap(o), info.resample);
        const got = resample(rgb, size, plan, norm);
        const want = resampleScalar(rgb, size, plan, norm);
        const name = `${size.width}x${size.height} → ${out.width}x${out.height} EXIF ${o} ${info.family} ${info.resample}`;
        if (norm.eightBit) {
          ties += tiesOnly(got, want, resampleScalar(rgb, size, plan, { ...norm, eightBit: false }), norm, name);
          values += got.length;
        } else {
          const max = maxDifference(got, want);
          assert.ok(max <= 2.5e-4, `${name}: max ${max}`);
          worst = Math.max(worst, max);
        }
      }
    }
  }
  t.diagnostic(`worst max |Δ| (float output): ${worst.toExponential(2)}; 8-bit values a level apart near ties: ${ties} of ${values}`);
});

test('8-bit rounding in the kernel is half to even, after clamping, per channel', () => {
  // Two pixels shrunk to one: weights 1/2 and 1/2, so red 2.5, green 1.5, blue 254.5 exactly.
  const rgb = Uint8Array.from([2, 1, 254, 3, 2, 255]);
  const size = { width: 2, height: 1 };
  const norm: Normalisation = { mean: [0, 0, 0], std: [1, 1, 1], eightBit: true };
  const got = resample(rgb, size, planResample(size, { width: 1, height: 1 }, axisMap(1), 'bilinear'), norm);
  assert.deepEqual([...got].map((v) => Math.round(v * 255 * 1e4) / 1e4), [2, 2, 254]);
  // A bicubic step enlarged overshoots both ends: clamped to 0..255 first.
  const step = Uint8Array.from([0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 255, 255]);
  const wide = { width: 4, height: 1 };
  const up = resample(step, wide, planResample(wide, { width: 16, height: 1 }, axisMap(1), 'bicubic'), norm).map((v) => Math.round(v * 255));
  assert.equal(Math.min(...up), 0);
  assert.equal(Math.max(...up), 255);
  const unclamped = resample(step, wide, planResample(wide, { width: 16, height: 1 }, axisMap(1), 'bicubic'), { ...norm, eightBit: false });
  assert.ok(Math.min(...unclamped) < 0 && Math.max(...unclamped) > 1, 'the control overshoots');
});

test('frames resampled in turns on one thread (bands interleaved, as a worker does) give what each gives alone', () => {
  const frames = [
    { size: { width: 333, height: 300 }, out: { width: 48, height: 40 }, axes: axisMap(6), info: DINOV3 },
    { size: { width: 101, height: 77 }, out: { width: 224, height: 224 }, axes: axisMap(3), info: DINOV2 },
    { size: { width: 640, height: 480 }, out: { width: 64, height: 64 }, axes: axisMap(1), info: DINOV3 },
  ].map((f) => ({ ...f, rgb: structuredRgb(f.size.width, f.size.height, f.size.height), plan: planResample(f.size, f.out, f.axes, f.info.resample) }));
  const alone = frames.map((f) => resample(f.rgb, f.size, f.plan, normalisationOf(f.info)));
  const resamplers = frames.map((f) => new RowResampler(f.size, f.plan, normalisationOf(f.info)));
  const rowsAt = frames.map(() => 0);
  // 7 rows of each frame in turn (a band boundary inside most lines' taps).
  while (frames.some((f, k) => rowsAt[k]! < f.size.height)) {
    frames.forEach((f, k) => {
      const rows = Math.min(7, f.size.height - rowsAt[k]!);
      if (rows === 0) return;
      const rowBytes = f.size.width * 3;
      resamplers[k]!.add(f.rgb.subarray(rowsAt[k]! * rowBytes, (rowsAt[k]! + rows) * rowBytes));
      rowsAt[k]! += rows;
    });
  }
  resamplers.forEach((r, k) => assert.deepEqual(r.finish(), alone[k], `frame ${k}`));
});
