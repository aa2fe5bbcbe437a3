/**
 * extract --crops files, read without a model: dinofeat's JSON Lines, kohya sd-scripts' metadata
 * JSON and SimpleTuner's aspect-bucket metadata, the latter two written by Python the way those
 * tools write them (json.dump with tuples; kohya keyed by file stem or globbed path, SimpleTuner by
 * absolute path). Each image's plan (DINO bucket, crop box) and every bad input's one line.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { isUserError } from '../src/core/errors.js';
import { CropsFile, type CropsOptions } from '../src/image/crops-file.js';
import { kohyaCrop } from '../src/image/crops-kohya.js';
import { formatCropLine, parseCropLines } from '../src/image/crops-jsonl.js';
import { pythonStdout } from './helpers/python.js';
import { tempDir } from './helpers/temp.js';

const OPTIONS: CropsOptions = { patch: 16, dinoScale: 1, fallback: false };

function writeFile(name: string, text: string): string {
  const file = path.join(tempDir(), name);
  fs.writeFileSync(file, text);
  return file;
}

async function userError(p: Promise<unknown>): Promise<string> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  assert.ok(isUserError(e), `expected a UserError, got ${String(e)}`);
  return e.message;
}

const jsonl = (...lines: object[]) => lines.map((l) => JSON.stringify(l)).join('\n') + '\n';
const line = (key: string, extra: object = {}) => ({ key, bucket_width: 96, bucket_height: 64, crop_x: 10, crop_y: 5, crop_w: 280, crop_h: 180, ...extra });

test('JSON Lines: each key gets the file\'s bucket (as the DINO input, trainer bucket kept) and crop box; flip is carried', async () => {
  const file = writeFile('crops.jsonl', jsonl(line('a.jpg'), line('sub/b.png', { bucket_width: 64, bucket_height: 128, crop_x: 0, crop_y: 0, crop_w: 150, crop_h: 260, flip: true })));
  const crops = await CropsFile.read(file, OPTIONS);
  assert.deepEqual(crops.plan('a.jpg', { width: 300, height: 200 }), { bucket: { width: 96, height: 64, trainer: { width: 96, height: 64 } }, crop: { x: 10, y: 5, w: 280, h: 180 } });
  assert.deepEqual(crops.plan('sub/b.png', { width: 150, height: 260 }), { bucket: { width: 64, height: 128, trainer: { width: 64, height: 128 } }, crop: { x: 0, y: 0, w: 150, h: 260 }, flip: true });
  assert.equal(crops.source.format, 'jsonl');
  assert.deepEqual(crops.source.buckets.map((b) => `${b.width}x${b.height}`), ['96x64', '64x128']);
  assert.match(crops.source.sha256, /^[0-9a-f]{64}$/);
  // JSON Lines keys are dinofeat's own: no match by file name.
  assert.match((crops.plan('b.png', { width: 150, height: 260 }) as { problem: string }).problem, /has no entry for this image: add one, or pass --crops-fallback/);
});

test('JSON Lines: a key the file lacks is a problem, or dinofeat\'s rule with fallback; a crop outside the image is a problem', async () => {
  const file = writeFile('crops.jsonl', jsonl(line('a.jpg')));
  const strict = await CropsFile.read(file, OPTIONS);
  assert.ok('problem' in strict.plan('missing.jpg', { width: 300, height: 200 })!);
  const lenient = await CropsFile.read(file, { ...OPTIONS, fallback: true });
  assert.equal(lenient.plan('missing.jpg', { width: 300, height: 200 }), undefined);
  assert.equal(lenient.source.fallback, true);
  const outside = strict.plan('a.jpg', { width: 289, height: 200 });
  assert.deepEqual(outside, { problem: `crop box 280x180+10+5 from --crops ${file} is not inside the 289x200 upright image` });
  assert.ok(!('problem' in strict.plan('a.jpg', { width: 290, height: 185 })!), 'a box touching the right and bottom edges is inside');
});

test('JSON Lines: bad lines, duplicate keys and buckets off the patch grid are one line naming the file and what to do', async () => {
  const cases: Array<[string, RegExp]> = [
    [`${JSON.stringify(line('a.jpg'))}\n{"key": "b.jpg",\n`, /line 2 is not JSON: write one object per line/],
    [jsonl(line('a.jpg', { crop_w: 0 })), /line 1 \(a\.jpg\): crop_w=0: sizes must be whole numbers >= 1/],
    [jsonl({ key: 'a.jpg', bucket_width: 96 }), /bucket_height=missing, crop_x=missing/],
    [jsonl(line('a.jpg', { crop_x: -1, bucket_height: 64.5 })), /bucket_height=64\.5, crop_x=-1/],
    [jsonl(line('')), /line 1: "key" must be the image's key/],
    [jsonl(line('a.jpg', { flip: 'yes' })), /line 1 \(a\.jpg\): "flip" must be true or false/],
    [jsonl(line('a.jpg'), line('b.jpg'), line('a.jpg')), /lines 1 and 3 both give key a\.jpg: keep one/],
    [jsonl(line('a.jpg', { bucket_width: 100 })), /the bucket of a\.jpg, 100x64 is not a multiple of the model's patch size 16: use 96x64 or 112x64/],
    ['{"some": "thing"}', /is JSON but not a crops file: give dinofeat's JSON Lines/],
    ['', /has no images in it/],
  ];
  for (const [text, want] of cases) {
    const file = writeFile('bad.jsonl', text);
    const message = await userError(CropsFile.read(file, OPTIONS));
    assert.match(message, want);
    assert.ok(message.startsWith(`--crops ${file}`), message);
    assert.ok(!message.includes('\n'), message);
  }
  assert.match(await userError(CropsFile.read('/nonexistent/crops.jsonl', OPTIONS)), /^--crops \/nonexistent\/crops\.jsonl: no such file$/);
});

test('JSON Lines at --dino-scale 0.5: the DINO input is half the trainer bucket, rounded to the patch grid as --bucket is', async () => {
  const file = writeFile('crops.jsonl', jsonl(line('a.jpg', { bucket_width: 832, bucket_height: 1216 }), line('b.jpg', { bucket_width: 840, bucket_height: 1216 })));
  const crops = await CropsFile.read(file, { ...OPTIONS, dinoScale: 0.5 });
  const plan = crops.plan('a.jpg', { width: 900, height: 1300 }) as { bucket: object };
  assert.deepEqual(plan.bucket, { width: 416, height: 608, trainer: { width: 832, height: 1216 } });
  assert.deepEqual((crops.plan('b.jpg', { width: 900, height: 1300 }) as { bucket: object }).bucket, { width: 416, height: 608, trainer: { width: 840, height: 1216 } });
});

test('formatCropLine and parseCropLines round-trip, flip only when true', () => {
  const lines = [
    { key: 'x/a b.jpg', bucket: { width: 832, height: 1216 }, crop: { x: 0, y: 7, w: 800, h: 1169 } },
    { key: 'c.png', bucket: { width: 64, height: 64 }, crop: { x: 1, y: 2, w: 3, h: 4 }, flip: true },
  ];
  const text = lines.map((l) => `${formatCropLine(l)}\n`).join('');
  assert.equal(text.split('\n')[0], '{"key":"x/a b.jpg","bucket_width":832,"bucket_height":1216,"crop_x":0,"crop_y":7,"crop_w":800,"crop_h":1169}');
  assert.deepEqual([...parseCropLines(text, 'x').values()], lines);
});

/**
 * kohya's centred cover crop, worked by hand from its rule (scale so one side fits, sides rounded
 * half up, the overflow trimmed by floor(overflow / 2) on the left / top) and mapped back to
 * source pixels, each edge rounded.
 */
test('kohyaCrop: kohya\'s resize-to-cover and centred trim, in source pixels', () => {
  // 300x200 into 128x128: scale 0.64, resized 192x128, trim 64 → left 32: source 50..250.
  assert.deepEqual(kohyaCrop({ width: 300, height: 200 }, { width: 128, height: 128 }), { x: 50, y: 0, w: 200, h: 200 });
  // 301x200: resized 193x128 (192.64 rounded half up), odd overflow 65 → left floor(32.5) = 32: source 49.9..249.5 → 50..250.
  assert.deepEqual(kohyaCrop({ width: 301, height: 200 }, { width: 128, height: 128 }), { x: 50, y: 0, w: 200, h: 200 });
  // Same aspect: resized exactly to the bucket, nothing trimmed.
  assert.deepEqual(kohyaCrop({ width: 200, height: 300 }, { width: 128, height: 192 }), { x: 0, y: 0, w: 200, h: 300 });
  // 1000x750 into 1152x896: scale 896/750, resized 1195x896, left 21: source 17.57..981.59 → 18..982.
  assert.deepEqual(kohyaCrop({ width: 1000, height: 750 }, { width: 1152, height: 896 }), { x: 18, y: 0, w: 964, h: 750 });
  // Tall image into a wide bucket: width fits, top trimmed. 400x1000 into 832x1216: scale 2.08, resized 832x2080, top 432: 207.7..792.3 → 208..792.
  assert.deepEqual(kohyaCrop({ width: 400, height: 1000 }, { width: 832, height: 1216 }), { x: 0, y: 208, w: 400, h: 584 });
});

/** Writes `metadata` as kohya's prepare_buckets_latents.py does: json.dump(..., indent=2), train_resolution a tuple. */
async function writeKohyaMetadata(file: string, metadata: Record<string, { caption: string; train_resolution: [number, number] } | { caption: string }>): Promise<void> {
  const code = [
    'import json, sys',
    'meta = json.loads(sys.stdin.read())',
    'for v in meta.values():',
    '    if "train_resolution" in v: v["train_resolution"] = tuple(v["train_resolution"])',
    'with open(sys.argv[1], "wt", encoding="utf-8") as f: json.dump(meta, f, indent=2)',
  ].join('\n');
  await pythonStdout(['-c', code, file], JSON.stringify(metadata));
}

test('kohya metadata JSON keyed by file stem (the default) and by globbed path (--full_path): buckets from train_resolution, kohya\'s crop', async () => {
  const dir = tempDir();
  const stems = path.join(dir, 'meta_lat.json');
  await writeKohyaMetadata(stems, {
    land: { caption: 'a field', train_resolution: [1152, 896] },
    port: { caption: 'a tower', train_resolution: [832, 1216] },
    uncached: { caption: 'captioned, never bucketed' },
  });
  assert.match(fs.readFileSync(stems, 'utf8'), /"train_resolution": \[\n\s+1152,\n\s+896\n\s+\]/, 'written as kohya writes it');
  const crops = await CropsFile.read(stems, OPTIONS);
  assert.equal(crops.source.format, 'kohya');
  assert.deepEqual(crops.plan('sub/land.jpg', { width: 1000, height: 750 }), {
    bucket: { width: 1152, height: 896, trainer: { width: 1152, height: 896 } }, crop: { x: 18, y: 0, w: 964, h: 750 },
  });
  assert.deepEqual((crops.plan('port.png', { width: 400, height: 1000 }) as { crop: object }).crop, { x: 0, y: 208, w: 400, h: 584 });
  assert.ok('problem' in crops.plan('uncached.jpg', { width: 10, height: 10 })!, 'no train_resolution: no entry');

  const full = path.join(dir, 'full.json');
  await writeKohyaMetadata(full, {
    '/data/train/a/land.jpg': { caption: '', train_resolution: [1152, 896] },
    '/data/train/b/land.jpg': { caption: '', train_resolution: [1024, 1024] },
  });
  const byPath = await CropsFile.read(full, OPTIONS);
  assert.deepEqual((byPath.plan('b/land.jpg', { width: 1000, height: 750 }) as { bucket: { trainer: object } }).bucket.trainer, { width: 1024, height: 1024 });
  assert.match((byPath.plan('land.jpg', { width: 1000, height: 750 }) as { problem: string }).problem, /2 entries that match this key/);

  const noBuckets = path.join(dir, 'captions.json');
  await writeKohyaMetadata(noBuckets, { a: { caption: 'x' } });
  assert.match(await userError(CropsFile.read(noBuckets, OPTIONS)), /is JSON but not a crops file/);
  const garbled = writeFile('garbled.json', JSON.stringify({ a: { train_resolution: [1152] } }));
  assert.match(await userError(CropsFile.read(garbled, OPTIONS)), /\(kohya metadata\): a: train_resolution \[1152\] is not \[width, height\]/);
});

/** Writes `metadata` as SimpleTuner's discovery backend does: json.dumps of its dict, sizes as tuples. */
async function writeSimpleTunerMetadata(file: string, metadata: Record<string, Record<string, unknown>>): Promise<void> {
  const code = [
    'import json, sys',
    'meta = json.loads(sys.stdin.read())',
    'meta = {k: {f: tuple(v) if isinstance(v, list) else v for f, v in m.items()} for k, m in meta.items()}',
    'open(sys.argv[1], "w").write(json.dumps(meta))',
  ].join('\n');
  await pythonStdout(['-c', code, file], JSON.stringify(metadata));
}

test('SimpleTuner aspect_ratio_bucket_metadata: target_size is the bucket, crop_coordinates [top, left] in intermediary pixels scaled back', async () => {
  const file = path.join(tempDir(), 'aspect_ratio_bucket_metadata_mydata.json');
  await writeSimpleTunerMetadata(file, {
    // Cropped: 300x200 resized to cover 64x64 (96x64), the centre window at left 16.
    '/datasets/mydata/wide.jpg': { original_size: [300, 200], crop_coordinates: [0, 16], target_size: [64, 64], intermediary_size: [96, 64], aspect_ratio: 1.0, luminance: 0.4 },
    // crop: false: resized straight to the target, the whole image.
    '/datasets/mydata/sub/tall.png': { original_size: [150, 260], crop_coordinates: [0, 0], target_size: [64, 112], intermediary_size: [64, 112], aspect_ratio: 0.57 },
  });
  const crops = await CropsFile.read(file, OPTIONS);
  assert.equal(crops.source.format, 'simpletuner');
  assert.deepEqual(crops.plan('wide.jpg', { width: 300, height: 200 }), { bucket: { width: 64, height: 64, trainer: { width: 64, height: 64 } }, crop: { x: 50, y: 0, w: 200, h: 200 } });
  assert.deepEqual((crops.plan('sub/tall.png', { width: 150, height: 260 }) as { crop: object }).crop, { x: 0, y: 0, w: 150, h: 260 });
  assert.match((crops.plan('wide.jpg', { width: 200, height: 300 }) as { problem: string }).problem, /recorded original_size 300x200, the upright image is 200x300/);
  const garbled = writeFile('st.json', JSON.stringify({ '/a.jpg': { original_size: [3, 2], crop_coordinates: [0], target_size: [64, 64] } }));
  assert.match(await userError(CropsFile.read(garbled, OPTIONS)), /\(simpletuner metadata\): \/a\.jpg: intermediary_size=missing, crop_coordinates=\[0\]/);
});

/**
 * Writes kohya latent caches as its SDXL caching strategy does: np.savez of `latents` [4, h/8, w/8]
 * float32, `original_size` [W, H] and `crop_ltrb` (SDXL's crop conditioning), named
 * <image stem>_<WWWW>x<HHHH>_sdxl.npz beside the image.
 */
async function writeKohyaLatents(dir: string, caches: Array<{ image: string; size: [number, number]; bucket: [number, number]; keys?: 'multi' | 'compressed' }>): Promise<void> {
  const code = [
    'import json, os, sys',
    'import numpy as np',
    'for c in json.loads(sys.stdin.read()):',
    '    (W, H), (bw, bh) = c["size"], c["bucket"]',
    '    stem = os.path.splitext(os.path.join(sys.argv[1], c["image"]))[0]',
    '    os.makedirs(os.path.dirname(stem), exist_ok=True)',
    '    suffix = f"_{bh // 8}x{bw // 8}" if c.get("keys") == "multi" else ""',
    '    arrays = {"latents" + suffix: np.zeros((4, bh // 8, bw // 8), np.float32), "original_size" + suffix: np.array([W, H]), "crop_ltrb" + suffix: np.array([0, 0, bw, bh])}',
    '    if c.get("keys") == "multi": arrays["latents_8x8"] = np.zeros((4, 8, 8), np.float32)',
    '    (np.savez_compressed if c.get("keys") == "compressed" else np.savez)(f"{stem}_{W:04d}x{H:04d}_sdxl.npz", **arrays)',
  ].join('\n');
  await pythonStdout(['-c', code, dir], JSON.stringify(caches));
}

test('a folder of kohya latent caches (--cache_latents_to_disk): bucket from the latents\' size, kohya\'s crop, original_size checked', async () => {
  const dir = tempDir();
  await writeKohyaLatents(dir, [
    { image: 'land.jpg', size: [1000, 750], bucket: [1152, 896] },
    { image: 'sub/port.png', size: [400, 1000], bucket: [832, 1216] },
    { image: 'turned.jpg', size: [300, 451], bucket: [832, 1216] },
    { image: 'multi.jpg', size: [64, 64], bucket: [128, 64], keys: 'multi' },
    { image: 'packed.jpg', size: [300, 200], bucket: [128, 128], keys: 'compressed' },
  ]);
  fs.writeFileSync(path.join(dir, 'broken_0064x0064_sdxl.npz'), 'not a zip');
  const crops = await CropsFile.read(dir, OPTIONS);
  assert.equal(crops.source.format, 'kohya-latents');
  assert.deepEqual(crops.plan('land.jpg', { width: 1000, height: 750 }), {
    bucket: { width: 1152, height: 896, trainer: { width: 1152, height: 896 } }, crop: { x: 18, y: 0, w: 964, h: 750 },
  });
  assert.deepEqual((crops.plan('sub/port.png', { width: 400, height: 1000 }) as { crop: object }).crop, { x: 0, y: 208, w: 400, h: 584 });
  assert.match((crops.plan('turned.jpg', { width: 451, height: 300 }) as { problem: string }).problem,
    /turned_0300x0451_sdxl\.npz records original_size 300x451, the upright image is 451x300: kohya encoded it without its EXIF rotation/);
  assert.deepEqual((crops.plan('packed.jpg', { width: 300, height: 200 }) as { crop: object }).crop, { x: 50, y: 0, w: 200, h: 200 }, 'np.savez_compressed reads too');
  assert.match((crops.plan('multi.jpg', { width: 64, height: 64 }) as { problem: string }).problem, /holds latents at 2 resolutions/);
  assert.match((crops.plan('broken.jpg', { width: 64, height: 64 }) as { problem: string }).problem, /broken_0064x0064_sdxl\.npz cannot be read: not a zip file/);
  assert.ok('problem' in crops.plan('port.png', { width: 400, height: 1000 })!, 'keyed by the path without extension, not the stem');
  // The record's sha256 is of what decides the plans: another bucket, another hash.
  const other = tempDir();
  await writeKohyaLatents(other, [{ image: 'land.jpg', size: [1000, 750], bucket: [1024, 1024] }]);
  assert.notEqual((await CropsFile.read(other, OPTIONS)).source.sha256, crops.source.sha256);
  assert.match(await userError(CropsFile.read(tempDir(), OPTIONS)), /has no images in it: a folder holds kohya latent caches/);
});
