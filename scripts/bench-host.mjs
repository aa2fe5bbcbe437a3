// The bench's host rows (issue 12, items 3-5): what the main thread spends per image, extract's
// peak memory over the bare model at 1024², and --batch-size auto against a fixed batch. Called by
// scripts/bench.mjs in its run; alone: node scripts/bench-host.mjs [--quick] [--only main|memory|batch]
// (needs a build). Each function returns plain numbers; printHostRows turns them into the tables.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = (p) => path.join(root, 'dist', p);
const cli = path.join(root, 'bin', 'dinofeat.js');

/** Names the variables the bench set for itself (underExtractAllocator), for extractEnv to take back out. */
const BENCH_SET = 'DINOFEAT_BENCH_SET_ALLOCATOR';

/**
 * extract sets glibc's allocator for itself (src/cli/allocator-launch.ts), so a bench runs itself
 * again under the same settings, and the floor and the bare model it compares with get them too.
 * Returns (when it does not exit) the settings this process runs under, for the report.
 */
export async function underExtractAllocator() {
  const { ALLOCATOR_VARIABLES, allocatorSettings, thisHost } = await import(dist('cli/allocator-launch.js'));
  const settings = allocatorSettings(process.env, thisHost());
  if (settings) {
    const env = { ...process.env, ...settings, [BENCH_SET]: Object.keys(settings).join(',') };
    const again = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit', env });
    process.exit(again.status ?? 1);
  }
  return ALLOCATOR_VARIABLES.filter((v) => process.env[v] !== undefined).map((v) => `${v}=${process.env[v]}`).join(' ') || 'defaults';
}

/**
 * The environment extract runs in: the bench's own, less the allocator variables the bench set for
 * itself, so extract relaunches itself exactly as from a user's shell and the bench measures that
 * child. Variables the user set stay, as they would.
 */
export function extractEnv() {
  const env = { ...process.env };
  for (const name of env[BENCH_SET]?.split(',') ?? []) delete env[name];
  delete env[BENCH_SET];
  return env;
}

const { encodeRow } = await import(dist('shard/schema.js'));
const { ParquetShardEncoder } = await import(dist('shard/parquet-shard.js'));

/** Model shapes whose rows the main thread handles: ViT-S/16 at 1024² and the tiny test model at 256². */
const SHAPES = [
  { name: 'ViT-S/16 shapes, 1024²', side: 1024, hidden: 384, registers: 4, patch: 16, batch: 4 },
  { name: 'tiny test model, 256²', side: 256, hidden: 64, registers: 4, patch: 16, batch: 4 },
];

/**
 * Median CPU ms of `fn` over `runs` calls (after one warm-up). CPU time, not wall time: the machine
 * this was written on is shared, and a thread waiting for a core is not the work's cost. Only this
 * thread runs here, so the process's CPU time is the thread's (GC helpers aside).
 */
export function medianMs(fn, runs) {
  fn();
  const times = [];
  for (let r = 0; r < runs; r++) {
    const t = process.cpuUsage();
    fn();
    const d = process.cpuUsage(t);
    times.push((d.user + d.system) / 1000);
  }
  return times.sort((a, b) => a - b)[Math.floor(runs / 2)];
}

/** medianMs for work that ends in a promise (awaited outside the measured time's loop body only). */
async function medianMsAsync(fn, runs) {
  await fn();
  const times = [];
  for (let r = 0; r < runs; r++) {
    const t = process.cpuUsage();
    await fn();
    const d = process.cpuUsage(t);
    times.push((d.user + d.system) / 1000);
  }
  return times.sort((a, b) => a - b)[Math.floor(runs / 2)];
}

/**
 * Main-thread milliseconds per image for each piece of work extract does there, on data of the real
 * sizes: batch assembly (one image's tensor copied into its batch) and Parquet encoding of the row.
 * Also, not in the total, pieces that other threads do now: a row's fp32 → fp16 encoding (the row
 * encoder thread, shard/row-encoder.ts), the sha256 of its stored bytes (the shard is hashed once
 * written, on a thread of its own: shard/hashing-output.ts) and the sha256 of a 2.5 MB source file
 * (a 12 MP camera JPEG; an image worker, beside the decode: the main thread hashes only a cached
 * key's bytes, when resuming). Decoding, resizing and the model run on other threads too.
 */
export async function mainThreadBudget({ quick = false } = {}) {
  const runs = quick ? 9 : 21;
  const file = Buffer.alloc(2.5 * 2 ** 20, 7);
  const rows = [];
  for (const s of SHAPES) {
    const grid = s.side / s.patch;
    const plane = 3 * s.side * s.side;
    const images = Array.from({ length: s.batch }, () => new Float32Array(plane).fill(0.5));
    const batchInput = new Float32Array(plane * s.batch);
    const row = {
      key: 'a/b.jpg', sha256: 'f'.repeat(64), width: 4032, height: 3024, bucketWidth: s.side, bucketHeight: s.side, gridH: grid, gridW: grid,
      cropX: 0, cropY: 0, cropW: 4032, cropH: 3024,
      cls: new Float32Array(s.hidden).fill(0.25), patches: Float32Array.from({ length: grid * grid * s.hidden }, (_, k) => Math.sin(k)),
    };
    const meta = { hiddenSize: s.hidden, numRegisters: s.registers, registersKept: false, dtype: 'float16' };
    const encoded = encodeRow(row, meta);
    const group = Array.from({ length: 4 }, () => encoded);
    const discard = { write: async () => {} };
    const shardMeta = { ...meta, dinofeatVersion: 'bench', fingerprint: 'x', model: {}, preprocessing: {} };
    // One encoder for the whole measurement, as a shard keeps one: its group buffer is allocated
    // once, and a fresh one per group measured 5-10x the cost (new pages, not encoding).
    const encoder = new ParquetShardEncoder(discard, shardMeta);
    for (let w = 0; w < 5; w++) await encoder.writeGroup(group);
    rows.push({
      shape: s.name,
      hashSourceMs: medianMs(() => createHash('sha256').update(file).digest(), runs),
      batchAssemblyMs: medianMs(() => images.forEach((p, b) => batchInput.set(p, b * plane)), runs) / s.batch,
      fp16Ms: medianMs(() => encodeRow(row, meta), runs),
      parquetMs: (await medianMsAsync(() => encoder.writeGroup(group), runs)) / group.length,
      hashStoredMs: medianMs(() => createHash('sha256').update(encoded.patches).digest(), runs),
    });
  }
  for (const r of rows) r.totalMs = r.batchAssemblyMs + r.parquetMs;
  return rows;
}

/** Camera-sized JPEGs (12 MP and smaller, both orientations), smooth photo-like content, made fast. */
const CAMERA_SIZES = [[4032, 3024], [3024, 4032], [3264, 2448], [2592, 1944]];
export async function makeCameraImages(dir, count) {
  fs.mkdirSync(dir, { recursive: true });
  for (let k = 0; k < count; k++) {
    const [w, h] = CAMERA_SIZES[k % CAMERA_SIZES.length];
    // Noise at a quarter size, scaled up: smooth like a photo, without blurring 12 MP.
    const small = await sharp({ create: { width: w / 4, height: h / 4, channels: 3, noise: { type: 'gaussian', mean: 128, sigma: 50 } } }).png().toBuffer();
    await sharp(small).resize(w, h).jpeg({ quality: 90 }).toFile(path.join(dir, `cam-${String(k).padStart(3, '0')}.jpg`));
  }
}

/** One `dinofeat extract` run; rate, peak RSS and batch line from its own summary. */
function extractRun(images, model, out, flags) {
  fs.rmSync(out, { recursive: true, force: true });
  const stdout = execFileSync(process.execPath, [cli, 'extract', images, '--model', model, '--out', out, '--quiet', ...flags], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: extractEnv() });
  fs.rmSync(out, { recursive: true, force: true });
  const rate = /of (\d+) images in .*\(([\d.]+) img\/s\)/.exec(stdout);
  return {
    imagesPerSecond: Number(rate[2]),
    peakRssMiB: Number(/peak memory (\d+) MiB/.exec(stdout)[1]),
    batch: /batch: (.*)/.exec(stdout)[1],
  };
}

/**
 * The bare model's own peak RSS at one batch shape over `calls` calls, in a process of its own
 * (VmHWM is per process). Its peak grows over its first calls (ONNX Runtime's arena meets new
 * patterns: 727, 846, 846, 895, 895, 895 MiB after calls 1-6 at batch 4), so it makes as many as
 * the extract run it is compared with.
 */
function barePeakMiB(model, side, batch, calls) {
  const stdout = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--bare-peak', model, String(side), String(batch), String(calls)], { encoding: 'utf8' });
  return Number(/peak (\d+) MiB/.exec(stdout)[1]);
}

async function runBarePeak(model, side, batch, calls) {
  const { default: ort } = await import(dist('model/ort.js'));
  const { sessionOptions } = await import(dist('model/devices.js'));
  const { peakMemoryBytes } = await import(dist('core/peak-memory.js'));
  const session = await ort.InferenceSession.create(model, sessionOptions({ device: 'cpu' }));
  for (let r = 0; r < calls; r++) await session.run({ pixel_values: new ort.Tensor('float32', new Float32Array(batch * 3 * side * side).fill(0.1), [batch, 3, side, side]) });
  console.log(`peak ${(peakMemoryBytes() / 2 ** 20).toFixed(0)} MiB`);
}

/**
 * extract's peak RSS over the bare model's at the same batch, DINO at 1024², camera-sized JPEGs
 * (issue 12's bound: at most +300 MiB). Also `--batch-size auto` (one image a call on CPU at this
 * size) on the same images, since that is what a user gets by default.
 */
export function memoryOverBare({ model, images, work, batch = 4 }) {
  const count = fs.readdirSync(images).length;
  const bare = barePeakMiB(model, 1024, batch, Math.ceil(count / batch));
  const fixed = extractRun(images, model, path.join(work, 'mem-cache'), ['--bucket', '1024x1024', '--batch-size', String(batch)]);
  const auto = extractRun(images, model, path.join(work, 'mem-cache'), ['--bucket', '1024x1024']);
  const autoBatch = Number(/^\d+/.exec(auto.batch)[0]);
  const bareAuto = barePeakMiB(model, 1024, autoBatch, Math.ceil(count / autoBatch));
  return {
    images: count,
    fixed: { batch, barePeakMiB: bare, extractPeakMiB: fixed.peakRssMiB, overBareMiB: fixed.peakRssMiB - bare, imagesPerSecond: fixed.imagesPerSecond },
    auto: { batch: auto.batch, barePeakMiB: bareAuto, extractPeakMiB: auto.peakRssMiB, overBareMiB: auto.peakRssMiB - bareAuto, imagesPerSecond: auto.imagesPerSecond },
  };
}

/**
 * `--batch-size auto` against a fixed batch of 4, in turns (auto, fixed, auto, fixed), rate and peak
 * memory, for each model config of the bench (same images and flags as its main table).
 */
export function batchAutoVsFixed({ model, images, work, flags, rounds = 2 }) {
  const auto = [];
  const fixed = [];
  for (let r = 0; r < rounds; r++) {
    auto.push(extractRun(images, model, path.join(work, 'batch-cache'), flags));
    fixed.push(extractRun(images, model, path.join(work, 'batch-cache'), [...flags, '--batch-size', '4']));
  }
  const sum = (runs) => runs.reduce((a, r) => a + 1 / r.imagesPerSecond, 0);
  return {
    autoBatch: auto[0].batch,
    autoImagesPerSecond: rounds / sum(auto),
    fixedImagesPerSecond: rounds / sum(fixed),
    ratioAutoVsFixed: sum(fixed) / sum(auto),
    autoPeakRssMiB: Math.max(...auto.map((r) => r.peakRssMiB)),
    fixedPeakRssMiB: Math.max(...fixed.map((r) => r.peakRssMiB)),
  };
}

const f1 = (v) => v.toFixed(v < 10 ? 2 : 1);

/** The host rows as markdown tables, after the bench's main table. */
export function printHostRows({ mainThread, memory, batch }) {
  if (mainThread) {
    console.log('\nmain-thread CPU ms per image (medians):\n');
    console.log('| rows of | batch assembly | Parquet encoding | main-thread total | fp32 → fp16 (row encoder thread) | sha256 of the stored row (shard hash thread) | sha256 of a 2.5 MB file (image worker; main thread when resuming) |');
    console.log('|---|---|---|---|---|---|---|');
    for (const r of mainThread) console.log(`| ${r.shape} | ${f1(r.batchAssemblyMs)} | ${f1(r.parquetMs)} | **${f1(r.totalMs)}** | ${f1(r.fp16Ms)} | ${f1(r.hashStoredMs)} | ${f1(r.hashSourceMs)} |`);
  }
  if (memory) {
    console.log(`\npeak RSS over the bare model, ViT-S/16-shaped, DINO at 1024², ${memory.images} camera-sized JPEGs:\n`);
    console.log('| batch | bare model peak | extract peak | over the bare model | extract img/s |');
    console.log('|---|---|---|---|---|');
    for (const m of [memory.fixed, memory.auto]) console.log(`| ${m.batch} | ${m.barePeakMiB} MiB | ${m.extractPeakMiB} MiB | **+${m.overBareMiB} MiB** | ${f1(m.imagesPerSecond)} |`);
  }
  if (batch) {
    console.log('\n--batch-size auto against 4 (runs in turns):\n');
    console.log('| model | auto chose | auto img/s | batch 4 img/s | auto / fixed | auto peak | batch 4 peak |');
    console.log('|---|---|---|---|---|---|---|');
    for (const [name, b] of Object.entries(batch)) console.log(`| ${name} | ${b.autoBatch} | ${f1(b.autoImagesPerSecond)} | ${f1(b.fixedImagesPerSecond)} | **${b.ratioAutoVsFixed.toFixed(3)}** | ${b.autoPeakRssMiB} MiB | ${b.fixedPeakRssMiB} MiB |`);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const k = process.argv.indexOf('--bare-peak');
  if (k > 0) {
    const [model, side, batch, calls] = process.argv.slice(k + 1);
    await runBarePeak(model, Number(side), Number(batch), Number(calls));
  } else {
    console.error(`bench-host: allocator ${await underExtractAllocator()}`);
    const quick = process.argv.includes('--quick');
    const o = process.argv.indexOf('--only');
    const only = o > 0 ? process.argv[o + 1] : undefined;
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'dinofeat-bench-host-'));
    const model = path.join(root, 'models', 'bench-vits16', 'model.onnx');
    if (!fs.existsSync(model)) execFileSync(process.execPath, [cli, 'test-model', path.dirname(model), '--size', 'vits16'], { stdio: 'ignore' });
    const rows = {};
    if (!only || only === 'main') rows.mainThread = await mainThreadBudget({ quick });
    if (!only || only === 'memory') {
      const images = path.join(work, 'camera');
      await makeCameraImages(images, quick ? 8 : 24);
      rows.memory = memoryOverBare({ model, images, work });
    }
    printHostRows(rows);
    fs.rmSync(work, { recursive: true, force: true });
  }
}
