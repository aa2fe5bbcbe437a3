/**
 * Preprocessing parity with Hugging Face (issue 7): the rows `dinofeat extract` stores, against
 * transformers' DINOv3 preprocessing + DINOv3ViTModel on the same checkpoint (test/hf-parity.py),
 * on the real photos in examples/images, shrinking, enlarging and cropping, and on generated
 * images in the formats and orientations photos come in. Per image, every metric within LIMITS
 * (set at the measured level, docs/feature-parity.md). Controls, each a plausible preprocessing bug
 * (8-bit rounding of the resized pixels, a half-pixel shift, a bicubic filter, an ignored EXIF
 * orientation), must each fall outside every one of the limits, each metric alone. DINOv2 (with
 * registers) against both backends of its processor, BitImageProcessor: dinofeat follows the
 * torchvision one (V2_LIMITS), not the PIL one.
 */
import { before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import sharp, { type Sharp } from 'sharp';
import { convertCheckpoint } from '../src/convert/convert.js';
import { structuredImage } from './fixtures/images.js';
import { GOLDEN } from './fixtures/reference-outputs.js';
import { makeTinyModel, type TinyModel } from './fixtures/tiny-model.js';
import { runCli } from './helpers/cli.js';
import { pythonJson } from './helpers/python.js';
import { tempDir } from './helpers/temp.js';

const PHOTOS = path.resolve('examples/images');
/**
 * Measured (cosines in float64, docs/feature-parity.md), worst image: 1 - cos 5.9e-13 for CLS,
 * 4.2e-10 for the worst patch, 7.9e-12 for the patch mean; max |d| 9.1e-5 (enlarging to 832x1216;
 * outputs have std ~1). Limits ~25x those on 1 - cos, which grows as the square of the error, so
 * 5x on the error itself, as 5.5x on max |d|: room for another CPU's float32 kernels, not for a
 * different resize. A replacement resampler (the host-performance issue's) has a budget of 1e-6
 * per token (CLS and every patch) and may raise cls / patchMin up to that, no further: 8-bit
 * rounding of the resized pixels, the nearest control, is at >= 6.3e-6 on the worst patch.
 */
const LIMITS = { cls: 1.5e-11, patchMin: 1e-8, patchMean: 2e-10, maxAbs: 5e-4 };
type Limits = typeof LIMITS;
type Metric = keyof Limits;
const METRICS: Metric[] = ['cls', 'patchMin', 'patchMean', 'maxAbs'];

interface Metrics {
  cls_cos: number;
  patch_cos_mean: number;
  patch_cos_min: number;
  max_abs: number;
}

interface ParityRow extends Metrics {
  run: string;
  key: string;
  size: [number, number];
  stored_size: [number, number];
  bucket: [number, number];
  crop: number[];
  stored_crop: number[];
  controls: Record<string, Metrics>;
  /** DINOv2 rows: against each of the processor's backends (the top-level metrics: torchvision). */
  backends?: Record<'pil' | 'torchvision', Metrics>;
}

interface Run {
  name: string;
  images: string;
  flags: string[];
}

/** A model as dinofeat runs it and the checkpoint Hugging Face loads. */
interface ParityModel {
  onnx: string;
  checkpoint: string;
}

let model: TinyModel;
let rows: ParityRow[];
/** What each run's rows were compared with. */
const references = new Map<string, string>();

/** Each metric as a distance from perfect agreement, the unit LIMITS is in. */
const distances = (m: Metrics): Record<Metric, number> =>
  ({ cls: 1 - m.cls_cos, patchMin: 1 - m.patch_cos_min, patchMean: 1 - m.patch_cos_mean, maxAbs: m.max_abs });

/** The metrics of `m` outside their limits. */
const outside = (m: Metrics, limits: Limits = LIMITS): Metric[] => {
  const d = distances(m);
  return METRICS.filter((k) => !(d[k] <= limits[k])); // NaN is outside
};

/** One diagnostic line per row: the numbers the README and docs/feature-parity.md report. */
function report(t: TestContext, title: string, of: ParityRow[]): void {
  const f = (v: number) => v.toExponential(1).padStart(8);
  t.diagnostic(`${title} (1 - cos)`);
  for (const r of of) {
    const d = distances(r);
    t.diagnostic(`${r.key.padEnd(34)} ${r.size.join('x').padStart(7)} -> ${r.bucket.join('x').padEnd(8)} cls ${f(d.cls)}  patch mean ${f(d.patchMean)}  min ${f(d.patchMin)}  max|d| ${f(d.maxAbs)}`);
  }
}

function checkRun(t: TestContext, name: string, limits: Limits = LIMITS): ParityRow[] {
  const of = rows.filter((r) => r.run === name);
  report(t, `${name}: dinofeat vs ${references.get(name)}`, of);
  assert.ok(of.length > 0, `no rows for ${name}`);
  for (const r of of) {
    assert.deepEqual(r.stored_size, r.size, `${r.key}: upright size`);
    assert.deepEqual(r.stored_crop, r.crop, `${r.key}: crop box`);
    assert.deepEqual(outside(r, limits), [], `${name} ${r.key}: ${JSON.stringify(distances(r))} against ${JSON.stringify(limits)}`);
  }
  return of;
}

/** Images in the formats and orientations photos arrive in, with the same upright content. */
async function writeFormats(dir: string): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  const base = () => structuredImage(240, 160, 3);
  const out = (name: string) => path.join(dir, name);
  // Orientation n stores the pixels so that applying n gives the upright image back.
  const stored: Record<number, (s: Sharp) => Sharp> = {
    2: (s) => s.flop(), 3: (s) => s.rotate(180), 4: (s) => s.flip(), 5: (s) => s.rotate(90).flop(),
    6: (s) => s.rotate(270), 7: (s) => s.rotate(270).flop(), 8: (s) => s.rotate(90),
  };
  for (const [n, turn] of Object.entries(stored)) {
    const pixels = await turn(base()).png().toBuffer();
    await sharp(pixels).withMetadata({ orientation: Number(n) }).jpeg({ quality: 92 }).toFile(out(`orientation${n}.jpg`));
  }
  await base().toColourspace('cmyk').jpeg({ quality: 92 }).toFile(out('cmyk.jpg'));
  await base().withIccProfile('p3').jpeg({ quality: 92 }).toFile(out('display-p3.jpg'));
  await base().png({ palette: true, colours: 64 }).toFile(out('palette.png'));
  await base().toColourspace('b-w').jpeg({ quality: 92 }).toFile(out('grey.jpg'));
  await base().toColourspace('rgb16').png().toFile(out('rgb16.png'));
  await base().ensureAlpha(0.6).png().toFile(out('half-transparent.png'));
  await base().webp({ quality: 90 }).toFile(out('image.webp'));
  await base().jpeg({ quality: 92, progressive: true }).toFile(out('progressive.jpg'));
}

before(async () => {
  const dir = tempDir();
  model = await makeTinyModel(dir);
  const formats = path.join(dir, 'formats');
  await writeFormats(formats);
  const runs: Run[] = [
    { name: 'shrink', images: PHOTOS, flags: ['--bucket', '224x224'] },
    { name: 'enlarge', images: PHOTOS, flags: ['--bucket', '832x1216'] },
    { name: 'cover', images: PHOTOS, flags: ['--bucket', '256x192', '--bucket', '192x256', '--resize', 'cover'] },
    { name: 'formats', images: formats, flags: ['--bucket', '320x224', '--bucket', '224x320'] },
    { name: 'fast', images: PHOTOS, flags: ['--bucket', '64x64', '--decode', 'fast'] },
  ];
  const v2 = { onnx: path.join(dir, 'dinov2.onnx'), checkpoint: path.join(GOLDEN, 'models', 'tiny_dinov2_reg') };
  await convertCheckpoint(v2.checkpoint, v2.onnx, { precision: 'fp32' });
  const v2Runs: Run[] = [
    { name: 'v2-shrink', images: PHOTOS, flags: ['--bucket', '224x224'] },
    { name: 'v2-enlarge', images: PHOTOS, flags: ['--bucket', '616x742'] },
  ];
  rows = (await Promise.all([compareWithHf(dir, model, runs), compareWithHf(dir, v2, v2Runs)])).flat();
});

/** Extracts every run with `m` (float32 rows), then has test/hf-parity.py compare the rows. */
async function compareWithHf(dir: string, m: ParityModel, runs: Run[]): Promise<ParityRow[]> {
  const caches = await Promise.all(runs.map(async (run) => {
    const cache = path.join(dir, `cache-${run.name}`);
    const r = await runCli(['extract', run.images, '--out', cache, '--model', m.onnx, '--dtype', 'float32', '--threads', '1', '--quiet', ...run.flags]);
    assert.equal(r.code, 0, `${run.name}: exit ${r.code}\n${r.stdout}${r.stderr}`);
    return { name: run.name, cache, images: run.images };
  }));
  const out = await pythonJson<{ rows: ParityRow[]; reference: string }>([path.resolve('test/hf-parity.py')], JSON.stringify({ checkpoint: m.checkpoint, runs: caches }));
  for (const run of runs) references.set(run.name, out.reference);
  return out.rows;
}

test('real photos shrunk (every side larger than 224) to 224x224', (t) => {
  const of = checkRun(t, 'shrink');
  assert.equal(of.length, 6);
  assert.ok(of.every((r) => r.size[0] > 224 && r.size[1] > 224));
});

test('real photos enlarged (every side smaller than the bucket) to 832x1216', (t) => {
  const of = checkRun(t, 'enlarge');
  assert.equal(of.length, 6);
  assert.ok(of.every((r) => r.size[0] < 832 && r.size[1] < 1216));
});

test('real photos with --resize cover: the centred crop box, then the same parity', (t) => {
  const of = checkRun(t, 'cover');
  assert.ok(of.some((r) => r.crop[2]! < r.size[0] || r.crop[3]! < r.size[1]), 'some photos are cropped');
});

test('EXIF orientations 2-8, CMYK, embedded ICC profile (ignored, as PIL does), palette, grey, 16-bit, alpha, WebP, progressive JPEG', (t) => {
  const of = checkRun(t, 'formats');
  assert.equal(of.length, 15);
  for (const r of of.filter((row) => row.key.startsWith('orientation'))) assert.deepEqual(r.size, [240, 160], `${r.key} upright`);
});

/**
 * --decode fast is not Hugging Face's pixels (README publishes how far): the real photos at 64x64,
 * where every JPEG is at least three times the bucket and shrinks on load (libjpeg's DCT scaling
 * by 1/2 or 1/4 at these sizes; the PNG is decoded whole, as in exact mode, and stays within LIMITS).
 * Measured worst (chelsea-exif6.jpg): 1 - cos 1.8e-4 CLS, 9.6e-4 patch mean; bounds 4e-4 and
 * 2e-3 (2.2x, 2.1x). An ignored EXIF orientation is at 1.9e-2 and 0.63. (The rule before
 * 2026-12-03, twice the bucket, decoded most of these photos whole: 1.7e-5 and 1.3e-4.)
 */
test('--decode fast: real photos shrunk on load to 64x64, parity reported, the PNG exact', (t) => {
  const of = rows.filter((r) => r.run === 'fast');
  report(t, `fast: dinofeat --decode fast vs ${references.get('fast')}`, of);
  assert.equal(of.length, 6);
  for (const r of of) {
    if (r.key.endsWith('.png')) assert.deepEqual(outside(r), [], `${r.key}: ${JSON.stringify(distances(r))}`);
    else assert.ok(distances(r).cls < 4e-4 && distances(r).patchMean < 2e-3, `${r.key}: ${JSON.stringify(distances(r))}`);
  }
});

test('controls: 8-bit rounding, a half-pixel shift, a bicubic filter, an ignored EXIF orientation each fall outside the limits', (t) => {
  const controls = rows.flatMap((r) => Object.entries(r.controls).map(([name, m]) => ({ ...r, ...m, name, key: `${r.run}/${r.key} ${name}` })));
  report(t, 'controls (must fail)', controls);
  for (const name of ['8_bit_rounding', 'half_pixel_shift', 'bicubic', 'no_exif_orientation']) assert.ok(controls.some((c) => c.name === name), `no ${name} control`);
  // Every metric alone catches every control on every image (measured nearest: 8-bit rounding,
  // 1 - cos 1.5e-9 CLS, 6.3e-6 worst patch, 3.3e-6 patch mean, max |d| 1.2e-2).
  for (const c of controls) assert.deepEqual(outside(c), METRICS, `${c.key}: ${JSON.stringify(distances(c))} against ${JSON.stringify(LIMITS)}`);
});

/**
 * DINOv2 against the processor's torchvision backend, measured worst image: 1 - cos 2.3e-9 CLS,
 * 2.0e-6 worst patch, 2.2e-8 patch mean; max |d| 5.9e-3. Higher than DINOv3's because the resize
 * result is rounded to 8 bits: where float32 arithmetic puts a value on the other side of a
 * rounding boundary the pixel is a level off (image-parity: <= 0.1% of them), so the worst patch
 * is already past the 1e-6 budget. Limits 10-25x on 1 - cos, 2.5x on max |d|.
 */
const V2_LIMITS: Limits = { cls: 5e-8, patchMin: 2e-5, patchMean: 5e-7, maxAbs: 1.5e-2 };
/**
 * The PIL backend (BitImageProcessorPil) resizes in two 8-bit passes, rounded in between:
 * measured 1 - cos 6.7e-8 to 1.2e-5 CLS, 2.3e-5 to 3.3e-4 worst patch, 8.2e-6 to 3.1e-5 patch
 * mean, max |d| 2.8e-2 to 9.3e-2. dinofeat does not follow it: its patch mean is >= 16x past
 * V2_LIMITS on every image. Bounded all the same (3x the measured worst), a known difference.
 */
const V2_PIL_BOUNDS: Limits = { cls: 4e-5, patchMin: 1e-3, patchMean: 1e-4, maxAbs: 0.3 };

test('DINOv2 with registers: real photos shrunk to 224x224 and enlarged to 616x742 follow the torchvision backend of the processor (do_center_crop=False, size = the bucket), not its PIL one', (t) => {
  for (const name of ['v2-shrink', 'v2-enlarge']) {
    const of = checkRun(t, name, V2_LIMITS);
    assert.equal(of.length, 6);
    const pil = of.map((r) => ({ ...r, ...r.backends!.pil }));
    report(t, `${name}: the PIL backend (BitImageProcessorPil), which dinofeat does not follow`, pil);
    for (const r of pil) {
      assert.ok(outside(r, V2_LIMITS).includes('patchMean'), `${name} ${r.key}: the PIL backend's patch mean ${distances(r).patchMean} is within V2_LIMITS`);
      assert.deepEqual(outside(r, V2_PIL_BOUNDS), [], `${name} ${r.key}: PIL backend ${JSON.stringify(distances(r))}`);
    }
  }
});
