// npm run bench: end-to-end `dinofeat extract` vs the bare model on the same bucket shapes, and
// vs the transformers.js image-feature-extraction pipeline, in one run. This machine's speed
// drifts by several percent from one minute to the next, so the bare model and extract are
// measured in turns (bare, extract, bare, extract) and compared on their sums. The same images
// from a tar shard and a Parquet file are timed against the folder they came from.
// Writes bench/results.json.
//
// The image stage is also measured against the decode floor (the work any exact pipeline does):
// extract with a tiny model vs read + sha256 + full-frame decode + the bare model, and
// --decode fast vs sharp's own shrink-on-load path; --image-stage runs only that part. These rows
// and the container row are steady state: runs over N and 2N images, differenced (steadyPerImage).
// Like extract, each floor measurement runs in a fresh process (`bench.mjs --floor-run`, floorRun),
// and both sides report the CPU time of all their threads beside their wall time.
//
//   node scripts/bench.mjs [--images N] [--quick] [--image-stage] [--containers-only [--rounds R]]
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = (p) => path.join(root, 'dist', p);
const cli = path.join(root, 'bin', 'dinofeat.js');
const arg = (name, fallback) => {
  const k = process.argv.indexOf(name);
  return k > 0 ? process.argv[k + 1] : fallback;
};
const quick = process.argv.includes('--quick');
/** Only the folder / tar / Parquet row (tiny model): minutes less on a shared machine. */
const containersOnly = process.argv.includes('--containers-only');
const N = Number(arg('--images', quick ? 16 : 32));
const ROUNDS = quick ? 1 : 2;
const BATCH = 4;
/** Each image's copies in the container row's sources: N images more span seconds, not a tenth of one. */
const CONTAINER_REPEAT = 8;
/** Image counts for the memory curve (tiny model): the pipeline alone holds ~30 images. */
const MEMORY_SIZES = quick ? [32, 128] : [32, 128, 512, 2048];
const host = await import('./bench-host.mjs');
const allocatorInUse = await host.underExtractAllocator();
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'dinofeat-bench-'));
process.env.ORT_DISABLE_TELEMETRY ??= '1';

const { resolveBuckets, assignBucket } = await import(dist('image/buckets.js'));
const { readHeader } = await import(dist('image/decode.js'));
const { loadModelInfo } = await import(dist('model/load-info.js'));
const { default: ort } = await import(dist('model/ort.js'));
const { sessionOptions } = await import(dist('model/devices.js'));
const { normalisationOf, planResample, resample } = await import(dist('image/resample.js'));
const { axisMap } = await import(dist('image/orientation.js'));

const SIZES = [[1600, 1200], [1200, 1600], [1024, 1024], [1920, 1080], [800, 1200], [2000, 1333], [640, 960], [1400, 900]];

/** Mixed sizes, both orientations, photo-like content (smooth gradients + noise + shapes). */
async function makeImages(dir, count, sizes = SIZES, prefix = 'img') {
  fs.mkdirSync(dir, { recursive: true });
  for (let k = 0; k < count; k++) {
    const [w, h] = sizes[k % sizes.length];
    const noise = await sharp({ create: { width: w, height: h, channels: 3, noise: { type: 'gaussian', mean: 128, sigma: 40 } } }).blur(3).raw().toBuffer();
    const svg = `<svg width="${w}" height="${h}"><defs><linearGradient id="g"><stop offset="0" stop-color="rgb(${(k * 37) % 255},90,160)"/><stop offset="1" stop-color="rgb(240,${(k * 53) % 255},40)"/></linearGradient></defs><rect width="100%" height="100%" fill="url(#g)" fill-opacity="0.6"/><circle cx="${w / 3}" cy="${h / 2}" r="${Math.min(w, h) / 5}" fill="navy"/><rect x="${w / 2}" y="${h / 4}" width="${w / 4}" height="${h / 3}" fill="white"/></svg>`;
    await sharp(noise, { raw: { width: w, height: h, channels: 3 } })
      .composite([{ input: Buffer.from(svg) }])
      .jpeg({ quality: 90 })
      .toFile(path.join(dir, `${prefix}-${String(k).padStart(4, '0')}.jpg`));
  }
}

/** A larger set without decoding more: hard links of `dir`'s files under new names (new keys). */
function linkImages(dir, into, count) {
  fs.mkdirSync(into, { recursive: true });
  const files = fs.readdirSync(dir).sort();
  for (let k = 0; k < count; k++) fs.linkSync(path.join(dir, files[k % files.length]), path.join(into, `r${Math.floor(k / files.length)}-${files[k % files.length]}`));
}

/**
 * Steady state, start-up differenced away: a measurement runs over N images and over 2N (the same
 * N and N more like them), in turns, and the time per image is the difference of the two sums
 * over the N images more. One run alone also pays for starting its workers, compiling, and the
 * first touch of its buffers, which a run over millions of images pays once.
 */
function steadyPerImage(secondsN, seconds2N, n) {
  const sum = (xs) => xs.reduce((a, x) => a + x, 0);
  return (sum(seconds2N) - sum(secondsN)) / (secondsN.length * n);
}

/** One `dinofeat extract` run, as a user runs it; rate and peak RSS from its own summary. */
function runExtract(images, model, flags) {
  const out = fs.mkdtempSync(path.join(work, 'cache-'));
  let stdout;
  try {
    stdout = execFileSync(cli, ['extract', images, '--model', model, '--out', out, '--batch-size', String(BATCH), '--quiet', ...flags], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: host.extractEnv() });
  } catch (e) {
    throw new Error(`extract failed: ${e.stderr}`);
  }
  const rate = /of (\d+) images in .*\(([\d.]+) img\/s\)/.exec(stdout);
  const rss = /peak memory (\d+) MiB/.exec(stdout);
  // CPU an image has three figures, the run's total only tenths of a second.
  const cpuMs = /; CPU [\d.]+ s, ([\d.]+) ms an image/.exec(stdout);
  const manifest = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'));
  fs.rmSync(out, { recursive: true, force: true });
  return { images: Number(rate[1]), seconds: Number(rate[1]) / Number(rate[2]), cpuSeconds: (Number(cpuMs[1]) * Number(rate[1])) / 1000, peakRssMiB: Number(rss[1]), manifest };
}

/** The model alone, warm, on pre-made tensors of exactly the bucket shapes extract runs, in full batches. */
async function bareModel(modelPath, perBucket) {
  const session = await ort.InferenceSession.create(modelPath, sessionOptions({ device: 'cpu' }));
  const batches = [];
  for (const [key, count] of perBucket) {
    const [w, h] = key.split('x').map(Number);
    for (let done = 0; done < count; done += BATCH) batches.push([Math.min(BATCH, count - done), h, w]);
  }
  const run = ([n, h, w]) => session.run({ pixel_values: new ort.Tensor('float32', new Float32Array(n * 3 * h * w).fill(0.1), [n, 3, h, w]) });
  // Warm-up, once per tensor shape: a first run at a shape pays for allocation (extract pays it; bare does not).
  for (const shape of new Map(batches.map((b) => [b.join('x'), b])).values()) await run(shape);
  const t = performance.now();
  for (const b of batches) await run(b);
  const seconds = (performance.now() - t) / 1000;
  await session.release();
  return seconds;
}

async function bucketCounts(modelPath, images, dinoScale) {
  const info = loadModelInfo(modelPath);
  const buckets = resolveBuckets({ buckets: 'sdxl', dinoScale }, info.patchSize);
  const perBucket = new Map();
  for (const f of fs.readdirSync(images)) {
    const h = await readHeader(fs.readFileSync(path.join(images, f)), { maxPixels: 1e9 });
    const b = assignBucket(h, buckets);
    const key = `${b.width}x${b.height}`;
    perBucket.set(key, (perBucket.get(key) ?? 0) + 1);
  }
  return perBucket;
}

/** transformers.js pipeline on the same images and model (local folder, no downloads). */
async function transformersJs(modelPath, images, side) {
  const { pipeline, env } = await import('@huggingface/transformers');
  const repo = path.join(work, 'tjs-model');
  fs.rmSync(repo, { recursive: true, force: true });
  fs.mkdirSync(path.join(repo, 'onnx'), { recursive: true });
  fs.copyFileSync(modelPath, path.join(repo, 'onnx', 'model.onnx'));
  const ckpt = path.join(path.dirname(modelPath), 'checkpoint');
  fs.copyFileSync(path.join(ckpt, 'config.json'), path.join(repo, 'config.json'));
  const pre = JSON.parse(fs.readFileSync(path.join(ckpt, 'preprocessor_config.json'), 'utf8'));
  pre.size = { height: side, width: side };
  fs.writeFileSync(path.join(repo, 'preprocessor_config.json'), JSON.stringify(pre));
  env.allowRemoteModels = false;
  env.localModelPath = work;
  const extractor = await pipeline('image-feature-extraction', 'tjs-model', { dtype: 'fp32', device: 'cpu' });
  const files = fs.readdirSync(images).map((f) => path.join(images, f));
  await extractor(files[0]);
  const t = performance.now();
  for (let k = 0; k < files.length; k += BATCH) await extractor(files.slice(k, k + BATCH));
  const seconds = (performance.now() - t) / 1000;
  await extractor.dispose?.();
  return { imagesPerSecond: files.length / seconds, inputSize: `${side}x${side}` };
}

/**
 * The same images from a folder, a tar shard and two Parquet files (the image column uncompressed,
 * as `datasets` writes it, and snappy, pyarrow's default codec), extract run on each in turn, the
 * order turned round each round; each source over N images and over 2N (`more` added), so the
 * time per image is steady state: the containers must be at least as fast as the folder. Each image
 * goes in `repeat` times under other names: over 32 and 64 images a run's N images more took 0.1-0.2 s
 * and the same folder's rate ran 135-408 img/s from one bench to the next.
 */
async function containerSources(images, more, model, flags, repeat) {
  const { default: tarStream } = await import('tar-stream');
  const { parquetWriteFile } = await import('hyparquet-writer');
  const sets = { one: [images], two: [images, more] };
  const filesOf = (dirs) => dirs.flatMap((d) => fs.readdirSync(d).sort().map((f) => path.join(d, f)));
  const n = filesOf(sets.one).length * repeat;
  const inputs = {};
  for (const [size, dirs] of Object.entries(sets)) {
    const folder = path.join(work, `folder-${size}`);
    for (const dir of dirs) linkImages(dir, folder, fs.readdirSync(dir).length * repeat);
    const files = filesOf([folder]);
    const tar = path.join(work, `shard-${size}.tar`);
    const pack = tarStream.pack();
    const written = new Promise((resolve, reject) => pack.pipe(fs.createWriteStream(tar)).on('finish', resolve).on('error', reject));
    for (const f of files) pack.entry({ name: path.basename(f) }, fs.readFileSync(f));
    pack.finalize();
    await written;
    const parquet = (codec) => {
      const file = path.join(work, `images-${size}-${codec.toLowerCase()}.parquet`);
      parquetWriteFile({ filename: file, codec, columnData: [{ name: 'image', data: files.map((f) => new Uint8Array(fs.readFileSync(f))), type: 'BYTE_ARRAY' }] });
      return file;
    };
    inputs[size] = { folder, tar, parquet: parquet('UNCOMPRESSED'), parquetSnappy: parquet('SNAPPY') };
  }
  const kinds = Object.keys(inputs.one);
  const seconds = Object.fromEntries(kinds.map((kind) => [kind, { one: [], two: [] }]));
  const rounds = Number(arg('--rounds', ROUNDS));
  for (let r = 0; r < rounds; r++) {
    console.error(`bench: folder / tar / Parquet / Parquet snappy, ${n} and ${2 * n} images each, round ${r + 1}/${rounds}`);
    // This machine's speed drifts: the order turns round each round, so no source always goes first.
    const order = r % 2 ? [...kinds].reverse() : kinds;
    for (const kind of order) {
      for (const size of r % 2 ? ['two', 'one'] : ['one', 'two']) seconds[kind][size].push(runExtract(inputs[size][kind], model, flags).seconds);
    }
  }
  const perImage = Object.fromEntries(kinds.map((kind) => [kind, steadyPerImage(seconds[kind].one, seconds[kind].two, n)]));
  return {
    flags: flags.join(' '),
    rounds,
    images: [n, 2 * n],
    folderImagesPerSecond: 1 / perImage.folder,
    tarImagesPerSecond: 1 / perImage.tar,
    parquetImagesPerSecond: 1 / perImage.parquet,
    parquetSnappyImagesPerSecond: 1 / perImage.parquetSnappy,
    ratioTarVsFolder: perImage.folder / perImage.tar,
    ratioParquetVsFolder: perImage.folder / perImage.parquet,
    ratioParquetSnappyVsFolder: perImage.folder / perImage.parquetSnappy,
    /** Whole runs over 2N images, start-up included, as a user timing one short run sees them. */
    wholeRunRatioVsFolder: Object.fromEntries(kinds.map((kind) => [kind, seconds.folder.two.reduce((a, x) => a + x) / seconds[kind].two.reduce((a, x) => a + x)])),
  };
}

function ensureModel(size) {
  const dir = path.join(root, 'models', `bench-${size}`);
  const model = path.join(dir, 'model.onnx');
  if (!fs.existsSync(model)) execFileSync(process.execPath, [cli, 'test-model', dir, '--size', size], { stdio: 'ignore' });
  return model;
}

// ---- The image stage against the decode floor (tiny model, so the host work decides) ----

/** Camera sizes from 0.8 to 12.2 MP, both orientations. */
const CAMERA_SIZES = [[1024, 768], [1280, 960], [1600, 1200], [1536, 2048], [2592, 1944], [3000, 2000], [2448, 3264], [3648, 2736], [4000, 3000], [4032, 3024]];
/** Large photos from current cameras, 18 to 26 MP, both orientations. */
const LARGE_SIZES = [[5184, 3456], [3456, 5184], [5472, 3648], [6000, 4000], [4000, 6000], [6240, 4160]];
/** ImageNet's typical shapes. */
const IMAGENET_SIZES = [[500, 375], [375, 500], [500, 333], [500, 400]];
const FLOOR_DECODERS = 4;

/**
 * The floor: what any exact pipeline must do per image (read, sha256, decode the full frame with
 * EXIF orientation to raw RGB, FLOOR_DECODERS at a time), or with `shrinkTo`, sharp's own
 * shrink-on-load path to the bucket (not exact pixels); plus the bare model at the bucket.
 */
async function decodeFloor(dir, model, bucket, shrinkTo) {
  const files = fs.readdirSync(dir).sort().map((f) => path.join(dir, f));
  let next = 0;
  const t = performance.now();
  await Promise.all(Array.from({ length: FLOOR_DECODERS }, async () => {
    while (next < files.length) {
      const bytes = await fs.promises.readFile(files[next++]);
      createHash('sha256').update(bytes).digest();
      const img = sharp(bytes).autoOrient();
      await (shrinkTo ? img.resize(shrinkTo[0], shrinkTo[1], { fit: 'fill' }) : img).raw().toBuffer();
    }
  }));
  const decodeSeconds = (performance.now() - t) / 1000;
  return decodeSeconds + (await bareModel(model, new Map([[`${bucket[0]}x${bucket[1]}`, files.length]])));
}

/**
 * The floor in a process of its own, as extract runs: a full-frame decode's cost here is mostly
 * writing its frame into memory, which costs far more on pages the kernel must supply, so a floor
 * run inside this long-lived process depended on what the bench had done before (27.9 ms of CPU an
 * image in `--image-stage` alone, 44.0 after the bench's other parts: docs/speed.md).
 * Returns seconds (decode + bare model) and the CPU time of all its threads over the same work.
 */
function floorRun(dir, model, bucket, shrinkTo) {
  const args = [fileURLToPath(import.meta.url), '--floor-run', dir, model, String(bucket[0]), String(bucket[1]), shrinkTo ? 'shrink' : 'full'];
  return JSON.parse(execFileSync(process.execPath, args, { encoding: 'utf8' }));
}

if (process.argv.includes('--floor-run')) {
  const [dir, model, w, h, how] = process.argv.slice(process.argv.indexOf('--floor-run') + 1);
  const bucket = [Number(w), Number(h)];
  const cpu = process.cpuUsage();
  const seconds = await decodeFloor(dir, model, bucket, how === 'shrink' ? bucket : undefined);
  const used = process.cpuUsage(cpu);
  console.log(JSON.stringify({ seconds, cpuSeconds: (used.user + used.system) / 1e6 }));
  fs.rmSync(work, { recursive: true, force: true });
  process.exit(0);
}

/**
 * Floor and extract in turns, each over N images and over 2N, compared in steady state
 * (steadyPerImage); extract's times are its own (first image read to last row written, so model
 * loading is left out), the floor's are taken in its own process (floorRun) around the same work.
 */
async function floorVsExtract(name, sizes, made, bucket, { fast = false, repeat = 1, rounds = quick ? 1 : 3 } = {}) {
  const madeDir = path.join(work, `${name}-made`);
  const two = path.join(work, `${name}-2n`);
  const one = path.join(work, `${name}-n`);
  // `made` distinct images, each `repeat` times under other names in the N run and twice as often in
  // the 2N run: a run's span, not the images made, sets how much one stall of this shared machine
  // moves a round (a round over 30 camera-sized images swung 0.53-1.52; with --decode fast, 60 and
  // 120 images, a difference of half a second, swung 0.50-1.29).
  const count = made * repeat;
  await makeImages(madeDir, made, sizes);
  linkImages(madeDir, two, 2 * count);
  linkImages(madeDir, one, count);
  const model = ensureModel('tiny');
  const flags = ['--bucket', `${bucket[0]}x${bucket[1]}`, ...(fast ? ['--decode', 'fast'] : [])];
  const floor = { one: [], two: [] }, extract = { one: [], two: [] };
  // CPU time of every thread, the same spans: on a host with cores to spare (a GPU host), the rate
  // the host work allows is cores over CPU an image, so this ratio is the one that carries over.
  const floorCpu = { one: [], two: [] }, extractCpu = { one: [], two: [] };
  // Unrecorded first runs: the first reads of the images just written would otherwise count in one side only.
  floorRun(one, model, bucket, fast ? bucket : undefined);
  let peak = runExtract(one, model, flags).peakRssMiB;
  for (let r = 0; r < rounds; r++) {
    console.error(`bench: image stage, ${name}${fast ? ' --decode fast' : ''}, ${count} and ${2 * count} images, round ${r + 1}/${rounds}`);
    for (const [size, dir] of r % 2 ? [['two', two], ['one', one]] : [['one', one], ['two', two]]) {
      const f = floorRun(dir, model, bucket, fast ? bucket : undefined);
      floor[size].push(f.seconds);
      floorCpu[size].push(f.cpuSeconds);
      const e = runExtract(dir, model, flags);
      extract[size].push(e.seconds);
      extractCpu[size].push(e.cpuSeconds);
      peak = Math.max(peak, e.peakRssMiB);
    }
  }
  for (const dir of [madeDir, one, two]) fs.rmSync(dir, { recursive: true, force: true });
  const floorPerImage = steadyPerImage(floor.one, floor.two, count);
  const extractPerImage = steadyPerImage(extract.one, extract.two, count);
  const sum = (xs) => xs.reduce((a, x) => a + x, 0);
  return {
    workload: `${count} and ${2 * count} ${name} JPEGs (${made} made${repeat > 1 ? `, each ${repeat} and ${2 * repeat} times` : ''}; ${sizes.map(([w, h]) => `${w}x${h}`).join(', ')}), --bucket ${bucket.join('x')}${fast ? ' --decode fast' : ''}`,
    floor: fast ? "sharp's shrink-on-load resize to the bucket + bare model" : 'full-frame decode + bare model',
    floorImagesPerSecond: 1 / floorPerImage, extractImagesPerSecond: 1 / extractPerImage, ratio: floorPerImage / extractPerImage,
    /** CPU ms an image, steady (the floor's includes the bare model's session, differenced away). */
    floorCpuMs: 1000 * steadyPerImage(floorCpu.one, floorCpu.two, count),
    extractCpuMs: 1000 * steadyPerImage(extractCpu.one, extractCpu.two, count),
    /** Per round, the same difference. */
    ratioPerRound: floor.one.map((_, r) => (floor.two[r] - floor.one[r]) / (extract.two[r] - extract.one[r])),
    /** Whole runs over 2N images, start-up included. */
    wholeRunRatio: sum(floor.two) / sum(extract.two),
    extractPeakRssMiB: peak,
  };
}

/** Peak RSS of extract over one very large JPEG (9000x6000, 54 MP; its RGB8 frame alone is 162 MB). */
async function largeJpegPeak() {
  const dir = path.join(work, 'large');
  await makeImages(dir, 1, [[9000, 6000]]);
  const { peakRssMiB } = runExtract(dir, ensureModel('tiny'), ['--bucket', '256x256']);
  fs.rmSync(dir, { recursive: true, force: true });
  return { image: '9000x6000 JPEG', peakRssMiB };
}

/**
 * The exact resampler alone (DINOv3's bilinear filter, as extract runs it on a worker, its output
 * buffer reused): median CPU ms a frame, what extract adds to each decode that the floor does not.
 */
function resamplerCost() {
  const norm = normalisationOf({ family: 'dinov3', imageMean: [0.485, 0.456, 0.406], imageStd: [0.229, 0.224, 0.225] });
  return [[6000, 4000, 256], [4032, 3024, 256], [3000, 2000, 256], [500, 375, 224], [4032, 3024, 1024]].map(([width, height, side]) => {
    const stored = { width, height };
    const frame = randomBytes(width * height * 3); // the arithmetic does not depend on the pixels
    const plan = planResample(stored, { width: side, height: side }, axisMap(1), 'bilinear');
    const out = new Float32Array(3 * side * side);
    return { frame: `${width}x${height} → ${side}x${side}`, ms: host.medianMs(() => resample(frame, stored, plan, norm, out), quick ? 5 : 15) };
  });
}

async function imageStageBench() {
  const count = quick ? 10 : 60;
  // Each row's N images more span 3-4 s of the floor here (camera-sized 73-88 img/s, large 22-28,
  // ImageNet-sized 377-461, fast 123-176), so that one stall moves a round by a few percent.
  const repeat = (r) => (quick ? 1 : r);
  return {
    resampler: resamplerCost(),
    rows: [
      await floorVsExtract('camera-sized', CAMERA_SIZES, count, [256, 256], { repeat: repeat(4) }),
      await floorVsExtract('large', LARGE_SIZES, quick ? 4 : 20, [256, 256], { repeat: repeat(4) }),
      await floorVsExtract('ImageNet-sized', IMAGENET_SIZES, count * 10, [224, 224], { repeat: repeat(3) }),
      await floorVsExtract('camera-sized', CAMERA_SIZES, count, [256, 256], { fast: true, repeat: repeat(8) }),
    ],
    large: await largeJpegPeak(),
  };
}

function printImageStage(r) {
  console.log('\n| image stage (tiny model) | floor img/s | extract img/s | steady ratio (per round) | whole runs of 2N, start-up included | CPU ms an image, floor / extract (ratio) | extract peak RSS |');
  console.log('|---|---|---|---|---|---|---|');
  for (const row of r.rows) {
    const cpu = `${row.floorCpuMs.toFixed(1)} / ${row.extractCpuMs.toFixed(1)} (${(row.floorCpuMs / row.extractCpuMs).toFixed(2)})`;
    console.log(`| ${row.workload}; floor: ${row.floor} | ${row.floorImagesPerSecond.toFixed(1)} | ${row.extractImagesPerSecond.toFixed(1)} | **${row.ratio.toFixed(2)}** (${row.ratioPerRound.map((x) => x.toFixed(2)).join(', ')}) | ${row.wholeRunRatio.toFixed(2)} | ${cpu} | ${row.extractPeakRssMiB} MiB |`);
  }
  console.log(`\npeak RSS of extract over one ${r.large.image}: ${r.large.peakRssMiB} MiB`);
  console.log(`the exact resampler alone, median CPU ms a frame: ${r.resampler.map((x) => `${x.frame} ${x.ms.toFixed(2)}`).join(', ')}`);
}

if (process.argv.includes('--image-stage')) {
  printImageStage(await imageStageBench());
  fs.rmSync(work, { recursive: true, force: true });
  process.exit(0);
}

const images = path.join(work, 'images');
console.error(`bench: making ${N} images in ${work}`);
await makeImages(images, N);

const results = {
  date: new Date().toISOString(),
  machine: `${os.availableParallelism()} cores, ${os.cpus()[0]?.model ?? '?'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, allocator ${allocatorInUse}`,
  images: N, batch: BATCH, rounds: ROUNDS, models: {},
};
const configs = [
  { name: 'tiny test model (hidden 64, 2 layers)', size: 'tiny', dinoScale: 0.25, tjsSide: 256 },
  { name: 'ViT-S/16-shaped (21.6M params)', size: 'vits16', dinoScale: quick ? 0.5 : 1, tjsSide: quick ? 512 : 1024 },
];
for (const c of containersOnly ? [] : configs) {
  const model = ensureModel(c.size);
  const flags = ['--buckets', 'sdxl', '--dino-scale', String(c.dinoScale)];
  const perBucket = await bucketCounts(model, images, c.dinoScale);
  const rounds = [];
  for (let r = 0; r < ROUNDS; r++) {
    console.error(`bench: ${c.name}, round ${r + 1}/${ROUNDS}`);
    const bareSeconds = await bareModel(model, perBucket);
    const e2e = runExtract(images, model, flags);
    rounds.push({ bareSeconds, extractSeconds: e2e.seconds, ratio: bareSeconds / e2e.seconds, peakRssMiB: e2e.peakRssMiB, manifest: e2e.manifest });
  }
  const tjs = await transformersJs(model, images, c.tjsSide);
  // The same model at the peer's fixed square input: its images cost the model this much.
  const bareSquareSeconds = await bareModel(model, new Map([[`${c.tjsSide}x${c.tjsSide}`, N]]));
  const bareSeconds = rounds.reduce((a, r) => a + r.bareSeconds, 0);
  const extractSeconds = rounds.reduce((a, r) => a + r.extractSeconds, 0);
  const { manifest } = rounds[0];
  const rows = manifest.counts.rows;
  const { hiddenSize: hidden, patchSize: patch } = manifest.model;
  const rawBytes = Object.entries(manifest.buckets).reduce((a, [b, n]) => {
    const [w, h] = b.split('x').map(Number);
    return a + n * ((w / patch) * (h / patch) + 1) * hidden * 4;
  }, 0);
  const endToEnd = (ROUNDS * N) / extractSeconds;
  results.models[c.size] = {
    name: c.name,
    flags: flags.join(' '),
    bareImagesPerSecond: (ROUNDS * N) / bareSeconds,
    endToEndImagesPerSecond: endToEnd,
    ratioEndToEndVsBare: bareSeconds / extractSeconds,
    ratioPerRound: rounds.map((r) => r.ratio),
    transformersJsImagesPerSecond: tjs.imagesPerSecond,
    transformersJsInput: tjs.inputSize,
    speedupVsTransformersJs: endToEnd / tjs.imagesPerSecond,
    bareSquareImagesPerSecond: N / bareSquareSeconds,
    /** transformers.js end-to-end vs the bare model on its own input shape: its pipeline's efficiency. */
    transformersJsRatioVsBare: tjs.imagesPerSecond / (N / bareSquareSeconds),
    extractPeakRssMiB: Math.max(...rounds.map((r) => r.peakRssMiB)),
    bytesPerImage: manifest.counts.bytes / rows,
    rawFloat32BytesPerImage: rawBytes / rows,
    buckets: Object.fromEntries(perBucket),
  };
}

// Memory: peak RSS of extract (tiny model) as the image count grows; the sets are hard links of
// the generated images, so the curve measures extract, not the variety of the images.
const tiny = ensureModel('tiny');
results.memory = { model: configs[0].name, points: [] };
for (const count of containersOnly ? [] : MEMORY_SIZES) {
  console.error(`bench: peak RSS for ${count} images`);
  const dir = path.join(work, `images-${count}`);
  linkImages(images, dir, count);
  const { peakRssMiB } = runExtract(dir, tiny, ['--buckets', 'sdxl', '--dino-scale', String(configs[0].dinoScale)]);
  results.memory.points.push({ images: count, peakRssMiB });
  fs.rmSync(dir, { recursive: true, force: true });
}
const rssAt = (count) => results.memory.points.find((p) => p.images === count)?.peakRssMiB;
const [m1, m4] = MEMORY_SIZES.slice(-2);
results.memory.ratioLast4xVs1x = containersOnly ? undefined : rssAt(m4) / rssAt(m1);

const moreImages = path.join(work, 'more-images');
await makeImages(moreImages, N, SIZES, 'more');
results.containers = await containerSources(images, moreImages, tiny, ['--buckets', 'sdxl', '--dino-scale', String(configs[0].dinoScale)], quick ? 1 : CONTAINER_REPEAT);

// Host rows (scripts/bench-host.mjs): main-thread CPU per image, --batch-size auto against 4 for
// each config above, and peak memory over the bare model at 1024² on camera-sized JPEGs.
if (!containersOnly) {
  results.host = { mainThread: await host.mainThreadBudget({ quick }), batch: {} };
  for (const c of configs) {
    console.error(`bench: --batch-size auto against 4, ${c.name}`);
    results.host.batch[c.name] = host.batchAutoVsFixed({ model: ensureModel(c.size), images, work, flags: ['--buckets', 'sdxl', '--dino-scale', String(c.dinoScale)], rounds: ROUNDS });
  }
  console.error('bench: memory over the bare model at 1024²');
  const camera = path.join(work, 'camera');
  await host.makeCameraImages(camera, quick ? 8 : 24); // 24 as in issue 12: more images than the pipeline holds at once
  results.host.memory = host.memoryOverBare({ model: ensureModel('vits16'), images: camera, work });
  results.imageStage = await imageStageBench();
}

fs.mkdirSync(path.join(root, 'bench'), { recursive: true });
fs.writeFileSync(path.join(root, 'bench', containersOnly ? 'results-containers.json' : 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
const rate = (v) => v.toFixed(v < 10 ? 2 : 1);
console.log(`\n${results.date.slice(0, 10)} · ${results.machine} · ${N} images, batch ${BATCH}, ${ROUNDS} round${ROUNDS > 1 ? 's' : ''} of bare model and extract in turn\n`);
if (!containersOnly) {
  console.log('| model | buckets | bare model img/s | extract img/s | ratio (per round) | transformers.js img/s | its ratio to bare model at its input | speed-up | extract peak RSS | stored bytes/img (fp16) | raw fp32 bytes/img |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of Object.values(results.models)) {
    console.log(`| ${r.name} | ${r.flags} | ${rate(r.bareImagesPerSecond)} | ${rate(r.endToEndImagesPerSecond)} | **${r.ratioEndToEndVsBare.toFixed(3)}** (${r.ratioPerRound.map((x) => x.toFixed(3)).join(', ')}) | ${rate(r.transformersJsImagesPerSecond)} (${r.transformersJsInput}) | ${r.transformersJsRatioVsBare.toFixed(3)} (bare ${rate(r.bareSquareImagesPerSecond)}) | ${r.speedupVsTransformersJs.toFixed(2)}x | ${r.extractPeakRssMiB} MiB | ${(r.bytesPerImage / 1024).toFixed(1)} KiB | ${(r.rawFloat32BytesPerImage / 1024).toFixed(1)} KiB |`);
  }
  console.log(`\npeak RSS of extract, tiny model: ${results.memory.points.map((p) => `${p.images} images ${p.peakRssMiB} MiB`).join(', ')}; ${m4} vs ${m1} images ×${results.memory.ratioLast4xVs1x.toFixed(2)}`);
}
if (!containersOnly) {
  host.printHostRows(results.host);
  printImageStage(results.imageStage);
}
const k = results.containers;
const whole = Object.entries(k.wholeRunRatioVsFolder).filter(([kind]) => kind !== 'folder').map(([kind, x]) => `${kind} ×${x.toFixed(2)}`).join(', ');
console.log(`\nsame images from a folder and from containers, tiny model (${k.flags}), ${k.images.join(' and ')} images, ${k.rounds} rounds, steady state: folder ${rate(k.folderImagesPerSecond)} img/s, tar ${rate(k.tarImagesPerSecond)} img/s (×${k.ratioTarVsFolder.toFixed(2)}), Parquet ${rate(k.parquetImagesPerSecond)} img/s (×${k.ratioParquetVsFolder.toFixed(2)}), Parquet snappy ${rate(k.parquetSnappyImagesPerSecond)} img/s (×${k.ratioParquetSnappyVsFolder.toFixed(2)}); whole runs of ${k.images[1]}, start-up included: ${whole}`);
fs.rmSync(work, { recursive: true, force: true });
