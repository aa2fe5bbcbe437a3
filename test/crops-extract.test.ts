/**
 * A trainer's crops drive extract (issue 16): dinofeat's JSON Lines, kohya's metadata JSON (written
 * as prepare_buckets_latents.py writes it), a folder of kohya latent caches and SimpleTuner's bucket
 * metadata give every row its bucket and crop box, and the features equal Hugging Face's
 * pixels-to-features path on that crop (test/hf-parity.py, the limits of extract-parity.test.ts). Images a file lacks or cannot place are error rows, or with
 * --crops-fallback go to the rule; the preprocessing record names the file only when --crops is
 * used. `dinofeat crops` writes the file back from the cache, and examples/crop_like_dinofeat.py
 * cuts the same pixels: features of its output equal the cache's.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { kohyaCrop } from '../src/image/crops-kohya.js';
import { readErrorsFile } from './fixtures/cache-reads.js';
import { makeTinyModel, type TinyModel } from './fixtures/tiny-model.js';
import { runCli } from './helpers/cli.js';
import { pythonJson, pythonStdout } from './helpers/python.js';
import { tempDir } from './helpers/temp.js';

const PHOTOS = path.resolve('examples/images');
/** Upright sizes of the photos (chelsea carries EXIF orientation 6). */
const SIZES: Record<string, [number, number]> = {
  'astronaut.jpg': [512, 512], 'chelsea-exif6.jpg': [451, 300], 'coffee.jpg': [600, 400],
  'hubble-deep-field.jpg': [360, 314], 'retina-alpha.png': [300, 300], 'rocket-portrait.jpg': [280, 427],
};
/** Trainer buckets and off-centre crop boxes [x, y, w, h], some touching the image's edges. */
const GENERIC: Record<string, { bucket: [number, number]; crop: [number, number, number, number] }> = {
  'astronaut.jpg': { bucket: [160, 224], crop: [212, 92, 300, 420] },
  'chelsea-exif6.jpg': { bucket: [224, 160], crop: [0, 20, 420, 280] },
  'coffee.jpg': { bucket: [192, 192], crop: [250, 30, 340, 340] },
  'hubble-deep-field.jpg': { bucket: [224, 192], crop: [0, 0, 360, 314] },
  'retina-alpha.png': { bucket: [128, 224], crop: [100, 0, 150, 300] },
  'rocket-portrait.jpg': { bucket: [176, 256], crop: [13, 51, 250, 364] },
};
/** kohya's train_resolution per image stem (its default key). */
const KOHYA: Record<string, [number, number]> = {
  astronaut: [192, 192], 'chelsea-exif6': [256, 192], coffee: [256, 192], 'hubble-deep-field': [192, 192], 'retina-alpha': [192, 192], 'rocket-portrait': [192, 256],
};
/** As extract-parity.test.ts measured and bounds them (docs/feature-parity.md). */
const LIMITS = { cls: 1.5e-11, patchMin: 1e-8, patchMean: 2e-10, maxAbs: 5e-4 };

interface CacheRow {
  key: string;
  width: number;
  height: number;
  bucket_width: number;
  bucket_height: number;
  crop_x: number;
  crop_y: number;
  crop_w: number;
  crop_h: number;
  cls?: number[];
  patches?: number[];
}

interface ParityRow {
  run: string;
  key: string;
  crop: number[];
  stored_crop: number[];
  cls_cos: number;
  patch_cos_mean: number;
  patch_cos_min: number;
  max_abs: number;
}

let dir: string;
let model: TinyModel;
let genericFile: string;
let kohyaFile: string;
let simpleTunerFile: string;
/** Copies of the photos with kohya latent caches beside them. */
let latentsDir: string;
const caches: Record<string, string> = {};

const jsonl = (lines: object[]) => lines.map((l) => `${JSON.stringify(l)}\n`).join('');
const genericLine = (key: string, extra: object = {}) => {
  const { bucket, crop } = GENERIC[key]!;
  return { key, bucket_width: bucket[0], bucket_height: bucket[1], crop_x: crop[0], crop_y: crop[1], crop_w: crop[2], crop_h: crop[3], ...extra };
};
const kohyaBox = (key: string) => {
  const [width, height] = SIZES[key]!;
  const [bw, bh] = KOHYA[key.replace(/\.[^.]+$/, '')]!;
  const c = kohyaCrop({ width, height }, { width: bw, height: bh });
  return [c.x, c.y, c.w, c.h];
};

async function extract(images: string, out: string, flags: readonly string[]) {
  return runCli(['extract', images, '--out', out, '--model', model.onnx, '--dtype', 'float32', '--threads', '1', '--quiet', ...flags]);
}

async function rowsOf(cache: string, values = false): Promise<CacheRow[]> {
  const out = await pythonJson<{ rows: CacheRow[] }>([path.resolve('test/read-cache.py')], JSON.stringify({ cache, values }));
  return out.rows.sort((a, b) => (a.key < b.key ? -1 : 1));
}

before(async () => {
  dir = tempDir();
  model = await makeTinyModel(dir);
  genericFile = path.join(dir, 'crops.jsonl');
  fs.writeFileSync(genericFile, jsonl(Object.keys(GENERIC).map((k) => genericLine(k))));
  // As kohya's prepare_buckets_latents.py writes it: json.dump(metadata, indent=2), train_resolution a tuple.
  kohyaFile = path.join(dir, 'meta_lat.json');
  const code = [
    'import json, sys',
    'metadata = {k: {"caption": "a photo", "tags": "photo", "train_resolution": tuple(v)} for k, v in json.loads(sys.stdin.read()).items()}',
    'with open(sys.argv[1], "wt", encoding="utf-8") as f: json.dump(metadata, f, indent=2)',
  ].join('\n');
  await pythonStdout(['-c', code, kohyaFile], JSON.stringify(KOHYA));
  for (const [name, file] of [['generic', genericFile], ['kohya', kohyaFile]] as const) {
    caches[name] = path.join(dir, `cache-${name}`);
    const r = await extract(PHOTOS, caches[name]!, ['--crops', file]);
    assert.equal(r.code, 0, `${name}: exit ${r.code}\n${r.stdout}${r.stderr}`);
  }
  // kohya's latent caches beside copies of the photos, as its SDXL caching writes them (np.savez;
  // original_size as PIL loads the file, without the EXIF orientation).
  latentsDir = path.join(dir, 'kohya-train');
  fs.cpSync(PHOTOS, latentsDir, { recursive: true });
  const npz = [
    'import json, os, sys',
    'import numpy as np',
    'from PIL import Image',
    'for stem, (bw, bh) in json.loads(sys.stdin.read()).items():',
    '    image = next(f for f in os.listdir(sys.argv[1]) if os.path.splitext(f)[0] == stem)',
    '    W, H = Image.open(os.path.join(sys.argv[1], image)).size',
    '    np.savez(os.path.join(sys.argv[1], f"{stem}_{W:04d}x{H:04d}_sdxl.npz"), latents=np.zeros((4, bh // 8, bw // 8), np.float32), original_size=np.array([W, H]), crop_ltrb=np.array([0, 0, bw, bh]))',
  ].join('\n');
  await pythonStdout(['-c', npz, latentsDir], JSON.stringify(KOHYA));
  // SimpleTuner's aspect-bucket metadata as its discovery backend writes it (json.dumps, absolute
  // paths, tuples): the photo resized to cover the bucket, the centre window.
  simpleTunerFile = path.join(dir, 'aspect_ratio_bucket_metadata_photos.json');
  const st = [
    'import json, os, sys',
    'meta = {}',
    'for key, (W, H, bw, bh) in json.loads(sys.stdin.read()).items():',
    '    scale = max(bw / W, bh / H)',
    '    iw, ih = round(W * scale), round(H * scale)',
    '    meta[os.path.join(sys.argv[2], key)] = {"original_size": (W, H), "crop_coordinates": ((ih - bh) // 2, (iw - bw) // 2), "target_size": (bw, bh), "intermediary_size": (iw, ih), "aspect_ratio": round(bw / bh, 2)}',
    'open(sys.argv[1], "w").write(json.dumps(meta))',
  ].join('\n');
  await pythonStdout(['-c', st, simpleTunerFile, PHOTOS], JSON.stringify(Object.fromEntries(Object.entries(SIZES).map(([k, [w, h]]) => [k, [w, h, ...KOHYA[k.replace(/\.[^.]+$/, '')]!]]))));
  caches.simpletuner = path.join(dir, 'cache-simpletuner');
  const stRun = await extract(PHOTOS, caches.simpletuner, ['--crops', simpleTunerFile]);
  assert.equal(stRun.code, 0, `simpletuner: exit ${stRun.code}\n${stRun.stdout}${stRun.stderr}`);
  caches['kohya-latents'] = path.join(dir, 'cache-kohya-latents');
  const r = await extract(latentsDir, caches['kohya-latents'], ['--crops', latentsDir]);
  assert.equal(r.code, 1, `kohya latents: exit ${r.code}\n${r.stdout}${r.stderr}`);
});

test('the generic JSON Lines decide every row: bucket and crop box are the file\'s', async () => {
  const rows = await rowsOf(caches.generic!);
  assert.deepEqual(rows.map((r) => r.key), Object.keys(GENERIC).sort());
  for (const r of rows) {
    const want = GENERIC[r.key]!;
    assert.deepEqual([r.width, r.height], SIZES[r.key], `${r.key} upright size`);
    assert.deepEqual([r.bucket_width, r.bucket_height], want.bucket, `${r.key} bucket`);
    assert.deepEqual([r.crop_x, r.crop_y, r.crop_w, r.crop_h], want.crop, `${r.key} crop`);
  }
});

test('kohya\'s metadata JSON decides every row: bucket = train_resolution, crop = kohya\'s centred cover crop', async () => {
  const rows = await rowsOf(caches.kohya!);
  assert.equal(rows.length, 6);
  for (const r of rows) {
    assert.deepEqual([r.bucket_width, r.bucket_height], KOHYA[r.key.replace(/\.[^.]+$/, '')], `${r.key} bucket`);
    assert.deepEqual([r.crop_x, r.crop_y, r.crop_w, r.crop_h], kohyaBox(r.key), `${r.key} crop`);
  }
  assert.ok(rows.some((r) => r.crop_w < r.width) && rows.some((r) => r.crop_h < r.height), 'kohya crops both sides across the set');
});

test('a folder of kohya latent caches decides every row (bucket = the latents\' size x 8); the EXIF-rotated photo kohya encoded unrotated is an error row', async () => {
  const rows = await rowsOf(caches['kohya-latents']!);
  assert.deepEqual(rows.map((r) => r.key), Object.keys(SIZES).filter((k) => k !== 'chelsea-exif6.jpg').sort());
  for (const r of rows) {
    assert.deepEqual([r.bucket_width, r.bucket_height], KOHYA[r.key.replace(/\.[^.]+$/, '')], `${r.key} bucket`);
    assert.deepEqual([r.crop_x, r.crop_y, r.crop_w, r.crop_h], kohyaBox(r.key), `${r.key} crop`);
  }
  const [error] = readErrorsFile(caches['kohya-latents']!);
  assert.equal(error?.key, 'chelsea-exif6.jpg');
  assert.match(error!.reason, /records original_size 300x451, the upright image is 451x300: kohya encoded it without its EXIF rotation/);
});

test('SimpleTuner\'s metadata decides every row: bucket = target_size, crop = the recorded window in source pixels', async () => {
  const meta = JSON.parse(fs.readFileSync(simpleTunerFile, 'utf8')) as Record<string, { target_size: number[]; intermediary_size: number[]; crop_coordinates: number[] }>;
  const rows = await rowsOf(caches.simpletuner!);
  assert.equal(rows.length, 6);
  for (const r of rows) {
    const m = meta[path.join(PHOTOS, r.key)]!;
    const [W, H] = SIZES[r.key]!;
    const [top, left] = m.crop_coordinates as [number, number];
    const [iw, ih] = m.intermediary_size as [number, number];
    const [bw, bh] = m.target_size as [number, number];
    const x0 = Math.round((left * W) / iw);
    const y0 = Math.round((top * H) / ih);
    assert.deepEqual([r.bucket_width, r.bucket_height], [bw, bh], `${r.key} bucket`);
    assert.deepEqual([r.crop_x, r.crop_y, r.crop_w, r.crop_h], [x0, y0, Math.round(((left + bw) * W) / iw) - x0, Math.round(((top + bh) * H) / ih) - y0], `${r.key} crop`);
  }
});

test('features equal Hugging Face\'s pixels-to-features path on the file\'s crop box, within extract-parity\'s limits', async (t) => {
  const runs = [
    { name: 'generic', cache: caches.generic, images: PHOTOS, crops: Object.fromEntries(Object.entries(GENERIC).map(([k, v]) => [k, v.crop])) },
    { name: 'kohya', cache: caches.kohya, images: PHOTOS, crops: Object.fromEntries(Object.keys(SIZES).map((k) => [k, kohyaBox(k)])) },
    { name: 'kohya-latents', cache: caches['kohya-latents'], images: latentsDir, crops: Object.fromEntries(Object.keys(SIZES).map((k) => [k, kohyaBox(k)])) },
  ];
  const { rows } = await pythonJson<{ rows: ParityRow[] }>([path.resolve('test/hf-parity.py')], JSON.stringify({ checkpoint: model.checkpoint, runs }));
  assert.equal(rows.length, 17);
  for (const r of rows) {
    const d = { cls: 1 - r.cls_cos, patchMin: 1 - r.patch_cos_min, patchMean: 1 - r.patch_cos_mean, maxAbs: r.max_abs };
    t.diagnostic(`${r.run} ${r.key}: 1 - cos cls ${d.cls.toExponential(1)}, patch min ${d.patchMin.toExponential(1)}, mean ${d.patchMean.toExponential(1)}, max|d| ${d.maxAbs.toExponential(1)}`);
    assert.deepEqual(r.stored_crop, r.crop, `${r.run} ${r.key}: crop`);
    for (const k of Object.keys(LIMITS) as (keyof typeof LIMITS)[]) assert.ok(d[k] <= LIMITS[k], `${r.run} ${r.key}: ${k} ${d[k]} > ${LIMITS[k]}`);
  }
});

test('validate passes a crops cache: the rows\' boxes are the file\'s, not the rule\'s, and recompute re-extracts them', async () => {
  const r = await runCli(['validate', caches.kohya!, '--images', PHOTOS, '--model', model.onnx, '--recompute', '6', '--json']);
  assert.equal(r.code, 0, r.stdout);
  assert.match(r.stdout, /"6 of 6 sampled rows/);
});

test('the preprocessing record names the crops file (format, sha256, buckets) only when --crops is used', async () => {
  const generic = JSON.parse(fs.readFileSync(path.join(caches.generic!, 'cache.json'), 'utf8'));
  assert.deepEqual(generic.preprocessing.crops, {
    format: 'jsonl', sha256: createHash('sha256').update(fs.readFileSync(genericFile)).digest('hex'), fallback: false,
    buckets: ['160x224→160x224', '224x160→224x160', '192x192→192x192', '224x192→224x192', '128x224→128x224', '176x256→176x256'],
  });
  assert.equal(JSON.parse(fs.readFileSync(path.join(caches.kohya!, 'cache.json'), 'utf8')).preprocessing.crops.format, 'kohya');
  const plain = path.join(dir, 'cache-plain');
  const r = await extract(path.join(PHOTOS), plain, ['--bucket', '64x64']);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(!('crops' in JSON.parse(fs.readFileSync(path.join(plain, 'cache.json'), 'utf8')).preprocessing), 'no crops key without --crops');
  // Another crops file is another preprocessing: the cache refuses it.
  const other = path.join(dir, 'other.jsonl');
  fs.writeFileSync(other, jsonl(Object.keys(GENERIC).map((k) => genericLine(k, k === 'coffee.jpg' ? { crop_x: 251 } : {}))));
  const again = await extract(PHOTOS, caches.generic!, ['--crops', other]);
  assert.equal(again.code, 2, again.stderr);
  assert.match(again.stderr, /preprocessing/);
});

test('a key the file lacks and a crop outside the image are error rows; --crops-fallback sends the lacking key to the buckets', async () => {
  const partial = path.join(dir, 'partial.jsonl');
  const lines = Object.keys(GENERIC).filter((k) => k !== 'rocket-portrait.jpg').map((k) =>
    k === 'hubble-deep-field.jpg' ? genericLine(k, { crop_w: 361 }) : genericLine(k));
  fs.writeFileSync(partial, jsonl(lines));
  const strict = path.join(dir, 'cache-partial');
  const r = await extract(PHOTOS, strict, ['--crops', partial]);
  assert.equal(r.code, 1, r.stderr);
  const reasons = Object.fromEntries(readErrorsFile(strict).map((e) => [e.key, e.reason]));
  assert.deepEqual(Object.keys(reasons).sort(), ['hubble-deep-field.jpg', 'rocket-portrait.jpg']);
  assert.match(reasons['rocket-portrait.jpg']!, /has no entry for this image: add one, or pass --crops-fallback/);
  assert.match(reasons['hubble-deep-field.jpg']!, /crop box 361x314\+0\+0 from --crops .* is not inside the 360x314 upright image/);
  assert.equal((await rowsOf(strict)).length, 4);

  const lenient = path.join(dir, 'cache-fallback');
  const f = await extract(PHOTOS, lenient, ['--crops', partial, '--crops-fallback', '--bucket', '64x96']);
  assert.equal(f.code, 1, f.stderr);
  const rocket = (await rowsOf(lenient)).find((row) => row.key === 'rocket-portrait.jpg')!;
  assert.deepEqual([rocket.bucket_width, rocket.bucket_height, rocket.crop_x, rocket.crop_y, rocket.crop_w, rocket.crop_h], [64, 96, 0, 0, 280, 427], 'the rule: --bucket, --resize stretch');
  assert.deepEqual(readErrorsFile(lenient).map((e) => e.key).sort(), ['hubble-deep-field.jpg']);
});

test('setup errors are one line, exit 2, nothing written: a bucket off the patch grid, --crops-fallback alone, flip: true without --flip', async () => {
  const off = path.join(dir, 'off-grid.jsonl');
  fs.writeFileSync(off, jsonl([genericLine('coffee.jpg', { bucket_width: 200 })]));
  const out = path.join(dir, 'cache-off');
  const r = await extract(PHOTOS, out, ['--crops', off]);
  assert.equal(r.code, 2);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, /--crops .*off-grid\.jsonl: the bucket of coffee\.jpg, 200x192 is not a multiple of the model's patch size 16: use 192x192 or 208x192/);
  assert.ok(!fs.existsSync(out), 'nothing written');
  const alone = await extract(PHOTOS, out, ['--crops-fallback']);
  assert.equal(alone.code, 2);
  assert.match(alone.stderr, /--crops-fallback needs --crops FILE/);
  // A mirrored row must say so, and the flip column comes with --flip (test/flip.test.ts runs it).
  const flips = path.join(dir, 'flips.jsonl');
  fs.writeFileSync(flips, jsonl(Object.keys(GENERIC).map((k) => genericLine(k, k === 'coffee.jpg' ? { flip: true } : {}))));
  const unflagged = await extract(PHOTOS, out, ['--crops', flips]);
  assert.equal(unflagged.code, 2);
  assert.equal(unflagged.stderr.trim().split('\n').length, 1, unflagged.stderr);
  assert.match(unflagged.stderr, /--crops .*flips\.jsonl has "flip": true for 1 image: add --flip/);
  assert.ok(!fs.existsSync(out), 'nothing written');
});

test('dinofeat crops writes the file extract read back from the cache, to stdout or --out', async () => {
  const r = await runCli(['crops', caches.generic!]);
  assert.equal(r.code, 0, r.stderr);
  const byKey = (text: string) => Object.fromEntries(text.split('\n').filter(Boolean).map((l) => [JSON.parse(l).key, JSON.parse(l)]));
  assert.deepEqual(byKey(r.stdout), byKey(fs.readFileSync(genericFile, 'utf8')));
  const file = path.join(dir, 'exported.jsonl');
  assert.equal((await runCli(['crops', caches.kohya!, '--out', file])).code, 0);
  const kohya = byKey(fs.readFileSync(file, 'utf8'));
  for (const key of Object.keys(SIZES)) {
    const l = kohya[key];
    assert.deepEqual([l.bucket_width, l.bucket_height], KOHYA[key.replace(/\.[^.]+$/, '')]);
    assert.deepEqual([l.crop_x, l.crop_y, l.crop_w, l.crop_h], kohyaBox(key));
  }
  // What was exported drives extract to the same rows.
  const again = path.join(dir, 'cache-reimported');
  assert.equal((await extract(PHOTOS, again, ['--crops', file])).code, 0);
  const strip = (rows: CacheRow[]) => rows.map(({ key, bucket_width, bucket_height, crop_x, crop_y, crop_w, crop_h }) => ({ key, bucket_width, bucket_height, crop_x, crop_y, crop_w, crop_h }));
  assert.deepEqual(strip(await rowsOf(again)), strip(await rowsOf(caches.kohya!)));
});

/** Lowest per-token cosine between two caches' rows of one key, over CLS and every patch. */
function lowestCosine(a: CacheRow, b: CacheRow, hidden: number): number {
  const tokens = (r: CacheRow) => [r.cls!, ...Array.from({ length: r.patches!.length / hidden }, (_, i) => r.patches!.slice(i * hidden, (i + 1) * hidden))];
  const ta = tokens(a);
  const tb = tokens(b);
  let lowest = 1;
  ta.forEach((x, i) => {
    const y = tb[i]!;
    let dot = 0;
    let nx = 0;
    let ny = 0;
    for (let k = 0; k < hidden; k++) {
      dot += x[k]! * y[k]!;
      nx += x[k]! ** 2;
      ny += y[k]! ** 2;
    }
    lowest = Math.min(lowest, dot / Math.sqrt(nx * ny));
  });
  return lowest;
}

/**
 * The example cuts each exported box out with PIL and resizes it to the bucket (bilinear, 8-bit
 * output); extracting those pictures as they are (each exactly its bucket's size) gives the
 * cache's features up to PIL's filter and 8-bit rounding. Measured lowest token cosine (CLS and
 * every patch) over the 6 photos: 0.99972 (chelsea); the limit leaves 1 - cos 3.5x that. The
 * control, the centred box of the same size instead of the exported one (what a VAE pipeline that
 * ignored the crops file would cut), measured at most -0.05 on the photos whose box moves.
 */
const EXAMPLE_MIN_COSINE = 0.999;

test('examples/crop_like_dinofeat.py cuts the pixels the cache\'s features cover', async (t) => {
  const exported = path.join(dir, 'generic-export.jsonl');
  assert.equal((await runCli(['crops', caches.generic!, '--out', exported])).code, 0);
  const centred = path.join(dir, 'centred.jsonl');
  fs.writeFileSync(centred, fs.readFileSync(exported, 'utf8').split('\n').filter(Boolean).map((l) => {
    const o = JSON.parse(l);
    const [W, H] = SIZES[o.key]!;
    return `${JSON.stringify({ ...o, crop_x: Math.floor((W - o.crop_w) / 2), crop_y: Math.floor((H - o.crop_h) / 2) })}\n`;
  }).join(''));
  const buckets = [...new Set(Object.values(GENERIC).map((g) => g.bucket.join('x')))].flatMap((b) => ['--bucket', b]);
  const lowest: Record<string, Record<string, number>> = {};
  for (const [name, crops] of [['example', exported], ['control', centred]] as const) {
    const pictures = path.join(dir, `pictures-${name}`);
    await pythonStdout([path.resolve('examples/crop_like_dinofeat.py'), crops, PHOTOS, pictures, '--resample', 'bilinear']);
    const cache = path.join(dir, `cache-pictures-${name}`);
    const r = await extract(pictures, cache, buckets);
    assert.equal(r.code, 0, r.stderr);
    const mine = new Map((await rowsOf(cache, true)).map((row) => [row.key.replace(/\.png$/, ''), row]));
    lowest[name] = {};
    for (const row of await rowsOf(caches.generic!, true)) {
      const other = mine.get(row.key)!;
      assert.deepEqual([other.width, other.height], [row.bucket_width, row.bucket_height], `${name} ${row.key}: the picture is the bucket's size`);
      lowest[name]![row.key] = lowestCosine(row, other, row.cls!.length);
    }
    t.diagnostic(`${name}: lowest token cosine per photo ${Object.entries(lowest[name]!).map(([k, c]) => `${k} ${c.toFixed(5)}`).join(', ')}`);
  }
  for (const key of Object.keys(GENERIC)) assert.ok(lowest.example![key]! >= EXAMPLE_MIN_COSINE, `${key}: ${lowest.example![key]}`);
  const moved = Object.keys(GENERIC).filter((k) => k !== 'hubble-deep-field.jpg'); // its box is the whole image, centred already
  for (const key of moved) assert.ok(lowest.control![key]! < EXAMPLE_MIN_COSINE, `control ${key}: ${lowest.control![key]}`);
});
