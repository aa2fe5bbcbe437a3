// npm run bench: end-to-end `dinofeat extract` vs the bare model on the same bucket shapes, and
// vs the transformers.js image-feature-extraction pipeline, in one run (this machine is noisy,
// so only ratios measured together mean something). Writes bench/results.json.
//
//   node scripts/bench.mjs [--images N] [--quick]
import { execFileSync } from 'node:child_process';
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
const N = Number(arg('--images', quick ? 16 : 32));
const BATCH = 4;
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'dinofeat-bench-'));
process.env.ORT_DISABLE_TELEMETRY ??= '1';

const { resolveBuckets, assignBucket } = await import(dist('image/buckets.js'));
const { readHeader } = await import(dist('image/decode.js'));
const { loadModelInfo } = await import(dist('model/load-info.js'));
const { default: ort } = await import(dist('model/ort.js'));
const { sessionOptions } = await import(dist('model/devices.js'));

/** Mixed sizes, both orientations, photo-like content (smooth gradients + noise + shapes). */
async function makeImages(dir, count) {
  fs.mkdirSync(dir, { recursive: true });
  const sizes = [[1600, 1200], [1200, 1600], [1024, 1024], [1920, 1080], [800, 1200], [2000, 1333], [640, 960], [1400, 900]];
  for (let k = 0; k < count; k++) {
    const [w, h] = sizes[k % sizes.length];
    const noise = await sharp({ create: { width: w, height: h, channels: 3, noise: { type: 'gaussian', mean: 128, sigma: 40 } } }).blur(3).raw().toBuffer();
    const svg = `<svg width="${w}" height="${h}"><defs><linearGradient id="g"><stop offset="0" stop-color="rgb(${(k * 37) % 255},90,160)"/><stop offset="1" stop-color="rgb(240,${(k * 53) % 255},40)"/></linearGradient></defs><rect width="100%" height="100%" fill="url(#g)" fill-opacity="0.6"/><circle cx="${w / 3}" cy="${h / 2}" r="${Math.min(w, h) / 5}" fill="navy"/><rect x="${w / 2}" y="${h / 4}" width="${w / 4}" height="${h / 3}" fill="white"/></svg>`;
    await sharp(noise, { raw: { width: w, height: h, channels: 3 } })
      .composite([{ input: Buffer.from(svg) }])
      .jpeg({ quality: 90 })
      .toFile(path.join(dir, `img-${String(k).padStart(4, '0')}.jpg`));
  }
}

function runExtract(images, model, flags) {
  const out = fs.mkdtempSync(path.join(work, 'cache-'));
  let stdout;
  try {
    stdout = execFileSync(process.execPath, [cli, 'extract', images, '--model', model, '--out', out, '--batch-size', String(BATCH), ...flags], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    throw new Error(`extract failed: ${e.stderr}`);
  }
  const m = /of (\d+) images in .*\(([\d.]+) img\/s\)/.exec(stdout);
  const manifest = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'));
  return { imagesPerSecond: Number(m[2]), images: Number(m[1]), manifest, stdout };
}

/** Peak RSS of a child run, from GNU time (kB → MiB). */
function runExtractWithRss(images, model, flags) {
  const out = fs.mkdtempSync(path.join(work, 'cache-'));
  const res = execFileSync('bash', ['-c', `/usr/bin/time -f 'MAXRSS %M' "$@" 2>&1 >/dev/null | grep MAXRSS`, '_', process.execPath, cli, 'extract', images, '--model', model, '--out', out, '--batch-size', String(BATCH), '--quiet', ...flags], { encoding: 'utf8' });
  return Number(/MAXRSS (\d+)/.exec(res)[1]) / 1024;
}

/** The model alone on pre-made tensors of exactly the shapes extract will run. */
async function bareModel(modelPath, images, flags) {
  const info = loadModelInfo(modelPath);
  const buckets = resolveBuckets({ buckets: 'sdxl', dinoScale: Number(flags[flags.indexOf('--dino-scale') + 1]) }, info.patchSize);
  const perBucket = new Map();
  for (const f of fs.readdirSync(images)) {
    const h = await readHeader(fs.readFileSync(path.join(images, f)), { maxPixels: 1e9 });
    const b = assignBucket(h, buckets);
    const key = `${b.width}x${b.height}`;
    perBucket.set(key, (perBucket.get(key) ?? 0) + 1);
  }
  const session = await ort.InferenceSession.create(modelPath, sessionOptions({ device: 'cpu' }));
  const runAll = async () => {
    for (const [key, count] of perBucket) {
      const [w, h] = key.split('x').map(Number);
      for (let done = 0; done < count; done += BATCH) {
        const n = Math.min(BATCH, count - done);
        const x = new Float32Array(n * 3 * h * w).fill(0.1);
        await session.run({ pixel_values: new ort.Tensor('float32', x, [n, 3, h, w]) });
      }
    }
  };
  await runAll(); // warm-up: first runs at each shape pay for allocation
  const t = performance.now();
  await runAll();
  const seconds = (performance.now() - t) / 1000;
  await session.release();
  return { imagesPerSecond: images.length === 0 ? 0 : [...perBucket.values()].reduce((a, b) => a + b) / seconds, buckets: Object.fromEntries(perBucket) };
}

/** transformers.js pipeline on the same images and model (local folder, no downloads). */
async function transformersJs(modelPath, images, side) {
  const { pipeline, env } = await import('@huggingface/transformers');
  const repo = path.join(work, 'tjs-model');
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

function ensureModel(size) {
  const dir = path.join(root, 'models', `bench-${size}`);
  const model = path.join(dir, 'model.onnx');
  if (!fs.existsSync(model)) execFileSync(process.execPath, [cli, 'test-model', dir, '--size', size], { stdio: 'ignore' });
  return model;
}

const images = path.join(work, 'images');
const images4 = path.join(work, 'images-4x');
console.error(`bench: making ${N} images (and ${4 * N} for the memory check) in ${work}`);
await makeImages(images, N);
await makeImages(images4, 4 * N);

const results = { date: new Date().toISOString(), machine: `${os.cpus().length} cores, ${os.cpus()[0]?.model ?? '?'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`, images: N, batch: BATCH, models: {} };
const configs = [
  { name: 'tiny test model (hidden 64, 2 layers)', size: 'tiny', flags: ['--buckets', 'sdxl', '--dino-scale', '0.25'] },
  { name: 'ViT-S/16-shaped (21.6M params)', size: 'vits16', flags: ['--buckets', 'sdxl', '--dino-scale', quick ? '0.5' : '1'] },
];
for (const c of configs) {
  const model = ensureModel(c.size);
  console.error(`bench: ${c.name}`);
  const bare = await bareModel(model, images, c.flags);
  const e2e = runExtract(images, model, c.flags);
  const tjs = await transformersJs(model, images, c.size === 'tiny' ? 256 : quick ? 512 : 1024);
  const rows = e2e.manifest.counts.rows;
  const { hiddenSize: hidden, patchSize: patch } = e2e.manifest.model;
  const rawBytes = Object.entries(e2e.manifest.buckets).reduce((a, [b, n]) => {
    const [w, h] = b.split('x').map(Number);
    return a + n * ((w / patch) * (h / patch) + 1) * hidden * 4;
  }, 0);
  results.models[c.size] = {
    name: c.name,
    flags: c.flags.join(' '),
    bareImagesPerSecond: bare.imagesPerSecond,
    endToEndImagesPerSecond: e2e.imagesPerSecond,
    ratioEndToEndVsBare: e2e.imagesPerSecond / bare.imagesPerSecond,
    transformersJsImagesPerSecond: tjs.imagesPerSecond,
    transformersJsInput: tjs.inputSize,
    speedupVsTransformersJs: e2e.imagesPerSecond / tjs.imagesPerSecond,
    bytesPerImage: e2e.manifest.counts.bytes / rows,
    rawFloat32BytesPerImage: rawBytes / rows,
    buckets: bare.buckets,
  };
}
const tiny = ensureModel('tiny');
results.memory = {
  peakRssMiB1x: runExtractWithRss(images, tiny, configs[0].flags),
  peakRssMiB4x: runExtractWithRss(images4, tiny, configs[0].flags),
};
results.memory.ratio4xVs1x = results.memory.peakRssMiB4x / results.memory.peakRssMiB1x;

fs.mkdirSync(path.join(root, 'bench'), { recursive: true });
fs.writeFileSync(path.join(root, 'bench', 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
const f = (v, d = 1) => v.toFixed(d);
console.log(`\n${results.date.slice(0, 10)} · ${results.machine} · ${N} images, batch ${BATCH}\n`);
console.log('| model | buckets | bare model img/s | extract img/s | ratio | transformers.js img/s | speed-up | stored bytes/img (fp16) | raw fp32 bytes/img |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (const r of Object.values(results.models)) {
  console.log(`| ${r.name} | ${r.flags} | ${f(r.bareImagesPerSecond)} | ${f(r.endToEndImagesPerSecond)} | ${f(r.ratioEndToEndVsBare, 2)} | ${f(r.transformersJsImagesPerSecond)} (${r.transformersJsInput}) | ${f(r.speedupVsTransformersJs, 2)}x | ${f(r.bytesPerImage / 1024)} KiB | ${f(r.rawFloat32BytesPerImage / 1024)} KiB |`);
}
console.log(`\npeak RSS, tiny model: ${f(results.memory.peakRssMiB1x, 0)} MiB for ${N} images, ${f(results.memory.peakRssMiB4x, 0)} MiB for ${4 * N} (×${f(results.memory.ratio4xVs1x, 2)})`);
fs.rmSync(work, { recursive: true, force: true });
