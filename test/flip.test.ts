/**
 * --flip (issue 16): every row also holds the features of the horizontally flipped image, and
 * they equal what extracting a flipped copy of the file (made with sharp) gives, crop box
 * included: the copy's box is dinofeat's rule applied to the flipped file, i.e. the box mirrored.
 * The image stage mirrors the normalised tensor instead of decoding twice; that this commutes
 * with decoding, resizing and normalising is checked number by number. A crops file's
 * `"flip": true` (with --flip) gives the mirrored crop as the main features, stated in the flip
 * column, equal to a flopped file with the box mirrored; there the copy is of the trainer's box.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { cropBox, planByRule, resolveBuckets } from '../src/image/buckets.js';
import { DEFAULT_MAX_PIXELS } from '../src/image/decode.js';
import { mirrorBox, mirrorPlanes } from '../src/image/mirror.js';
import type { PrepareSettings } from '../src/image/prepare-settings.js';
import { createImagePreparer, type ChoosePlan } from '../src/pipeline/prepare.js';
import { validate } from '../src/validate/validate.js';
import { extractCache } from './fixtures/damaged-cache.js';
import { MODEL } from './fixtures/feature-rows.js';
import { writeStructured } from './fixtures/images.js';
import { makeTinyModel, type TinyModel } from './fixtures/tiny-model.js';
import { runCli } from './helpers/cli.js';
import { pythonJson } from './helpers/python.js';
import { tempDir } from './helpers/temp.js';

const BUCKETS = ['64x64', '128x64', '64x128'];
const BUCKET_FLAGS = BUCKETS.flatMap((b) => ['--bucket', b]);
/**
 * Under cover: a.png's and b.png's crops leave an odd number of columns, so the mirrored box sits
 * one pixel off the box and is rendered on its own; c.png's and d.png's leave an even margin (one
 * render serves both orientations).
 */
const IMAGES: Record<string, [number, number]> = { 'a.png': [201, 100], 'b.png': [90, 150], 'sub/c.png': [300, 100], 'd.png': [77, 61] };

let dir: string;
let images: string;
let flopped: string;
let model: TinyModel;

before(async () => {
  dir = tempDir();
  images = path.join(dir, 'images');
  flopped = path.join(dir, 'flopped');
  let seed = 5;
  for (const [key, [w, h]] of Object.entries(IMAGES)) {
    await writeStructured(path.join(images, key), w, h, seed++);
    fs.mkdirSync(path.dirname(path.join(flopped, key)), { recursive: true });
    await sharp(path.join(images, key)).flop().png().toFile(path.join(flopped, key));
  }
  model = await makeTinyModel(dir);
});

// Per key: the --flip cache's flipped copy against the plain extraction of the flopped file.
const COMPARE = `
import json, sys, os
import numpy as np, pyarrow as pa, pyarrow.parquet as pq
job = json.load(sys.stdin)
def rows(cache):
    out, meta = {}, None
    for f in sorted(os.listdir(os.path.join(cache, "shards"))):
        p = os.path.join(cache, "shards", f)
        t = pq.read_table(p) if f.endswith(".parquet") else pa.ipc.open_stream(p).read_all()
        meta = {k.decode(): v.decode() for k, v in t.schema.metadata.items()}
        cols = t.column_names
        for r in t.to_pylist():
            out[r["key"]] = r
    return out, meta, cols
flipped, meta, cols = rows(job["flipped"])
plain, _, _ = rows(job["plain"])
dtype = np.dtype(meta["dinofeat.dtype"])
def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())
report = {"columns": cols, "flip_meta": meta.get("dinofeat.flip"), "layout": meta["dinofeat.layout"], "rows": {}}
for key, r in flipped.items():
    q = plain[key]
    t = lambda v: np.frombuffer(v, dtype)
    report["rows"][key] = {
        "flip": r["flip"],
        "box": [r[c] for c in ("crop_x", "crop_y", "crop_w", "crop_h")],
        "plain_box": [q[c] for c in ("crop_x", "crop_y", "crop_w", "crop_h")],
        "bucket": [r["bucket_width"], r["bucket_height"]], "plain_bucket": [q["bucket_width"], q["bucket_height"]],
        "patches": rel(t(r["patches_flip"]), t(q["patches"])),
        "cls": rel(r["cls_flip"], q["cls"]),
        "registers": rel(t(r["registers_flip"]), t(q["registers"])) if "registers_flip" in r else None,
        # The flipped copy is not the upright features again (the images are not symmetric).
        "upright_vs_flopped": rel(t(r["patches"]), t(q["patches"])),
    }
print(json.dumps(report))
`;

interface Compared {
  columns: string[];
  flip_meta?: string;
  layout: string;
  rows: Record<string, { flip: boolean; box: number[]; plain_box: number[]; bucket: number[]; plain_bucket: number[]; patches: number; cls: number; registers: number | null; upright_vs_flopped: number }>;
}

for (const [format, resize] of [['parquet', 'cover'], ['arrow', 'stretch']] as const) {
  test(`--flip (${format}, ${resize}): the flipped copy equals extracting the flipped file, crop box mirrored`, async () => {
    const common = [...BUCKET_FLAGS, '--resize', resize, '--format', format, '--dtype', 'float32', '--registers'];
    const withFlip = await extractCache(images, model.onnx, [...common, '--flip']);
    const plainFlopped = await extractCache(flopped, model.onnx, common);
    const r = await pythonJson<Compared>(['-c', COMPARE], JSON.stringify({ flipped: withFlip, plain: plainFlopped }));
    assert.deepEqual(r.columns.slice(-4), ['flip', 'cls_flip', 'registers_flip', 'patches_flip']);
    assert.equal(r.flip_meta, 'true');
    assert.match(r.layout, /patches_flip/);
    assert.deepEqual(Object.keys(r.rows).sort(), Object.keys(IMAGES).sort());
    for (const [key, row] of Object.entries(r.rows)) {
      assert.equal(row.flip, false, `${key}: the plain columns are the upright image`);
      // The rule on the flipped file picks the same numbers in its own coordinates.
      assert.deepEqual(row.plain_box, row.box, key);
      assert.deepEqual(row.plain_bucket, row.bucket, key);
      // Measured at most 1.9e-6 of the scale (d.png's patches; the others 2e-7 to 6e-7): the
      // resize rounding above, through the model. 1e-5 leaves 5x; a copy of the unmirrored box
      // (a.png) or of the upright image is off by far more (upright_vs_flopped: 1.2 to 1.6).
      for (const group of ['patches', 'cls', 'registers'] as const) assert.ok(row[group]! <= 1e-5, `${key} ${group}: ${row[group]}`);
      assert.ok(row.upright_vs_flopped > 0.05, `${key}: the images must not be symmetric for this test to mean anything`);
    }
    assert.ok(fs.existsSync(path.join(withFlip, 'cache.json')));
    const config = JSON.parse(fs.readFileSync(path.join(withFlip, 'cache.json'), 'utf8')) as { flip?: boolean };
    assert.equal(config.flip, true);
    const check = await validate(withFlip, { model: model.onnx, images: [images], recompute: 2 });
    assert.ok(check.ok, JSON.stringify(check.checks, null, 1));
    const recompute = check.checks.find((c) => c.check === 'recompute')!;
    assert.ok(recompute.summary.some((line) => line.startsWith('patches_flip: ')), 'validate recomputes the flipped copies too');
  });
}

/** A trainer's crops file for `images`: off-centre boxes, two of them mirrored by the trainer. */
const TRAINER: Record<string, { bucket: [number, number]; crop: [number, number, number, number]; flip?: true }> = {
  'a.png': { bucket: [128, 64], crop: [10, 5, 150, 80], flip: true },
  'b.png': { bucket: [64, 128], crop: [0, 20, 60, 120] },
  'sub/c.png': { bucket: [128, 64], crop: [120, 0, 180, 100], flip: true },
  'd.png': { bucket: [64, 64], crop: [3, 1, 50, 50] },
};

/** The crops file's lines; `mirrored`: the same boxes in the flopped files, no flips. */
function trainerLines(mirrored: boolean): string {
  return Object.entries(TRAINER).map(([key, { bucket, crop, flip }]) => {
    const box = mirrored ? mirrorBox({ x: crop[0], y: crop[1], w: crop[2], h: crop[3] }, IMAGES[key]![0]) : { x: crop[0], y: crop[1], w: crop[2], h: crop[3] };
    const line = { key, bucket_width: bucket[0], bucket_height: bucket[1], crop_x: box.x, crop_y: box.y, crop_w: box.w, crop_h: box.h, ...(flip && !mirrored ? { flip } : {}) };
    return `${JSON.stringify(line)}\n`;
  }).join('');
}

// Per key: a --crops --flip cache's plain and flipped columns against the upright and the flopped files' plain ones.
const COMPARE_PLANNED = `
import json, sys, os
import numpy as np, pyarrow.parquet as pq
job = json.load(sys.stdin)
def rows(cache):
    out = {}
    for f in sorted(os.listdir(os.path.join(cache, "shards"))):
        t = pq.read_table(os.path.join(cache, "shards", f))
        dtype = np.dtype(t.schema.metadata[b"dinofeat.dtype"].decode())
        for r in t.to_pylist():
            r["t"] = {c: np.frombuffer(r[c], dtype).astype(np.float64) for c in ("patches", "patches_flip") if c in r}
            out[r["key"]] = r
    return out
planned, upright, flopped = rows(job["planned"]), rows(job["upright"]), rows(job["flopped"])
rel = lambda a, b: float(np.abs(a - b).max() / np.abs(b).max())
report = {}
for key, r in planned.items():
    u, f = upright[key]["t"]["patches"], flopped[key]["t"]["patches"]
    report[key] = {
        "flip": r["flip"], "box": [r[c] for c in ("crop_x", "crop_y", "crop_w", "crop_h")],
        "bucket": [r["bucket_width"], r["bucket_height"]],
        "main_vs_flopped": rel(r["t"]["patches"], f), "main_vs_upright": rel(r["t"]["patches"], u),
        "copy_vs_flopped": rel(r["t"]["patches_flip"], f), "copy_vs_upright": rel(r["t"]["patches_flip"], u),
        "cls_main_vs_flopped": rel(np.array(r["cls"]), np.array(flopped[key]["cls"])),
    }
print(json.dumps(report))
`;

test('--crops with "flip": true and --flip: the plain columns are the flipped image (flip = true), equal to the flopped file with the mirrored box; dinofeat crops writes the flips back', async () => {
  const upright = path.join(dir, 'trainer.jsonl');
  fs.writeFileSync(upright, trainerLines(false));
  const mirroredFile = path.join(dir, 'trainer-flopped.jsonl');
  fs.writeFileSync(mirroredFile, trainerLines(true));
  const common = ['--dtype', 'float32', '--registers'];
  const planned = await extractCache(images, model.onnx, [...common, '--crops', upright, '--flip']);
  // The same boxes without the flips: what the upright plain columns must be.
  const noFlips = path.join(dir, 'trainer-no-flips.jsonl');
  fs.writeFileSync(noFlips, trainerLines(false).replace(/,"flip":true/g, ''));
  const uprightCache = await extractCache(images, model.onnx, [...common, '--crops', noFlips]);
  const floppedCache = await extractCache(flopped, model.onnx, [...common, '--crops', mirroredFile]);
  const r = await pythonJson<Record<string, { flip: boolean; box: number[]; bucket: number[]; main_vs_flopped: number; main_vs_upright: number; copy_vs_flopped: number; copy_vs_upright: number; cls_main_vs_flopped: number }>>(
    ['-c', COMPARE_PLANNED], JSON.stringify({ planned, upright: uprightCache, flopped: floppedCache }));
  assert.deepEqual(Object.keys(r).sort(), Object.keys(TRAINER).sort());
  for (const [key, row] of Object.entries(r)) {
    const t = TRAINER[key]!;
    assert.equal(row.flip, t.flip === true, key);
    assert.deepEqual(row.box, t.crop, `${key}: the row keeps the file's box, in upright source pixels`);
    assert.deepEqual(row.bucket, t.bucket, key);
    // The limit of the --flip test above (measured <= 1.9e-6 of the scale, 1e-5 leaves 5x); the
    // other orientation is off by ~1 (the images are not symmetric), which a flip ignored, or
    // mirrored the wrong way round, would show.
    const [same, other] = t.flip ? [row.main_vs_flopped, row.main_vs_upright] : [row.main_vs_upright, row.main_vs_flopped];
    const [copySame, copyOther] = t.flip ? [row.copy_vs_upright, row.copy_vs_flopped] : [row.copy_vs_flopped, row.copy_vs_upright];
    assert.ok(same <= 1e-5 && copySame <= 1e-5, `${key}: plain ${same}, copy ${copySame}`);
    assert.ok(other > 0.05 && copyOther > 0.05, `${key}: the orientations must differ for this test to mean anything (${other}, ${copyOther})`);
    if (t.flip) assert.ok(row.cls_main_vs_flopped <= 1e-5, `${key} cls: ${row.cls_main_vs_flopped}`);
  }
  // Round trip: the exported file is the file extract read, flips included.
  const exported = await runCli(['crops', planned]);
  assert.equal(exported.code, 0, exported.stderr);
  const byKey = (text: string) => Object.fromEntries(text.split('\n').filter(Boolean).map((l) => [JSON.parse(l).key, JSON.parse(l)]));
  assert.deepEqual(byKey(exported.stdout), byKey(trainerLines(false)));
  // The loader example: both orientations cover the trainer's box; the upright one is the column flip does not name.
  const loader = await pythonJson<Record<string, { crops: number[][]; upright_column: string }>>(['-c', `
import json, sys
sys.path.insert(0, "examples")
from load_cache import FeatureCache
cache = FeatureCache(sys.stdin.read().strip())
out = {}
for i in range(len(cache)):
    up, fl = cache.get(i), cache.get(i, flipped=True)
    plain = cache._tensor("patches", i, tuple(up["patches"].shape))
    out[up["key"]] = {"crops": [list(up["crop"]), list(fl["crop"])], "upright_column": "patches" if bool((up["patches"] == plain).all()) else "patches_flip"}
print(json.dumps(out))
`], planned);
  for (const [key, t] of Object.entries(TRAINER)) {
    assert.deepEqual(loader[key]!.crops, [t.crop, t.crop], key);
    assert.equal(loader[key]!.upright_column, t.flip ? 'patches_flip' : 'patches', key);
  }
  // validate re-extracts each row with its own box and orientation.
  const check = await validate(planned, { model: model.onnx, images: [images], recompute: 4 });
  assert.ok(check.ok, JSON.stringify(check.checks, null, 1));
});

test('a cache without --flip keeps its columns and cache.json, and refuses a run with --flip', async () => {
  const out = await extractCache(images, model.onnx, BUCKET_FLAGS);
  const config = JSON.parse(fs.readFileSync(path.join(out, 'cache.json'), 'utf8')) as Record<string, unknown>;
  assert.equal('flip' in config, false);
  const r = await runCli(['extract', images, '--out', out, '--model', model.onnx, '--quiet', ...BUCKET_FLAGS, '--flip']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /no flipped copies vs flipped copies kept/);
});

async function preparedPair(resize: 'cover' | 'stretch', flipCopies: boolean) {
  const settings: PrepareSettings = {
    buckets: resolveBuckets({ bucket: BUCKETS, dinoScale: 1 }, MODEL.patchSize),
    resize, dinoScale: 1, flipCopies,
    decode: { maxPixels: DEFAULT_MAX_PIXELS, background: '#ffffff', icc: 'ignore' },
  };
  return createImagePreparer(MODEL, settings);
}

test('mirroring the normalised tensor of the mirrored box equals preparing the flipped file, value for value', async () => {
  const preparer = await preparedPair('cover', true);
  try {
    for (const key of Object.keys(IMAGES)) {
      const got = await preparer.prepare(fs.readFileSync(path.join(images, key)));
      const want = await preparer.prepare(fs.readFileSync(path.join(flopped, key)));
      assert.deepEqual(mirrorBox(want.crop, want.width), mirrorBox(got.crop, got.width), key);
      // Measured at most 7.2e-7 on values of about ±2 (2e-5 for d.png, enlarged, before the y pass
      // went to fixed point): the resize weights are symmetric about the pixel centres up to
      // rounding, and where two of a line's taps tie in the fixed-point rounding, the mirrored
      // line may give the unit to the other one. The unmirrored box (a.png) is off by ~1.
      let diff = 0;
      for (let i = 0; i < want.pixels.length; i++) diff = Math.max(diff, Math.abs(got.mirrored![i]! - want.pixels[i]!));
      assert.ok(diff <= 1e-4, `${key}: ${diff}`);
    }
  } finally {
    await preparer.close();
  }
});

test('a per-image plan with flip gives the mirrored crop as the main view and the upright as its copy', async () => {
  const withCopies = await preparedPair('cover', true);
  const plain = await preparedPair('cover', false);
  try {
    // sub/c.png: 300x100 into 128x64 leaves an even margin, so the box is its own mirror.
    const bytes = fs.readFileSync(path.join(images, 'sub/c.png'));
    const upright = await plain.prepare(bytes);
    assert.deepEqual(upright.crop, mirrorBox(upright.crop, upright.width));
    assert.deepEqual(upright.crop, cropBox({ width: 300, height: 100 }, { width: 128, height: 64, trainer: { width: 128, height: 64 } }, 'cover'));
    // A plan (a crops file's line) that keeps the rule's bucket and box and asks for the mirror.
    const flipped: ChoosePlan = (size) => ({ ...planByRule(size, resolveBuckets({ bucket: BUCKETS, dinoScale: 1 }, MODEL.patchSize), 'cover'), flip: true });
    const asked = await withCopies.prepare(bytes, flipped);
    assert.equal(asked.flip, true);
    assert.deepEqual(asked.pixels, mirrorPlanes(upright.pixels, 64, 128));
    assert.deepEqual(asked.mirrored, upright.pixels);
    const alone = await plain.prepare(bytes, flipped);
    assert.deepEqual(alone.pixels, asked.pixels);
    assert.equal(alone.mirrored, undefined);
  } finally {
    await withCopies.close();
    await plain.close();
  }
});

test('mirrorPlanes reverses each row of each channel', () => {
  // 2 channels of 2x3.
  const t = Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  assert.deepEqual([...mirrorPlanes(t, 2, 3)], [3, 2, 1, 6, 5, 4, 9, 8, 7, 12, 11, 10]);
  assert.deepEqual(mirrorBox({ x: 10, y: 3, w: 50, h: 20 }, 100), { x: 40, y: 3, w: 50, h: 20 });
});
